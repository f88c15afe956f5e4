package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/store"
)

// Write-ahead persistence (issue 13). The engine writes node records at the
// points where the protocol says something is safe:
//   - a broker message for a node is acknowledged to the broker only once
//     it is in the store (the deliverer waits for the commit);
//   - a node's QoS 2 MsgId is recorded, with the upstream packet carrying
//     it, before the PUBLISH goes to the broker, and as forwarded before
//     the node gets PUBREC; its deletion is stored before PUBCOMP;
//   - state changes (CONNECT, REGISTER, SUBSCRIBE, sleep, wake, lost) are
//     written grouped, without holding an answer back.
//
// Shard workers never wait on the disk: each shard fills one batch while
// its previous one is being committed by the shard's committer goroutine,
// whose completion comes back to the shard as an event. With no store
// (store.Nop) nothing is written and every waiter runs at once.

// WithStore sets the durable store. The default keeps nothing
// (store.Nop): a restart loses every session. The gateway loads the store
// in Serve, before it serves, and never closes it: the caller does, after
// Shutdown.
func WithStore(st store.Store) Option {
	return func(g *Gateway) error {
		if st == nil {
			return errors.New("gateway: WithStore: nil store")
		}
		g.store = st
		_, nop := st.(store.Nop)
		g.durable = !nop
		return nil
	}
}

// durableState is a session's persistence bookkeeping, owned by its shard.
type durableState struct {
	nextSeq uint64 // next buffer position
	dirty   bool   // node record to be written with the shard's next batch
	// resume: restored from the store; the next opOpen resumes the broker
	// session (CleanStart=false, subscriptions, packets in flight).
	resume     bool
	packets    []StoredPacket
	byUpstream map[uint16]store.QoS2 // restored QoS 2 MsgIds by upstream packet id
	track      *tracker              // QoS 2 packets of the current upstream session
	// unstored: QoS 2 MsgIds the broker completed whose forwarded record
	// failed to be written; a retry writes again.
	unstored map[uint16]bool
}

// shardStore is a shard's group committer. With a store that takes
// commits asynchronously (store.AsyncCommitter) a few batches are in
// flight at once, so that a write never waits for an unrelated commit
// before its own: the store then groups every shard's waiting batches into
// one transaction.
type shardStore struct {
	next     store.Batch
	waiters  []func(error)
	dirty    []*session
	inflight int // batches handed to the committer and not done
	max      int // batches in flight at most
	jobs     chan commitJob
	results  chan commitResult // async completions, one per batch in flight
	warned   time.Time         // last store-failure warning
}

type commitJob struct {
	b       *store.Batch
	waiters []func(error)
}

type commitResult struct {
	j   commitJob
	err error
}

// maxAsyncBatches is how many batches a shard keeps in flight with an
// asynchronous store.
const maxAsyncBatches = 4

func newShardStore(st store.Store) shardStore {
	n := 1
	if _, ok := st.(store.AsyncCommitter); ok {
		n = maxAsyncBatches
	}
	return shardStore{max: n, jobs: make(chan commitJob, n), results: make(chan commitResult, n)}
}

// write adds writes to the shard's next batch. then, if not nil, runs on
// the shard once they are durable (or failed). Without a store it runs at
// once.
func (s *shard) write(fn func(b *store.Batch), then func(error)) {
	if !s.g.durable {
		if then != nil {
			then(nil)
		}
		return
	}
	fn(&s.st.next)
	if then != nil {
		s.st.waiters = append(s.st.waiters, then)
	}
}

// markDirty schedules the session's node record for the next batch.
func (s *shard) markDirty(sess *session) {
	if !s.g.durable || sess.dur.dirty {
		return
	}
	sess.dur.dirty = true
	s.st.dirty = append(s.st.dirty, sess)
}

// flushStore hands the next batch to the committer if none is in flight.
// It runs after every event of the shard's loop.
func (s *shard) flushStore() {
	if !s.g.durable || s.st.inflight >= s.st.max {
		return
	}
	s.collectDirty()
	if s.st.next.Len() == 0 && len(s.st.waiters) == 0 {
		return
	}
	b := new(store.Batch)
	b.Append(&s.st.next)
	s.st.next.Reset()
	j := commitJob{b: b, waiters: s.st.waiters}
	s.st.waiters = nil
	s.st.inflight++
	s.st.jobs <- j // never blocks: capacity max, and at most max in flight
}

func (s *shard) collectDirty() {
	for i, sess := range s.st.dirty {
		s.st.dirty[i] = nil
		sess.dur.dirty = false
		if s.sessions[sess.id] != sess || !sess.everConnected {
			continue
		}
		s.st.next.PutNode(s.nodeRecord(sess))
	}
	s.st.dirty = s.st.dirty[:0]
}

