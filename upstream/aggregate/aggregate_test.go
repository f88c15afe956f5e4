package aggregate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

const wait = 10 * time.Second

// fakeBase is an MQTT upstream in memory: it records what each shared
// connection sends and lets the test deliver messages on it.
type fakeBase struct {
	mu      sync.Mutex
	openErr error
	sess    map[string]*fakeSession // by ClientID
	opened  chan *fakeSession
}

func newFakeBase() *fakeBase {
	return &fakeBase{sess: map[string]*fakeSession{}, opened: make(chan *fakeSession, 64)}
}

func (b *fakeBase) Open(_ context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openErr != nil {
		return nil, b.openErr
	}
	s := &fakeSession{id: opts.ClientID, deliver: deliver, done: make(chan struct{}), ops: make(chan string, 1000)}
	b.sess[opts.ClientID] = s
	b.opened <- s
	return s, nil
}

type fakeSession struct {
	id      string
	deliver func(gateway.Message)
	ops     chan string // "sub a/b 1", "unsub a/b", "pub t 1"
	grant   byte        // 0: grant what was asked
	once    sync.Once
	done    chan struct{}
	down    atomic.Bool // reconnecting: Connected reports false
}

func (s *fakeSession) Connected() bool { return !s.down.Load() }

func (s *fakeSession) Publish(_ context.Context, m gateway.Message) error {
	s.ops <- fmt.Sprintf("pub %s %d", m.Topic, m.QoS)
	return nil
}

func (s *fakeSession) Subscribe(_ context.Context, f string, q byte) (byte, error) {
	s.ops <- fmt.Sprintf("sub %s %d", f, q)
	if s.grant != 0 {
		return min(q, s.grant), nil
	}
	return q, nil
}

func (s *fakeSession) Unsubscribe(_ context.Context, f string) error {
	s.ops <- "unsub " + f
	return nil
}

func (s *fakeSession) Close(context.Context) error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *fakeSession) Done() <-chan struct{} { return s.done }

func (s *fakeSession) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-s.ops:
		if got != want {
			t.Fatalf("%s sent %q, want %q", s.id, got, want)
		}
	case <-time.After(wait):
		t.Fatalf("%s sent nothing, want %q", s.id, want)
	}
}

func (s *fakeSession) expectNothing(t *testing.T) {
	t.Helper()
	select {
	case got := <-s.ops:
		t.Fatalf("%s sent %q, want nothing", s.id, got)
	default:
	}
}

// start runs an aggregator with n shared connections and waits until they
// are open.
func start(t *testing.T, cfg Config) (*Upstream, *fakeBase, []*fakeSession) {
	t.Helper()
	b := newFakeBase()
	cfg.ClientID = "gw"
	u := New(b, cfg, nil)
	t.Cleanup(func() {
		if err := u.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	lanes := make([]*fakeSession, 0, u.cfg.Connections)
	for range u.cfg.Connections {
		lanes = append(lanes, <-b.opened)
	}
	for _, l := range u.lanes {
		<-l.up
	}
	return u, b, lanes
}

func laneSession(b *fakeBase, i int) *fakeSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sess[fmt.Sprintf("gw-%d", i)]
}

// inbox collects what the aggregator delivers to one node.
type inbox chan gateway.Message

func (in inbox) deliver(m gateway.Message) { in <- m }

func (in inbox) expect(t *testing.T, topic string, qos byte, retain bool) {
	t.Helper()
	select {
	case m := <-in:
		if m.Topic != topic || m.QoS != qos || m.Retain != retain {
			t.Fatalf("got %+v, want %s qos %d retain %v", m, topic, qos, retain)
		}
	case <-time.After(wait):
		t.Fatalf("nothing delivered, want %s", topic)
	}
}

func (in inbox) expectNothing(t *testing.T) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("got %+v, want nothing", m)
	default:
	}
}

