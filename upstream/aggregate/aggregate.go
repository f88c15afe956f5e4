// Package aggregate carries every node over a few shared broker
// connections (broker.mode: aggregating). It implements gateway.Upstream
// on top of another gateway.Upstream (the one that speaks MQTT), whose
// sessions it opens once per shared connection: a node's CONNECT costs no
// broker connection, its ClientId never reaches the broker, and a broker
// restart brings back a few connections, not one per node.
//
// What the broker did per node, the aggregator now does:
//   - Uplink: a node's publishes go over the shared connection its ClientId
//     hashes to, and return only when the broker acknowledged them, so the
//     gateway still acknowledges to a node only what the broker has.
//   - Subscriptions are counted per filter: the broker sees one SUBSCRIBE
//     per filter (at the highest QoS any node asked for) and one
//     UNSUBSCRIBE when the last node leaves. Each message is handed to every
//     node subscribed to the filter it came through, at the lower of the
//     message's and the node's QoS.
//   - Filters on one shared connection never overlap (topicreg.Tree), so a
//     message copy's filter is known whatever the broker does with
//     overlapping subscriptions (mosquitto sends a copy per subscription,
//     mochi one for all). A filter that overlaps a filter on every
//     connection gets a connection of its own, up to MaxConnections.
//   - Retained messages: a node subscribing to a filter already held makes
//     the aggregator SUBSCRIBE again; the broker answers with the retained
//     messages (RETAIN set, MQTT 3.3.1-8), which go to the joining nodes
//     only. Live messages come with RETAIN clear and go to every node.
//   - CleanSession=0: a node's closed session keeps its subscriptions and
//     collects its messages (up to MaxParked) for its SessionExpiry; a
//     CONNECT with CleanSession=0 in time gets them.
//   - Wills are the gateway's: the session engine publishes a lost node's
//     will itself, so none is registered with the broker.
//
// Lock order: Upstream.mu before a node's mu; nothing takes Upstream.mu
// while holding a node's mu (a node's mu is held while its messages are
// handed to the session engine, which never calls back into the
// aggregator from there).
package aggregate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// Defaults applied by New.
const (
	DefaultConnections = 4
	DefaultMaxParked   = 1000
)

// Config configures the aggregator.
type Config struct {
	// Connections is the number of shared connections (broker.connections,
	// default 4). Nodes' publishes are spread over them by ClientId.
	Connections int
	// MaxConnections bounds the shared connections including those opened
	// for overlapping filters (default 4 x Connections). A SUBSCRIBE that
	// would need one more is refused (congestion).
	MaxConnections int
	// ClientID names the shared connections: ClientID-0, ClientID-1, ...
	// (the MQTT upstream adds broker.client_id_prefix). Gateways on one
	// broker need different ones.
	ClientID string
	// SessionExpiry is the session expiry of the shared connections, so
	// that the broker keeps their subscriptions and queued messages
	// across a link blip.
	SessionExpiry time.Duration
	// MaxParked bounds the messages kept for one disconnected
	// CleanSession=0 node (default 1000); the oldest go first.
	MaxParked int
	// ReopenBackoffMin and ReopenBackoffMax bound the jittered wait
	// before a shared connection that could not be opened is tried again
	// (defaults 1s and 30s). Once open, the MQTT upstream reconnects it.
	ReopenBackoffMin time.Duration
	ReopenBackoffMax time.Duration
}

func (c *Config) setDefaults() {
	if c.Connections <= 0 {
		c.Connections = DefaultConnections
	}
	if c.MaxConnections < c.Connections {
		c.MaxConnections = 4 * c.Connections
	}
	if c.MaxParked <= 0 {
		c.MaxParked = DefaultMaxParked
	}
	if c.ClientID == "" {
		c.ClientID = "mqttsn-gateway"
	}
	if c.ReopenBackoffMin <= 0 {
		c.ReopenBackoffMin = time.Second
	}
	if c.ReopenBackoffMax < c.ReopenBackoffMin {
		c.ReopenBackoffMax = max(30*time.Second, c.ReopenBackoffMin)
	}
}

// Errors.
var (
	// ErrClosed is returned for operations after Close.
	ErrClosed = errors.New("aggregate: closed")
	// ErrConnectionDown is returned (wrapped) while the shared connection
	// an operation needs is not open: nothing was sent.
	ErrConnectionDown = errors.New("aggregate: shared broker connection down")
	// ErrTooManyOverlapping refuses a filter that overlaps a filter on
	// every shared connection when MaxConnections are open.
	ErrTooManyOverlapping = errors.New("aggregate: filter overlaps a filter on every shared connection and no more connections are allowed (broker.connections)")
)