// committer commits the shard's batches, one at a time, and reports each
// back to the shard. A commit already started is finished even when ctx
// ends, so that what was promised is on disk.
func (s *shard) committer(ctx context.Context) {
	async, _ := s.g.store.(store.AsyncCommitter)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.st.jobs:
			if async != nil {
				// results has a slot per batch in flight: the store's
				// goroutine never blocks on it.
				if err := async.CommitAsync(j.b, func(err error) { s.st.results <- commitResult{j: j, err: err} }); err != nil {
					s.st.results <- commitResult{j: j, err: err}
				}
				continue
			}
			err := s.g.store.Commit(context.WithoutCancel(ctx), j.b)
			s.post(ctx, func(now time.Time) { s.commitDone(now, j, err) })
		case r := <-s.st.results:
			s.post(ctx, func(now time.Time) { s.commitDone(now, r.j, r.err) })
		}
	}
}

func (s *shard) commitDone(_ time.Time, j commitJob, err error) {
	s.st.inflight--
	if err != nil {
		s.g.stats.StoreFailures.Add(1)
		if now := time.Now(); now.Sub(s.st.warned) > 10*time.Second {
			s.st.warned = now
			s.log.Warn("store write failed: nodes get congestion until it works again; check the disk under store.path", zap.Error(err))
		}
	}
	for _, w := range j.waiters {
		w(err)
	}
}

// finalFlush writes what the shard has not committed yet (shutdown, after
// its loop stopped), bounded by ctx.
func (s *shard) finalFlush(ctx context.Context) error {
	if !s.g.durable {
		return nil
	}
	s.collectDirty()
	if s.st.next.Len() == 0 {
		return nil
	}
	err := s.g.store.Commit(ctx, &s.st.next)
	s.st.next.Reset()
	return err
}

// nodeRecord is the session as stored.
func (s *shard) nodeRecord(sess *session) *store.Node {
	n := &store.Node{
		ClientID:      sess.id,
		CleanSession:  sess.clean,
		KeepAlive:     sess.keepAlive,
		SleepDuration: sess.sleep,
		NextMsgID:     sess.nextMsgID,
		Addr:          s.g.addrString(sess.peer),
	}
	switch sess.state {
	case sleepmgr.Active:
		n.State = store.Active
	case sleepmgr.Asleep, sleepmgr.Awake:
		n.State = store.Asleep
	case sleepmgr.Lost:
		n.State = store.Lost
	default:
		n.State = store.Disconnected
	}
	if sess.will != nil {
		n.Will = &store.Message{Topic: sess.will.Topic, Payload: sess.will.Payload, QoS: int8(sess.will.QoS), Retain: sess.will.Retain}
	}
	for _, e := range sess.topics.Entries() {
		n.Registrations = append(n.Registrations, store.Registration{ID: e.ID, Name: e.Name, Acked: e.Acked})
	}
	for f, sub := range sess.subs {
		n.Subscriptions = append(n.Subscriptions, store.Subscription{Filter: f, QoS: int8(sub.qos), TopicIDType: uint8(sub.idType), TopicID: sub.id})
	}
	return n
}

// addrString is a peer as stored: transport index, address and forwarder
// node id. Peers of transports that keep per-peer state (DTLS) are stored
// as addrAuthenticated only: that state does not survive a restart, but
// the session stays one that only an authenticated peer may take.
func (g *Gateway) addrString(p peer) string {
	if p.addr != nil && g.authenticated(p) {
		return addrAuthenticated
	}
	if p.addr == nil || p.key.id != 0 || !p.key.ap.IsValid() {
		return ""
	}
	s := strconv.Itoa(p.key.tr) + " " + p.key.ap.String()
	if p.key.node != "" {
		s += " " + hexEncode(p.key.node)
	}
	return s
}

// parsePeer is addrString's inverse.
func (g *Gateway) parsePeer(s string) (peer, bool) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return peer{}, false
	}
	tr, err := strconv.Atoi(f[0])
	if err != nil || tr < 0 || tr >= len(g.transports) {
		return peer{}, false
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return peer{}, false
	}
	k := peerKey{tr: tr, ap: ap}
	if len(f) > 2 {
		node, ok := hexDecode(f[2])
		if !ok {
			return peer{}, false
		}
		k.node = node
	}
	return peer{key: k, addr: net.UDPAddrFromAddrPort(ap)}, true
}

// addrAuthenticated is the stored address of a node that came over an
// authenticating transport (DTLS).
const addrAuthenticated = "authenticated"

const hexDigits = "0123456789abcdef"