func open(t *testing.T, u *Upstream, id string, clean bool) (gateway.Session, inbox) {
	t.Helper()
	in := make(inbox, 100)
	s, err := u.Open(context.Background(), gateway.SessionOptions{ClientID: id, CleanStart: clean, SessionExpiry: time.Hour}, in.deliver)
	if err != nil {
		t.Fatal(err)
	}
	return s, in
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// One broker subscription per filter, counted over nodes, fanned out at the
// lower of the message's and each node's QoS.
func TestRefCountAndFanOut(t *testing.T) {
	u, b, _ := start(t, Config{Connections: 1})
	l := laneSession(b, 0)
	ctx := context.Background()
	a, ina := open(t, u, "a", true)
	c, inc := open(t, u, "c", true)
	if g, err := a.Subscribe(ctx, "t/#", 2); err != nil || g != 2 {
		t.Fatalf("subscribe: %d %v", g, err)
	}
	l.expect(t, "sub t/# 2")
	if g, err := c.Subscribe(ctx, "t/#", 0); err != nil || g != 0 {
		t.Fatalf("subscribe: %d %v", g, err)
	}
	l.expect(t, "sub t/# 2") // again for c's retained messages, at the filter's QoS

	l.deliver(gateway.Message{Topic: "t/x", QoS: 2})
	ina.expect(t, "t/x", 2, false)
	inc.expect(t, "t/x", 0, false)
	l.deliver(gateway.Message{Topic: "other", QoS: 1})
	ina.expectNothing(t)
	if s := u.Stats(); s.Delivered != 2 || s.Unrouted != 1 || s.Filters != 1 || s.Nodes != 2 {
		t.Fatalf("stats %+v", s)
	}

	if err := a.Unsubscribe(ctx, "t/#"); err != nil {
		t.Fatal(err)
	}
	l.expectNothing(t)
	if err := c.Close(ctx); err != nil { // clean: its subscriptions go
		t.Fatal(err)
	}
	l.expect(t, "unsub t/#")
}

// The broker's answer to a SUBSCRIBE (retained messages, RETAIN set) goes
// to the joining node only; live messages to all.
func TestRetainedGoToTheJoiningNodeOnly(t *testing.T) {
	u, b, _ := start(t, Config{Connections: 1})
	l := laneSession(b, 0)
	ctx := context.Background()
	a, ina := open(t, u, "a", true)
	c, inc := open(t, u, "c", true)
	if _, err := a.Subscribe(ctx, "r/+", 1); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "sub r/+ 1")
	l.deliver(gateway.Message{Topic: "r/1", QoS: 1, Retain: true})
	ina.expect(t, "r/1", 1, true)
	if _, err := c.Subscribe(ctx, "r/+", 1); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "sub r/+ 1")
	l.deliver(gateway.Message{Topic: "r/1", QoS: 1, Retain: true})
	inc.expect(t, "r/1", 1, true)
	ina.expectNothing(t)
	l.deliver(gateway.Message{Topic: "r/2", QoS: 1})
	ina.expect(t, "r/2", 1, false)
	inc.expect(t, "r/2", 1, false)
}

// Overlapping filters never share a connection: each copy's filter is
// known, so no node gets a copy meant for another filter.
func TestOverlappingFiltersGetTheirOwnConnection(t *testing.T) {
	u, b, _ := start(t, Config{Connections: 1, MaxConnections: 2})
	ctx := context.Background()
	a, ina := open(t, u, "a", true)
	c, inc := open(t, u, "c", true)
	if _, err := a.Subscribe(ctx, "s/#", 1); err != nil {
		t.Fatal(err)
	}
	laneSession(b, 0).expect(t, "sub s/# 1")
	if _, err := c.Subscribe(ctx, "s/x", 1); err != nil {
		t.Fatal(err)
	}
	second := <-b.opened
	second.expect(t, "sub s/x 1")
	if _, err := c.Subscribe(ctx, "+/x", 1); !errors.Is(err, ErrTooManyOverlapping) {
		t.Fatalf("third overlapping filter: %v", err)
	}
	// mosquitto sends a copy per subscription, each on its connection.
	laneSession(b, 0).deliver(gateway.Message{Topic: "s/x", QoS: 1})
	second.deliver(gateway.Message{Topic: "s/x", QoS: 1})
	ina.expect(t, "s/x", 1, false)
	inc.expect(t, "s/x", 1, false)
	ina.expectNothing(t)
	inc.expectNothing(t)
	// A disjoint filter fits on the first connection.
	if _, err := c.Subscribe(ctx, "q/x", 0); err != nil {
		t.Fatal(err)
	}
	laneSession(b, 0).expect(t, "sub q/x 0")
}

// A CleanSession=0 node's subscriptions and messages outlive its session
// for SessionExpiry; a clean CONNECT drops them.
func TestParkedSessionResumes(t *testing.T) {
	u, b, _ := start(t, Config{Connections: 1, MaxParked: 2})
	l := laneSession(b, 0)
	ctx := context.Background()
	s, _ := open(t, u, "p", false)
	if _, err := s.Subscribe(ctx, "p/#", 1); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "sub p/# 1")
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l.expectNothing(t)
	for i := range 3 {
		l.deliver(gateway.Message{Topic: fmt.Sprintf("p/%d", i), QoS: 1})
	}
	if st := u.Stats(); st.Parked != 1 || st.ParkedDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
	_, in := open(t, u, "p", false)
	in.expect(t, "p/1", 1, false) // the oldest was dropped
	in.expect(t, "p/2", 1, false)
	l.deliver(gateway.Message{Topic: "p/3", QoS: 1})
	in.expect(t, "p/3", 1, false)

	// A clean CONNECT starts over: the filter goes.
	_, in2 := open(t, u, "p", true)
	l.expect(t, "unsub p/#")
	l.deliver(gateway.Message{Topic: "p/4", QoS: 1})
	in2.expectNothing(t)
}