// Stats are the aggregator's counters and gauges.
type Stats struct {
	Connections, ConnectionsUp int // shared connections, and those open
	Filters                    int // filters subscribed at the broker
	Nodes, Parked              int // node sessions, and those disconnected but kept
	Delivered                  uint64
	Unrouted                   uint64 // messages for no held filter (late, after an UNSUBSCRIBE)
	ParkedDropped              uint64 // messages dropped from a full parked session
}

// Upstream is the aggregating gateway.Upstream.
type Upstream struct {
	base gateway.Upstream
	cfg  Config
	log  *zap.Logger

	ctx    context.Context //nolint:containedctx // the lifetime of the shared connections
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	lanes   []*lane
	filters map[string]*filter // held filters, by filter
	nodes   map[string]*node   // node sessions, open or parked, by ClientID
	closed  bool

	delivered, unrouted, parkedDropped atomic.Uint64
}

var _ gateway.Upstream = (*Upstream)(nil)
var _ gateway.ReconnectPacer = (*Upstream)(nil)

// lane is one shared connection and the filters subscribed on it.
type lane struct {
	idx  int
	sess gateway.Session        // nil while not open; guarded by Upstream.mu
	err  error                  // why it is not open; guarded by Upstream.mu
	tree topicreg.Tree[*filter] // guarded by Upstream.mu
	up   chan struct{}          // closed when first opened
	once sync.Once
	// tried is closed when the first open attempt ended, either way.
	tried   chan struct{}
	tryOnce sync.Once
}

// filter is one subscription at the broker, shared by nodes.
type filter struct {
	name  string
	lane  *lane
	qos   byte // QoS subscribed at the broker
	held  bool // a SUBSCRIBE of it succeeded: the broker has it
	nodes map[*node]byte
	// joining are the nodes of the latest SUBSCRIBE, which get the
	// retained messages the broker sends in answer to it.
	joining map[*node]byte
	pending int           // Subscribe calls in progress
	sem     chan struct{} // serialises SUBSCRIBE/UNSUBSCRIBE of this filter
}

// New returns an aggregator over base and starts opening the shared
// connections. A nil log means no logging. Close releases everything.
func New(base gateway.Upstream, cfg Config, log *zap.Logger) *Upstream {
	cfg.setDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &Upstream{
		base: base, cfg: cfg, log: log, ctx: ctx, cancel: cancel,
		filters: make(map[string]*filter),
		nodes:   make(map[string]*node),
	}
	u.mu.Lock()
	for range cfg.Connections {
		u.addLaneLocked()
	}
	u.mu.Unlock()
	return u
}

// addLaneLocked creates a lane and starts opening it.
func (u *Upstream) addLaneLocked() *lane {
	l := &lane{idx: len(u.lanes), up: make(chan struct{}), tried: make(chan struct{}), err: ErrConnectionDown}
	u.lanes = append(u.lanes, l)
	u.wg.Add(1)
	go u.run(l)
	return l
}

