package gateway

import (
	"container/heap"
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// shard is one session worker: an event loop that alone owns its sessions
// and one timer for all of their deadlines.
type shard struct {
	g     *Gateway
	id    int
	log   *zap.Logger
	inbox chan inbound
	// events carries upstream deliveries and finished upstream operations.
	// Senders block (with their context): a broker message is acknowledged
	// upstream only once the shard has taken it.
	events chan func(now time.Time)
	// work feeds the shard's upstream workers; idle counts those waiting
	// and backlog holds what found none.
	work    chan opTask
	idle    int
	backlog []opTask
	// evict asks the shard to give bytes back to the sleep-buffer budget
	// from its largest holder (budget.go); one pending request stands for
	// any number.
	evict chan struct{}

	sessions map[string]*session
	byPeer   map[peerKey]*session
	timers   timerHeap
	timer    *time.Timer
	armedAt  time.Time
	st       shardStore // group committer (persist.go)
	// ctx is the loop's context, set once when run starts; operations and
	// deliveries for the shard's sessions derive from it.
	ctx context.Context //nolint:containedctx // owned by the shard's loop, like its timer
}

func newShard(g *Gateway, id int) *shard {
	return &shard{
		g:        g,
		id:       id,
		log:      g.log.With(zap.Int("shard", id)),
		inbox:    make(chan inbound, g.cfg.InboxSize),
		events:   make(chan func(time.Time), 64),
		work:     make(chan opTask, g.cfg.UpstreamWorkers),
		evict:    make(chan struct{}, 1),
		sessions: make(map[string]*session),
		byPeer:   make(map[peerKey]*session),
		st:       newShardStore(g.store),
	}
}

func (s *shard) run(ctx context.Context) {
	// A context of the shard's own: every upstream operation derives its
	// deadline from it, and a shared parent would serialise them all on
	// its lock.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	s.idle = s.g.cfg.UpstreamWorkers
	for range s.g.cfg.UpstreamWorkers {
		s.g.wg.Add(1)
		go func() { defer s.g.wg.Done(); s.upstreamWorker(ctx) }()
	}
	s.g.wg.Add(1)
	go func() { defer s.g.wg.Done(); s.committer(ctx) }()
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	defer s.timer.Stop()
	s.resumeRestored(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-s.inbox:
			s.handle(time.Now(), in)
		case fn := <-s.events:
			fn(time.Now())
		case <-s.evict:
			s.rebalance(time.Now())
		case <-s.timer.C:
			s.armedAt = time.Time{}
			s.expire(time.Now())
		}
		s.flushStore()
		s.rearm()
	}
}

// post runs fn on the shard's loop. It blocks until the shard takes it or
// ctx ends, and reports whether it was taken.
func (s *shard) post(ctx context.Context, fn func(now time.Time)) bool {
	select {
	case s.events <- fn:
		return true
	case <-ctx.Done():
		return false
	}
}

// schedule puts sess in the timer heap at its current deadline.
func (s *shard) schedule(sess *session) {
	d := sess.nextDeadline()
	switch {
	case d.IsZero() && sess.heapIdx >= 0:
		heap.Remove(&s.timers, sess.heapIdx)
	case d.IsZero():
	case sess.heapIdx >= 0:
		sess.deadline = d
		heap.Fix(&s.timers, sess.heapIdx)
	default:
		sess.deadline = d
		heap.Push(&s.timers, sess)
	}
}

func (s *shard) rearm() {
	if len(s.timers) == 0 {
		return
	}
	next := s.timers[0].deadline
	if !s.armedAt.IsZero() && !next.Before(s.armedAt) {
		return
	}
	s.timer.Stop()
	s.timer.Reset(time.Until(next))
	s.armedAt = next
}

func (s *shard) expire(now time.Time) {
	for len(s.timers) > 0 && !s.timers[0].deadline.After(now) {
		sess := s.timers[0]
		heap.Pop(&s.timers)
		s.onTimer(now, sess)
	}
}

// handle processes one datagram for this shard.
func (s *shard) handle(now time.Time, in inbound) {
	switch p := in.pkt.(type) {
	case *snpacket.Connect:
		s.onConnect(now, in.from, p, in.size)
		return
	case *snpacket.PingReq:
		if p.ClientID != "" {
			s.onWake(now, in.from, p.ClientID, in.size)
			return
		}
	}
	sess := s.byPeer[in.from.key]
	if sess == nil {
		s.g.noSession(in.from, in.pkt)
		return
	}
	sess.received(now, in.size)
	s.onPacket(now, sess, in.pkt)
	s.persistAfter(sess, in.pkt)
	if sess.amp.held {
		s.ampResume(now, sess) // the address earned more (amplify.go)
	}
	s.schedule(sess)
}

// closeAll closes every upstream session (gateway shutdown): the current
// ones, and those whose close was still queued. It runs after the loop and
// the workers stopped, so it owns the sessions.
func (s *shard) closeAll(ctx context.Context) {
	closeOp := func(o op) {
		if o.kind != opClose || o.up == nil {
			return
		}
		if o.hasWill {
			_ = o.up.Publish(ctx, o.msg) // the node was lost before shutdown
		}
		_ = o.up.Close(ctx)
	}
	for _, sess := range s.sessions {
		for _, o := range sess.ops {
			closeOp(o)
		}
		sess.ops = nil
		if sess.up != nil {
			_ = sess.up.Close(ctx)
			sess.up = nil
		}
	}
	for _, t := range s.backlog {
		closeOp(t.o)
	}
	s.backlog = nil
	for {
		select {
		case t := <-s.work: // handed to a worker that stopped first
			closeOp(t.o)
		default:
			return
		}
	}
}

// timerHeap orders sessions by deadline.
type timerHeap []*session

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *timerHeap) Push(x any) {
	s := x.(*session)
	s.heapIdx = len(*h)
	*h = append(*h, s)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	s := old[n-1]
	old[n-1] = nil
	s.heapIdx = -1
	*h = old[:n-1]
	return s
}