func hexEncode(s string) string {
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, hexDigits[s[i]>>4], hexDigits[s[i]&0x0f])
	}
	return string(b)
}

func hexDecode(s string) (string, bool) {
	if len(s)%2 != 0 {
		return "", false
	}
	b := make([]byte, len(s)/2)
	for i := range b {
		hi, lo := strings.IndexByte(hexDigits, s[2*i]), strings.IndexByte(hexDigits, s[2*i+1])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b[i] = byte(hi<<4 | lo)
	}
	return string(b), true
}

// tagItem gives a downlink message its buffer position and stores it
// (QoS 1 and 2; QoS 0 is not worth a write). ack runs once it is stored.
func (s *shard) tagItem(sess *session, it *sleepmgr.Item, ack func(error)) {
	sess.dur.nextSeq++
	it.Seq = sess.dur.nextSeq
	if !s.g.durable || it.QoS <= 0 || !sess.everConnected {
		ack(nil)
		return
	}
	m := store.Message{Topic: it.Topic, Payload: it.Payload, QoS: it.QoS, Retain: it.Retain}
	id, seq := sess.id, it.Seq
	s.write(func(b *store.Batch) { b.PutMessage(id, seq, m) }, ack)
}

// forgetItem removes a downlink message that left the buffer for good
// (delivered, refused, dropped).
func (s *shard) forgetItem(sess *session, it sleepmgr.Item) {
	if !s.g.durable || it.QoS <= 0 || it.Seq == 0 {
		return
	}
	id := sess.id
	s.write(func(b *store.Batch) { b.DeleteMessage(id, it.Seq) }, nil)
}

// forgetNode removes the node's record (clean-session reset, session
// dropped).
func (s *shard) forgetNode(sess *session) {
	if !s.g.durable {
		return
	}
	id := sess.id
	s.write(func(b *store.Batch) { b.DeleteNode(id) }, nil)
}