// run opens l's shared connection, restores its filters, and opens it
// again should the MQTT upstream give it up.
func (u *Upstream) run(l *lane) {
	defer u.wg.Done()
	clientID := fmt.Sprintf("%s-%d", u.cfg.ClientID, l.idx)
	log := u.log.With(zap.String("shared_connection", clientID))
	backoff := u.cfg.ReopenBackoffMin
	first := true
	for {
		ended := make(chan error, 1)
		sess, err := u.base.Open(u.ctx, gateway.SessionOptions{
			ClientID: clientID,
			// The first open drops what a previous run left at the
			// broker (its filters are not known to this one).
			CleanStart:    first,
			SessionExpiry: u.cfg.SessionExpiry,
			Ended:         func(err error) { ended <- err },
		}, func(m gateway.Message) { u.dispatch(l, m) })
		if u.ctx.Err() != nil {
			if sess != nil {
				u.closeSession(sess)
			}
			return
		}
		if err != nil {
			u.mu.Lock()
			l.err = err
			u.mu.Unlock()
			l.tryOnce.Do(func() { close(l.tried) })
			log.Warn("shared broker connection not open; retrying", zap.Duration("retry_in", backoff), zap.Error(err))
			if !sleep(u.ctx, jitter(backoff)) || !sleep(u.ctx, u.ReconnectSlot()) {
				return
			}
			backoff = min(2*backoff, u.cfg.ReopenBackoffMax)
			continue
		}
		first = false
		backoff = u.cfg.ReopenBackoffMin
		u.mu.Lock()
		l.sess, l.err = sess, nil
		var restore []*filter
		for _, f := range u.filters {
			if f.lane == l && f.held {
				restore = append(restore, f)
			}
		}
		u.mu.Unlock()
		for _, f := range restore {
			if _, err := sess.Subscribe(u.ctx, f.name, f.qos); err != nil && u.ctx.Err() == nil {
				log.Warn("filter not restored on the shared connection", zap.String("filter", f.name), zap.Error(err))
			}
		}
		l.once.Do(func() { close(l.up) })
		l.tryOnce.Do(func() { close(l.tried) })
		log.Info("shared broker connection open", zap.Int("filters", len(restore)))
		select {
		case <-u.ctx.Done():
			u.closeSession(sess)
			return
		case <-sess.Done():
		}
		u.mu.Lock()
		l.sess, l.err = nil, ErrConnectionDown
		u.mu.Unlock()
		wait := backoff
		select {
		case err := <-ended:
			if errors.Is(err, gateway.ErrTakenOver) {
				// Another gateway uses the same ClientIDs: fighting over
				// them helps neither.
				wait = u.cfg.ReopenBackoffMax
				log.Error("another client took this shared connection's session over: give each gateway its own gateway_id or broker.client_id_prefix", zap.Error(err))
			}
		default:
		}
		if !sleep(u.ctx, jitter(wait)) || !sleep(u.ctx, u.ReconnectSlot()) {
			return
		}
	}
}

// ReconnectBackoff is the base upstream's (gateway.ReconnectPacer), so
// that the gateway's QoS -1 connection retries as every connection does;
// with a base that has none, the reopen backoff.
func (u *Upstream) ReconnectBackoff(failures int) time.Duration {
	if p, ok := u.base.(gateway.ReconnectPacer); ok {
		return p.ReconnectBackoff(failures)
	}
	d := u.cfg.ReopenBackoffMin
	for i := 1; i < failures && d < u.cfg.ReopenBackoffMax; i++ {
		d *= 2
	}
	return jitter(min(d, u.cfg.ReopenBackoffMax))
}

// ReconnectSlot takes a slot on the base upstream's gateway-wide
// reconnect limiter (broker.reconnect_rate), which the shared
// connections' reopens use too; 0 when the base has none.
func (u *Upstream) ReconnectSlot() time.Duration {
	if p, ok := u.base.(gateway.ReconnectPacer); ok {
		return p.ReconnectSlot()
	}
	return 0
}

func (u *Upstream) closeSession(s gateway.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Close(ctx)
}

// Open starts (or, for CleanStart false, resumes) a node's session. It
// costs no broker connection; it fails while the shared connection the
// node's publishes use is not open, with the reason it is not (so a
// broker's permanent refusal reaches the node as such).
func (u *Upstream) Open(ctx context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	u.mu.RLock()
	l := u.lanes[laneOf(opts.ClientID, u.cfg.Connections)]
	u.mu.RUnlock()
	// While the gateway starts, wait for the first attempt to open the
	// node's shared connection rather than refuse at once.
	select {
	case <-l.tried:
	case <-ctx.Done():
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, ErrClosed
	}
	if l.sess == nil {
		err := l.err
		u.mu.Unlock()
		return nil, fmt.Errorf("aggregate: shared connection %d: %w", l.idx, err)
	}
	if c, ok := l.sess.(interface{ Connected() bool }); ok && !c.Connected() {
		// Reconnecting: a node connecting now is told to come back later,
		// as in transparent mode.
		u.mu.Unlock()
		return nil, fmt.Errorf("aggregate: shared connection %d: %w", l.idx, ErrConnectionDown)
	}
	var release []string
	n := u.nodes[opts.ClientID]
	resume := n != nil && n.parked() && !opts.CleanStart
	if n != nil && !resume {
		release = u.dropLocked(n)
		n = nil
	}
	if n == nil {
		n = &node{id: opts.ClientID, lane: l, subs: make(map[string]byte)}
		u.nodes[opts.ClientID] = n
	}
	h := &handle{u: u, n: n, done: make(chan struct{})}
	u.mu.Unlock()
	u.unsubscribeAll(ctx, release)
	n.attach(h, opts, deliver)
	if !resume && !opts.CleanStart {
		// A node the gateway kept (a restart: SessionOptions.Subscriptions)
		// that this aggregator does not know: its subscriptions again.
		for f, q := range opts.Subscriptions {
			if _, err := u.subscribe(ctx, n, f, q); err != nil {
				_ = h.Close(ctx)
				return nil, fmt.Errorf("aggregate: restoring subscription %q: %w", f, err)
			}
		}
	}
	return h, nil
}

