package gateway

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// memTransport is an in-memory datagram transport: tests inject datagrams
// with In and read the gateway's answers from Out. Channels only, so it
// works inside synctest bubbles.
type memTransport struct {
	in       chan memDatagram
	out      chan memDatagram
	mu       sync.Mutex
	deadline chan struct{}
	closed   chan struct{}
	once     sync.Once
}

type memDatagram struct {
	b    []byte
	addr net.Addr
}

func newMemTransport() *memTransport {
	return &memTransport{
		in:       make(chan memDatagram, 1024),
		out:      make(chan memDatagram, 1024),
		deadline: make(chan struct{}),
		closed:   make(chan struct{}),
	}
}

func (m *memTransport) ReadFrom(p []byte) (int, net.Addr, error) {
	m.mu.Lock()
	dl := m.deadline
	m.mu.Unlock()
	select {
	case d := <-m.in:
		return copy(p, d.b), d.addr, nil
	case <-dl:
		return 0, nil, timeoutError{}
	case <-m.closed:
		return 0, nil, net.ErrClosed
	}
}

func (m *memTransport) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case m.out <- memDatagram{b: append([]byte(nil), p...), addr: addr}:
		return len(p), nil
	case <-m.closed:
		return 0, net.ErrClosed
	}
}

func (m *memTransport) Close() error {
	m.once.Do(func() { close(m.closed) })
	return nil
}

func (m *memTransport) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1884}
}

func (m *memTransport) SetReadDeadline(t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !t.IsZero() && !t.After(time.Now()) {
		select {
		case <-m.deadline:
		default:
			close(m.deadline)
		}
	}
	return nil
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// fakeUpstream records what the gateway sends upstream. Broker-side
// failures are switched with down.
type fakeUpstream struct {
	mu         sync.Mutex
	down       bool
	openErr    error         // when set, Open fails with it
	gate       chan struct{} // when set, Open waits for it
	pubGate    chan struct{} // when set, Publish waits for it
	opens      int
	packetID   uint16
	pubEntered chan struct{} // a Publish call is waiting at pubGate
	published  chan Message
	sessions   map[string]*fakeSession
}

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{published: make(chan Message, 1024), sessions: map[string]*fakeSession{}, pubEntered: make(chan struct{}, 64)}
}

var errDown = errors.New("fake: broker down")

func (f *fakeUpstream) setDown(d bool) {
	f.mu.Lock()
	f.down = d
	f.mu.Unlock()
}

func (f *fakeUpstream) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *fakeUpstream) Open(ctx context.Context, opts SessionOptions, deliver func(Message)) (Session, error) {
	f.mu.Lock()
	gate := f.gate
	f.opens++
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.isDown() {
		return nil, errDown
	}
	f.mu.Lock()
	err := f.openErr
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s := &fakeSession{f: f, opts: opts, deliver: deliver, done: make(chan struct{})}
	f.mu.Lock()
	f.sessions[opts.ClientID] = s
	f.mu.Unlock()
	return s, nil
}

func (f *fakeUpstream) session(id string) *fakeSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions[id]
}

type fakeSession struct {
	f       *fakeUpstream
	opts    SessionOptions
	deliver func(Message)
	done    chan struct{}
	once    sync.Once
}

func (s *fakeSession) Publish(ctx context.Context, m Message) error {
	if s.f.isDown() {
		return errDown
	}
	// As the paho session does: a QoS 2 PUBLISH is stored before it goes
	// out, replaced by its PUBREL at the broker's PUBREC, and forgotten at
	// PUBCOMP.
	var id uint16
	if ps := s.opts.Packets; ps != nil && m.QoS == 2 {
		s.f.mu.Lock()
		s.f.packetID++
		id = s.f.packetID
		s.f.mu.Unlock()
		if err := ps.Put(id, []byte{0x34, 0x00}); err != nil {
			return err
		}
	}
	s.f.mu.Lock()
	gate := s.f.pubGate
	s.f.mu.Unlock()
	if gate != nil { // the broker stalls (after the PUBLISH went out)
		select {
		case s.f.pubEntered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.Payload = append([]byte(nil), m.Payload...)
	s.f.published <- m
	if id != 0 {
		if err := s.opts.Packets.Put(id, []byte{0x62, 0x02, byte(id >> 8), byte(id)}); err != nil {
			return err
		}
		s.opts.Packets.Delete(id)
	}
	return nil
}

func (s *fakeSession) Subscribe(_ context.Context, _ string, qos byte) (byte, error) {
	if s.f.isDown() {
		return 0, errDown
	}
	return qos, nil
}

func (s *fakeSession) Unsubscribe(context.Context, string) error { return nil }

func (s *fakeSession) Close(context.Context) error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *fakeSession) Done() <-chan struct{} { return s.done }

// rig is a gateway over a memTransport and a fakeUpstream.
type rig struct {
	t  testing.TB
	g  *Gateway
	tr *memTransport
	up *fakeUpstream
}

func newRig(t testing.TB, cfg Config, opts ...Option) *rig {
	t.Helper()
	tr := newMemTransport()
	up := newFakeUpstream()
	g, err := New(cfg, append([]Option{WithTransport(tr), WithUpstream(up)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, g: g, tr: tr, up: up}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(context.Background())
	}()
	<-g.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-done
	})
	return r
}

var nodeA = &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}

func (r *rig) send(from net.Addr, p snpacket.Packet) {
	r.t.Helper()
	b, err := snpacket.Marshal(p)
	if err != nil {
		r.t.Fatal(err)
	}
	r.tr.in <- memDatagram{b: b, addr: from}
}

// next returns the gateway's next datagram (decoded).
func (r *rig) next() snpacket.Packet {
	r.t.Helper()
	select {
	case d := <-r.tr.out:
		p, err := snpacket.Unmarshal(d.b)
		if err != nil {
			r.t.Fatalf("gateway sent undecodable % x: %v", d.b, err)
		}
		return p
	case <-time.After(time.Hour):
		r.t.Fatal("no datagram from the gateway")
		return nil
	}
}