func TestParkedSessionExpires(t *testing.T) {
	u, b, _ := start(t, Config{Connections: 1})
	l := laneSession(b, 0)
	ctx := context.Background()
	in := make(inbox, 1)
	s, err := u.Open(ctx, gateway.SessionOptions{ClientID: "e", SessionExpiry: time.Millisecond}, in.deliver)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(ctx, "e/1", 0); err != nil {
		t.Fatal(err)
	}
	l.expect(t, "sub e/1 0")
	_ = s.Close(ctx)
	l.expect(t, "unsub e/1") // after the expiry
	if st := u.Stats(); st.Nodes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A node cannot connect while its shared connection is not open, and
// learns why: a permanent refusal stays permanent.
func TestOpenReportsWhyTheConnectionIsDown(t *testing.T) {
	b := newFakeBase()
	b.openErr = permanentErr{}
	u := New(b, Config{Connections: 2, ReopenBackoffMin: time.Hour}, nil)
	defer func() { _ = u.Close(context.Background()) }()
	// The lanes' first open attempt has no event to wait on: poll.
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		_, err := u.Open(context.Background(), gateway.SessionOptions{ClientID: "x"}, func(gateway.Message) {})
		if gateway.IsPermanent(err) {
			break
		}
		if err == nil || time.Now().After(deadline) {
			t.Fatalf("Open: %v", err)
		}
		<-tick.C
	}
}

// While a shared connection reconnects, a node whose publishes would use it
// is refused (the gateway answers CONNACK congestion), as a transparent
// node's own connection would be.
func TestOpenRefusedWhileTheConnectionReconnects(t *testing.T) {
	u, _, lanes := start(t, Config{Connections: 1})
	lanes[0].down.Store(true)
	if _, err := u.Open(context.Background(), gateway.SessionOptions{ClientID: "x", CleanStart: true}, func(gateway.Message) {}); !errors.Is(err, ErrConnectionDown) {
		t.Fatalf("Open while down: %v, want ErrConnectionDown", err)
	}
	lanes[0].down.Store(false)
	if _, err := u.Open(context.Background(), gateway.SessionOptions{ClientID: "x", CleanStart: true}, func(gateway.Message) {}); err != nil {
		t.Fatalf("Open once back: %v", err)
	}
}

type permanentErr struct{}

func (permanentErr) Error() string   { return "not authorized" }
func (permanentErr) Permanent() bool { return true }

// Publishes go over the connection the ClientId hashes to, and the node's
// QoS is the broker's business.
func TestPublishUsesTheNodesConnection(t *testing.T) {
	u, b, _ := start(t, Config{Connections: 4})
	s, _ := open(t, u, "pub-node", true)
	if err := s.Publish(context.Background(), gateway.Message{Topic: "up", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	laneSession(b, laneOf("pub-node", 4)).expect(t, "pub up 1")
}

// pacedBase is a fakeBase with a gateway-wide reconnect limiter: it counts
// Opens and slots taken.
type pacedBase struct {
	*fakeBase
	mu           sync.Mutex
	opens, slots int
}

func (p *pacedBase) Open(ctx context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	p.mu.Lock()
	p.opens++
	p.mu.Unlock()
	return p.fakeBase.Open(ctx, opts, deliver)
}

func (p *pacedBase) ReconnectBackoff(failures int) time.Duration {
	return time.Duration(failures) * time.Millisecond
}

func (p *pacedBase) ReconnectSlot() time.Duration {
	p.mu.Lock()
	p.slots++
	p.mu.Unlock()
	return 0
}

func (p *pacedBase) counts() (opens, slots int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opens, p.slots
}

// Reopening a shared connection takes a slot on the base's reconnect
// limiter (broker.reconnect_rate) each time, and the aggregator passes the
// base's backoff and limiter on to the gateway (its QoS -1 connection).
func TestReopenTakesASlotOnTheBasesLimiter(t *testing.T) {
	b := &pacedBase{fakeBase: newFakeBase()}
	b.openErr = errors.New("broker down")
	u := New(b, Config{Connections: 2, ReopenBackoffMin: time.Millisecond, ReopenBackoffMax: time.Millisecond}, nil)
	defer func() { _ = u.Close(context.Background()) }()
	if d := u.ReconnectBackoff(7); d != 7*time.Millisecond {
		t.Fatalf("ReconnectBackoff(7) = %v, want the base's 7ms", d)
	}
	// The lanes retry with no event to wait on: poll.
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		opens, slots := b.counts()
		// Every open but each lane's first waited for a slot.
		if opens > slots+2 {
			t.Fatalf("%d opens on %d slots", opens, slots)
		}
		if opens >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d opens", opens)
		}
		<-tick.C
	}
	_, before := b.counts()
	u.ReconnectSlot()
	if _, after := b.counts(); after <= before {
		t.Fatal("ReconnectSlot did not take the base's slot")
	}
}