// dropLocked removes n and its memberships and returns the filters that
// lost their last node (to UNSUBSCRIBE once unlocked).
func (u *Upstream) dropLocked(n *node) []string {
	delete(u.nodes, n.id)
	n.detach() // stops its expiry timer
	var last []string
	for name := range n.subs {
		if f := u.filters[name]; f != nil && f.leave(n) {
			last = append(last, name)
		}
	}
	return last
}

func (u *Upstream) unsubscribeAll(ctx context.Context, names []string) {
	for _, name := range names {
		u.unsubscribe(ctx, name)
	}
}

// subscribe adds n to filter name at qos (see handle.Subscribe).
func (u *Upstream) subscribe(ctx context.Context, n *node, name string, qos byte) (byte, error) {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return 0, ErrClosed
	}
	if u.nodes[n.id] != n {
		u.mu.Unlock()
		return 0, ErrClosed // the node's session was dropped
	}
	f := u.filters[name]
	if f == nil {
		l := u.placeLocked(name)
		if l == nil {
			u.mu.Unlock()
			return 0, ErrTooManyOverlapping
		}
		f = &filter{name: name, lane: l, nodes: make(map[*node]byte), sem: make(chan struct{}, 1)}
		u.filters[name] = f
		l.tree.Put(name, f)
	}
	f.pending++
	// Live messages reach n from now on, as they would from the moment
	// the broker processes its own SUBSCRIBE.
	prev, had := f.nodes[n]
	f.nodes[n] = max(prev, qos)
	u.mu.Unlock()

	granted, err := u.subscribeBroker(ctx, f, n, qos)

	u.mu.Lock()
	f.pending--
	if err != nil {
		if had {
			f.nodes[n] = prev
		} else {
			delete(f.nodes, n)
		}
		delete(f.joining, n)
		last := len(f.nodes) == 0 && f.pending == 0
		if last && !f.held {
			u.forgetLocked(f)
		}
		u.mu.Unlock()
		if last && f.held {
			u.unsubscribe(context.WithoutCancel(ctx), name)
		}
		return 0, err
	}
	g := min(qos, granted)
	f.nodes[n] = g
	n.setSub(name, g)
	u.mu.Unlock()
	return g, nil
}

// subscribeBroker sends the SUBSCRIBE for f on behalf of n, one at a
// time per filter, and returns the QoS the broker granted.
func (u *Upstream) subscribeBroker(ctx context.Context, f *filter, n *node, qos byte) (byte, error) {
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-f.sem }()
	select {
	case <-f.lane.up:
	case <-ctx.Done():
		return 0, fmt.Errorf("aggregate: shared connection %d: %w", f.lane.idx, ErrConnectionDown)
	}
	u.mu.Lock()
	sess := f.lane.sess
	want := max(f.qos, qos)
	// The retained messages the broker sends in answer to this SUBSCRIBE
	// are for n alone: the nodes already subscribed had them.
	f.joining = map[*node]byte{n: qos}
	u.mu.Unlock()
	if sess == nil {
		return 0, fmt.Errorf("aggregate: shared connection %d: %w", f.lane.idx, ErrConnectionDown)
	}
	granted, err := sess.Subscribe(ctx, f.name, want)
	if err != nil {
		return 0, err
	}
	u.mu.Lock()
	f.qos, f.held = want, true
	u.mu.Unlock()
	return granted, nil
}

// placeLocked chooses the lane for a new filter: among the lanes where it
// overlaps no filter, the one with the fewest; a new lane if there is none
// and MaxConnections allows.
func (u *Upstream) placeLocked(name string) *lane {
	var best *lane
	for _, l := range u.lanes {
		if l.tree.Overlaps(name) {
			continue
		}
		if best == nil || l.tree.Len() < best.tree.Len() {
			best = l
		}
	}
	if best == nil && len(u.lanes) < u.cfg.MaxConnections {
		best = u.addLaneLocked()
		u.log.Info("shared broker connection added for overlapping filters", zap.Int("connection", best.idx), zap.String("filter", name))
	}
	return best
}

