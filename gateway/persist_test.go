package gateway

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/store"
)

// durableRig is a rig over a bbolt store at path; stop shuts the gateway
// down and closes the store, as the command does.
func durableRig(t *testing.T, path string, cfg Config) (r *rig, stop func()) {
	t.Helper()
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	tr := newMemTransport()
	up := newFakeUpstream()
	g, err := New(cfg, WithTransport(tr), WithUpstream(up), WithStore(st))
	if err != nil {
		_ = st.Close()
		t.Fatal(err)
	}
	r = &rig{t: t, g: g, tr: tr, up: up}
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(context.Background()) }()
	<-g.Ready()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-done
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return r, stop
}

// waitSession waits until the fake broker has a session for id.
func (r *rig) waitSession(id string) *fakeSession {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := r.up.session(id); s != nil {
			return s
		}
		select {
		case <-time.After(time.Millisecond):
		case <-r.g.Stopping():
		}
	}
	r.t.Fatalf("no upstream session for %s", id)
	return nil
}

// A restart on the same store is invisible to nodes: an active node
// publishes on its registered topic id without a new CONNECT, a sleeping
// node's wake-up gets what the broker sent while it slept, and a QoS 2
// retry is answered PUBREC without reaching the broker again.
func TestRestartRestoresSessions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	cfg := Config{Shards: 2}
	nodeB := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}

	r, stop := durableRig(t, path, cfg)
	r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "active"})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(nodeA, &sn.Register{MsgID: 1, TopicName: "a/b"})
	r.expect(&sn.Regack{TopicID: 1, MsgID: 1})
	r.send(nodeA, &sn.Publish{QoS: sn.QoS2, TopicID: 1, MsgID: 7, Data: []byte("once")})
	r.expect(&sn.Pubrec{MsgID: 7})
	if m := r.published(); string(m.Payload) != "once" {
		t.Fatalf("published %q", m.Payload)
	}

	r.send(nodeB, &sn.Connect{CleanSession: false, Duration: 60, ClientID: "sleeper"})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(nodeB, &sn.Subscribe{QoS: sn.QoS1, TopicName: "x/y", MsgID: 2})
	r.expect(&sn.Suback{QoS: sn.QoS1, TopicID: 1, MsgID: 2})
	r.send(nodeB, &sn.Disconnect{HasDuration: true, Duration: 600})
	r.expect(&sn.Disconnect{})
	// The broker's message is acknowledged (deliver returns) only once stored.
	r.waitSession("sleeper").deliver(Message{Topic: "x/y", Payload: []byte("kept"), QoS: 1})
	stop()

	r2, _ := durableRig(t, path, cfg)
	if s := r2.waitSession("sleeper"); s.opts.CleanStart || s.opts.Subscriptions["x/y"] != 1 {
		t.Errorf("sleeper resumed with %+v", s.opts)
	}
	r2.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 8, Data: []byte("after")})
	r2.expect(&sn.Puback{TopicID: 1, MsgID: 8})
	if m := r2.published(); string(m.Payload) != "after" {
		t.Fatalf("published %q", m.Payload)
	}
	r2.send(nodeA, &sn.Publish{QoS: sn.QoS2, DUP: true, TopicID: 1, MsgID: 7, Data: []byte("once")})
	r2.expect(&sn.Pubrec{MsgID: 7})
	r2.send(nodeA, &sn.Pubrel{MsgID: 7})
	r2.expect(&sn.Pubcomp{MsgID: 7})

	r2.send(nodeB, &sn.PingReq{ClientID: "sleeper"})
	p, ok := r2.next().(*sn.Publish)
	if !ok || string(p.Data) != "kept" || p.TopicID != 1 {
		t.Fatalf("wake-up got %+v", p)
	}
	r2.send(nodeB, &sn.Puback{TopicID: 1, MsgID: p.MsgID})
	r2.expect(&sn.PingResp{})
	select {
	case m := <-r2.up.published:
		t.Fatalf("a second message reached the broker: %+v", m)
	default:
	}
}

// A clean CONNECT deletes the stored session: a restart does not bring
// back what the node dropped.
func TestCleanConnectDeletesStoredSession(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	r, stop := durableRig(t, path, Config{Shards: 1})
	r.send(nodeA, &sn.Connect{CleanSession: false, Duration: 60, ClientID: "n"})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(nodeA, &sn.Register{MsgID: 1, TopicName: "a/b"})
	r.expect(&sn.Regack{TopicID: 1, MsgID: 1})
	r.send(nodeA, &sn.Disconnect{})
	r.expect(&sn.Disconnect{})
	r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n"})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(nodeA, &sn.Disconnect{})
	r.expect(&sn.Disconnect{})
	stop()
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	if err := st.Load(func(*store.Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d records left after a clean session ended", n)
	}
}

// failingStore is a store whose commits fail while fail is set.
type failingStore struct {
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) set(v bool) { f.mu.Lock(); f.fail = v; f.mu.Unlock() }

func (f *failingStore) Load(func(*store.Record) error) error { return nil }

func (f *failingStore) Commit(ctx context.Context, _ *store.Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("disk full")
	}
	return ctx.Err()
}

func (f *failingStore) Close() error { return nil }