// deliverDurable hands a broker message to the shard and returns once it
// is stored, so that the broker's acknowledgement (sent when deliver
// returns) never covers a message a restart would lose. A failed write is
// retried with a growing pause until it succeeds or the gateway stops:
// meanwhile the broker holds its message, unacknowledged.
func (s *shard) deliverDurable(sess *session, gen uint64, m Message) {
	wait := 10 * time.Millisecond
	for {
		done := make(chan error, 1)
		if !s.post(s.ctx, func(now time.Time) {
			s.onDeliver(now, sess, gen, m, func(err error) { done <- err })
		}) {
			s.deliverLate(sess, m)
			return
		}
		var err error
		select {
		case err = <-done:
		case <-s.ctx.Done():
			s.deliverLate(sess, m)
			return
		}
		if err == nil {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// deliverLate stores a message that arrived while the shard stopped.
func (s *shard) deliverLate(sess *session, m Message) {
	if err := s.g.storeLate(sess.id, m); err != nil {
		s.log.Warn("message from the broker arrived during shutdown and could not be stored", zap.String("client_id", sess.id), zap.Error(err))
	}
}

// persistAfter marks the node record dirty after a datagram that changes
// what is stored.
func (s *shard) persistAfter(sess *session, pkt snpacket.Packet) {
	if !s.g.durable {
		return
	}
	switch pkt.(type) {
	case *snpacket.Register, *snpacket.Regack, *snpacket.Subscribe, *snpacket.Unsubscribe,
		*snpacket.Disconnect, *snpacket.WillTopicUpd, *snpacket.WillMsgUpd:
		s.markDirty(sess)
	}
}

// tracker follows the QoS 2 packets of one upstream session (it is the
// session's PacketStore): which node MsgId each upstream packet id
// carries, and whether the broker has it (PUBREL stage). Its methods are
// called from upstream goroutines; they write through the shard.
type tracker struct {
	s    *shard
	sess *session

	mu   sync.Mutex
	cur  uint16 // node MsgId of the QoS 2 publish running, 0: none
	byID map[uint16]trackEntry
}

type trackEntry struct {
	msgID     uint16
	pubrel    bool
	completed bool // the broker's PUBCOMP came
}

var _ PacketStore = (*tracker)(nil)

func (s *shard) newTracker(sess *session) *tracker {
	return &tracker{s: s, sess: sess, byID: map[uint16]trackEntry{}}
}

// begin and end bracket the worker's Publish of the node's QoS 2 MsgId.
func (t *tracker) begin(msgID uint16) {
	t.mu.Lock()
	t.cur = msgID
	t.mu.Unlock()
}

func (t *tracker) end() {
	t.mu.Lock()
	t.cur = 0
	t.mu.Unlock()
}

// handed reports whether the node's msgID went to the broker on this
// session (a packet id was stored for it).
func (t *tracker) handed(msgID uint16) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.byID {
		if e.msgID == msgID && !e.completed {
			return true
		}
	}
	return false
}

// Put implements PacketStore.
func (t *tracker) Put(id uint16, packet []byte) (err error) {
	if len(packet) == 0 {
		return nil
	}
	typ := packet[0] >> 4
	t.mu.Lock()
	e, known := t.byID[id]
	switch {
	case typ == 3 && (packet[0]>>1)&3 == 2 && t.cur != 0: // QoS 2 PUBLISH of the running op
		e = trackEntry{msgID: t.cur}
	case typ == 6 && known: // PUBREL: the broker has the message
		e.pubrel = true
	default:
		t.mu.Unlock()
		return nil
	}
	t.byID[id] = e
	t.mu.Unlock()
	data := append([]byte(nil), packet...)
	cid := t.sess.id
	defer func() {
		if err != nil && !e.pubrel {
			// Not stored: the PUBLISH is not sent, and the MsgId is not
			// the broker's.
			t.mu.Lock()
			if t.byID[id] == e {
				delete(t.byID, id)
			}
			t.mu.Unlock()
		}
	}()
	return t.s.commitFromUpstream(t, func(b *store.Batch) {
		b.PutPacket(cid, id, data)
		b.PutQoS2(cid, store.QoS2{MsgID: e.msgID, Forwarded: e.pubrel, UpstreamID: id})
	}, func(sess *session) {
		if e.pubrel {
			if _, ok := sess.qos2[e.msgID]; ok {
				sess.qos2[e.msgID] = true // a retry now gets PUBREC
			}
		}
	})
}

// Delete implements PacketStore: the broker completed packet id. The
// stored PUBREL stays until the node's PUBREL deletes the MsgId (release),
// in the same write: a PUBREL resent after a restart is harmless (the
// broker answers PUBCOMP), and one write fewer per message keeps the
// shard's group commit free.
func (t *tracker) Delete(id uint16) {
	t.mu.Lock()
	if e, ok := t.byID[id]; ok {
		e.completed = true
		t.byID[id] = e
	}
	t.mu.Unlock()
}

// release forgets the packet carrying the node's msgID (its PUBREL came)
// and returns its id, 0 if none.
func (t *tracker) release(msgID uint16) uint16 {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, e := range t.byID {
		if e.msgID == msgID {
			delete(t.byID, id)
			return id
		}
	}
	return 0
}

// Reset implements PacketStore: the broker lost the session. MsgIds the
// broker had not acknowledged are forgotten, so that the node's retry is
// forwarded again (the outcome is unknown; README, QoS 2 duplicates).
func (t *tracker) Reset() {
	t.mu.Lock()
	old := t.byID
	t.byID = map[uint16]trackEntry{}
	t.mu.Unlock()
	if len(old) == 0 {
		return
	}
	cid := t.sess.id
	t.s.postFromUpstream(t, func(sess *session) {
		for id, e := range old {
			t.s.write(func(b *store.Batch) { b.DeletePacket(cid, id) }, nil)
			if !e.pubrel && !sess.qos2[e.msgID] {
				delete(sess.qos2, e.msgID)
				t.s.write(func(b *store.Batch) { b.DeleteQoS2(cid, e.msgID) }, nil)
			}
		}
	})
}

// restore puts back the packets of a restored session.
func (t *tracker) restore(id, msgID uint16, pubrel bool) {
	t.mu.Lock()
	t.byID[id] = trackEntry{msgID: msgID, pubrel: pubrel}
	t.mu.Unlock()
}

// postFromUpstream runs fn on the shard if t is still its session's
// tracker.
func (s *shard) postFromUpstream(t *tracker, fn func(sess *session)) {
	s.post(s.ctx, func(time.Time) {
		if s.sessions[t.sess.id] == t.sess && t.sess.dur.track == t {
			fn(t.sess)
		}
	})
}

// commitFromUpstream writes through the shard and waits until stored.
func (s *shard) commitFromUpstream(t *tracker, write func(*store.Batch), then func(sess *session)) error {
	done := make(chan error, 1)
	if !s.post(s.ctx, func(time.Time) {
		if s.sessions[t.sess.id] != t.sess || t.sess.dur.track != t {
			done <- errStale
			return
		}
		s.write(write, func(err error) {
			if err == nil {
				then(t.sess)
			}
			done <- err
		})
	}) {
		return s.g.commitDirect(write) // the shard stopped (shutdown)
	}
	select {
	case err := <-done:
		return err
	case <-s.ctx.Done():
		return s.g.commitDirect(write)
	}
}

var errStale = errors.New("gateway: session replaced")
