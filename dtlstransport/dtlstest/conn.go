package dtlstest

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SwapConn is a client-side net.PacketConn over a UDP socket that can be
// replaced while a DTLS session runs on it: the node's source port changes
// (a NAT rebinding) but its DTLS state does not. Mute makes it drop every
// write, so a node can "lose power" without sending close_notify.
type SwapConn struct {
	mu    sync.Mutex
	cur   *net.UDPConn
	rdl   time.Time
	muted atomic.Bool
}

// NewSwapConn binds a UDP socket on laddr (e.g. "127.0.0.1:0").
func NewSwapConn(laddr string) (*SwapConn, error) {
	c, err := listen(laddr)
	if err != nil {
		return nil, err
	}
	return &SwapConn{cur: c}, nil
}

func listen(laddr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", laddr)
	if err != nil {
		return nil, err
	}
	return net.ListenUDP("udp", ua)
}

func (s *SwapConn) get() *net.UDPConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Swap moves the conn to a fresh socket on a new port and closes the old.
func (s *SwapConn) Swap() error {
	c, err := listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.cur
	s.cur = c
	_ = c.SetReadDeadline(s.rdl)
	s.mu.Unlock()
	return old.Close()
}

// Mute drops every later write.
func (s *SwapConn) Mute() { s.muted.Store(true) }

// ReadFrom reads from the current socket, following a Swap.
func (s *SwapConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c := s.get()
		n, a, err := c.ReadFrom(b)
		if err != nil && errors.Is(err, net.ErrClosed) && s.get() != c {
			continue // swapped under us
		}
		return n, a, err
	}
}

// WriteTo writes from the current socket.
func (s *SwapConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if s.muted.Load() {
		return len(b), nil
	}
	return s.get().WriteTo(b, addr)
}

// Close closes the current socket.
func (s *SwapConn) Close() error { return s.get().Close() }

// LocalAddr returns the current socket's address.
func (s *SwapConn) LocalAddr() net.Addr { return s.get().LocalAddr() }

// SetDeadline sets the read deadline.
func (s *SwapConn) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

// SetReadDeadline sets the read deadline, kept across swaps.
func (s *SwapConn) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rdl = t
	return s.cur.SetReadDeadline(t)
}

// SetWriteDeadline does nothing.
func (s *SwapConn) SetWriteDeadline(time.Time) error { return nil }

// LossyRelay forwards datagrams between one client and a server, dropping
// a fraction of them in each direction with a seeded generator, but never
// more than MaxRun in a row, so that a retransmitting protocol always gets
// through in bounded time. The first datagram each way is always dropped,
// so the retransmission path is exercised whatever the seed.
type LossyRelay struct {
	Addr    string // where the client sends
	Dropped atomic.Uint64
	Passed  atomic.Uint64
	front   *net.UDPConn // faces the client
	back    *net.UDPConn // faces the server
	wg      sync.WaitGroup
}

// MaxRun bounds consecutive drops in one direction.
const MaxRun = 2

// NewLossyRelay relays to server, dropping loss (0..1) of the datagrams.
// It stops in t.Cleanup.
func NewLossyRelay(t testing.TB, server string, loss float64, seed uint64) *LossyRelay {
	t.Helper()
	front, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, sa)
	if err != nil {
		t.Fatal(err)
	}
	r := &LossyRelay{Addr: front.LocalAddr().String(), front: front, back: back}
	var client atomic.Pointer[net.Addr]
	r.wg.Add(2)
	go r.pump(rand.New(rand.NewPCG(seed, 1)), loss, func(b []byte) (int, error) {
		n, a, err := front.ReadFrom(b)
		if err == nil {
			client.Store(&a)
		}
		return n, err
	}, func(b []byte) { _, _ = back.Write(b) })
	go r.pump(rand.New(rand.NewPCG(seed, 2)), loss, back.Read, func(b []byte) {
		if a := client.Load(); a != nil {
			_, _ = front.WriteTo(b, *a)
		}
	})
	t.Cleanup(func() {
		_ = front.Close()
		_ = back.Close()
		r.wg.Wait()
	})
	return r
}

func (r *LossyRelay) pump(rng *rand.Rand, loss float64, read func([]byte) (int, error), write func([]byte)) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	run := 0
	first := true
	for {
		n, err := read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		drop := first || rng.Float64() < loss
		first = false
		if drop && run < MaxRun {
			run++
			r.Dropped.Add(1)
			continue
		}
		run = 0
		r.Passed.Add(1)
		write(buf[:n])
	}
}