// A store write that fails is never acknowledged: a QoS 2 PUBLISH gets
// congestion and reaches no broker; once writes work again, the retry goes
// through. The broker's message is held (deliver does not return) until
// it is stored.
func TestStoreFailureIsCongestion(t *testing.T) {
	st := &failingStore{}
	r := newRig(t, Config{Shards: 1}, WithStore(st))
	r.send(nodeA, &sn.Connect{CleanSession: false, Duration: 60, ClientID: "n"})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(nodeA, &sn.Register{MsgID: 1, TopicName: "a/b"})
	r.expect(&sn.Regack{TopicID: 1, MsgID: 1})
	r.send(nodeA, &sn.Subscribe{QoS: sn.QoS1, TopicName: "c/d", MsgID: 2})
	r.expect(&sn.Suback{QoS: sn.QoS1, TopicID: 2, MsgID: 2})
	st.set(true)
	r.send(nodeA, &sn.Publish{QoS: sn.QoS2, TopicID: 1, MsgID: 5, Data: []byte("x")})
	r.expect(&sn.Puback{TopicID: 1, MsgID: 5, ReturnCode: sn.RejectedCongestion})
	select {
	case m := <-r.up.published:
		t.Fatalf("reached the broker without being stored: %+v", m)
	default:
	}
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		r.waitSession("n").deliver(Message{Topic: "c/d", Payload: []byte("y"), QoS: 1})
	}()
	if p, ok := r.next().(*sn.Publish); !ok || string(p.Data) != "y" {
		t.Fatalf("node got %+v", p)
	}
	select {
	case <-delivered:
		t.Fatal("the broker's message was acknowledged while the store failed")
	default:
	}
	st.set(false)
	<-delivered // stored on a retry, then acknowledged
	if r.g.Stats().StoreFailures.Load() == 0 {
		t.Error("store failures not counted")
	}
}

// Shutdown lets a broker operation in flight finish and answers its node
// before the gateway stops.
func TestShutdownDrainsInFlight(t *testing.T) {
	r, gate := stuckPublish(t)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- r.g.Shutdown(ctx)
	}()
	<-r.g.Stopping()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a publish in flight", err)
	default:
	}
	close(gate)
	r.expect(&sn.Puback{TopicID: 1, MsgID: 9})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Shutdown is bounded by its context: an operation that never ends does
// not hold it.
func TestShutdownBoundedByContext(t *testing.T) {
	r, _ := stuckPublish(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.g.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with an operation stuck: %v", err)
	}
}

// stuckPublish is a rig whose node has a QoS 1 publish waiting for the
// broker until gate is closed.
func stuckPublish(t *testing.T) (*rig, chan struct{}) {
	t.Helper()
	r := newRig(t, Config{Shards: 1})
	r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n"})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(nodeA, &sn.Register{MsgID: 1, TopicName: "a/b"})
	r.expect(&sn.Regack{TopicID: 1, MsgID: 1})
	gate := make(chan struct{})
	r.up.mu.Lock()
	r.up.pubGate = gate
	r.up.mu.Unlock()
	r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 9, Data: []byte("x")})
	<-r.up.pubEntered // the publish waits at the fake broker
	return r, gate
}

// A QoS 2 PUBLISH the broker got but had not answered when the gateway
// stopped: after the restart the stored packet is handed back to the
// upstream to resend with its id, the node's retry waits for the outcome
// instead of being forwarded again, and gets PUBREC once the broker's
// PUBREC for the resent packet comes.
func TestRestartResumesQoS2InFlight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	r, stop := durableRig(t, path, Config{Shards: 1})
	r.send(nodeA, &sn.Connect{CleanSession: false, Duration: 60, ClientID: "n"})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(nodeA, &sn.Register{MsgID: 1, TopicName: "a/b"})
	r.expect(&sn.Regack{TopicID: 1, MsgID: 1})
	r.up.mu.Lock()
	r.up.pubGate = make(chan struct{}) // never opens: the broker stalls
	r.up.mu.Unlock()
	r.send(nodeA, &sn.Publish{QoS: sn.QoS2, TopicID: 1, MsgID: 7, Data: []byte("once")})
	<-r.up.pubEntered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = r.g.Shutdown(ctx) // the publish never completes: cut short
	stop()

	r2, _ := durableRig(t, path, Config{Shards: 1})
	s := r2.waitSession("n")
	if len(s.opts.Resume) != 1 || s.opts.Resume[0].Data[0] != 0x34 || s.opts.CleanStart {
		t.Fatalf("resumed with %+v", s.opts)
	}
	r2.send(nodeA, &sn.Publish{QoS: sn.QoS2, DUP: true, TopicID: 1, MsgID: 7, Data: []byte("once")})
	// The broker answers the resent PUBLISH: its PUBREL is stored.
	id := s.opts.Resume[0].ID
	if err := s.opts.Packets.Put(id, []byte{0x62, 0x02, byte(id >> 8), byte(id)}); err != nil {
		t.Fatal(err)
	}
	r2.send(nodeA, &sn.Publish{QoS: sn.QoS2, DUP: true, TopicID: 1, MsgID: 7, Data: []byte("once")})
	// The first retry gets nothing if the shard took it before the outcome
	// was stored, and PUBREC if after (the send does not wait for the
	// shard): one PUBREC or two, then PUBCOMP for the PUBREL.
	r2.expect(&sn.Pubrec{MsgID: 7})
	r2.send(nodeA, &sn.Pubrel{MsgID: 7})
	for {
		p := r2.next()
		if rec, ok := p.(*sn.Pubrec); ok && rec.MsgID == 7 {
			continue
		}
		if c, ok := p.(*sn.Pubcomp); !ok || c.MsgID != 7 {
			t.Fatalf("got %s, want PUBCOMP 7", describe(p))
		}
		break
	}
	select {
	case m := <-r2.up.published:
		t.Fatalf("the retry was forwarded again: %+v", m)
	default:
	}
}