func (u *Upstream) forgetLocked(f *filter) {
	if u.filters[f.name] == f {
		delete(u.filters, f.name)
		f.lane.tree.Delete(f.name)
	}
}

// leave removes n from f and reports whether f has no node left.
func (f *filter) leave(n *node) bool {
	delete(f.nodes, n)
	delete(f.joining, n)
	return len(f.nodes) == 0 && f.pending == 0
}

// unsubscribe UNSUBSCRIBEs filter name if no node holds it any more.
func (u *Upstream) unsubscribe(ctx context.Context, name string) {
	u.mu.RLock()
	f := u.filters[name]
	u.mu.RUnlock()
	if f == nil {
		return
	}
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-f.sem }()
	u.mu.Lock()
	if len(f.nodes) != 0 || f.pending != 0 || u.filters[name] != f {
		u.mu.Unlock()
		return // a node joined meanwhile
	}
	u.forgetLocked(f)
	sess := f.lane.sess
	u.mu.Unlock()
	if sess != nil {
		if err := sess.Unsubscribe(ctx, name); err != nil {
			u.log.Debug("unsubscribe on the shared connection", zap.String("filter", name), zap.Error(err))
		}
	}
}

// dispatch hands a message from lane l's connection to the nodes of the
// filter it matches there (filters on a lane never overlap: at most one).
func (u *Upstream) dispatch(l *lane, m gateway.Message) {
	type target struct {
		n   *node
		qos byte
	}
	var targets []target
	u.mu.RLock()
	l.tree.Match(m.Topic, func(_ string, f *filter) {
		set := f.nodes
		if m.Retain {
			set = f.joining // retained messages answer a SUBSCRIBE
		}
		for n, q := range set {
			targets = append(targets, target{n, q})
		}
	})
	u.mu.RUnlock()
	if len(targets) == 0 {
		u.unrouted.Add(1)
		return
	}
	for _, t := range targets {
		c := m
		c.QoS = min(m.QoS, t.qos)
		t.n.deliverMsg(c, u.cfg.MaxParked, func() { u.parkedDropped.Add(1) })
	}
	u.delivered.Add(uint64(len(targets)))
}

// expire forgets a parked node whose session expired.
func (u *Upstream) expire(n *node) {
	u.mu.Lock()
	if u.nodes[n.id] != n || !n.parked() {
		u.mu.Unlock()
		return
	}
	release := u.dropLocked(n)
	u.mu.Unlock()
	ctx, cancel := context.WithTimeout(u.ctx, time.Minute)
	defer cancel()
	u.unsubscribeAll(ctx, release)
}

// Ready is closed once every one of the Connections shared connections
// has been open.
func (u *Upstream) Ready() <-chan struct{} {
	u.mu.RLock()
	lanes := u.lanes[:u.cfg.Connections]
	u.mu.RUnlock()
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		for _, l := range lanes {
			select {
			case <-l.up:
			case <-u.ctx.Done():
				return
			}
		}
	}()
	return ready
}

// Stats returns the current counters.
func (u *Upstream) Stats() Stats {
	u.mu.RLock()
	s := Stats{Connections: len(u.lanes), Filters: len(u.filters), Nodes: len(u.nodes)}
	for _, l := range u.lanes {
		if l.sess != nil {
			s.ConnectionsUp++
		}
	}
	nodes := make([]*node, 0, len(u.nodes))
	for _, n := range u.nodes {
		nodes = append(nodes, n)
	}
	u.mu.RUnlock()
	for _, n := range nodes {
		if n.parked() {
			s.Parked++
		}
	}
	s.Delivered, s.Unrouted, s.ParkedDropped = u.delivered.Load(), u.unrouted.Load(), u.parkedDropped.Load()
	return s
}

// Close closes the shared connections (cleanly: the broker publishes no
// will, none being registered) and ends every node session.
func (u *Upstream) Close(ctx context.Context) error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	for _, n := range u.nodes {
		n.detach()
	}
	u.mu.Unlock()
	u.cancel()
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// laneOf spreads ClientIDs over the first n lanes.
func laneOf(clientID string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(clientID))
	return int(h.Sum32() % uint32(n))
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1) //nolint:gosec // jitter, not security
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
