package dtlstransport_test

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// The transport is what the gateway expects of a DTLS listener.
var (
	_ gateway.Transport     = (*dtlstransport.Transport)(nil)
	_ gateway.Authenticator = (*dtlstransport.Transport)(nil)
	_ gateway.PeerAddr      = (*dtlstransport.Addr)(nil)
)

// wait bounds every wait for an event; generous for a loaded machine.
const wait = 20 * time.Second

// noLeaks fails the test if goroutines started during it outlive it. Call
// it first: cleanups run last in, first out.
func noLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// echo is a listener whose datagrams are echoed back, prefixed with "echo:".
type echo struct {
	tr   *dtlstransport.Transport
	wg   sync.WaitGroup
	seen chan seen // what the listener saw of each datagram
}

type seen struct {
	data   string
	peer   uint64
	addr   string
	idents []string
}

func startEcho(t *testing.T, cfg dtlstransport.Config) *echo {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	tr, err := dtlstransport.Listen(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	e := &echo{tr: tr, seen: make(chan seen, 1000)}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, a, err := tr.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			pa := a.(gateway.PeerAddr)
			select {
			case e.seen <- seen{data: string(buf[:n]), peer: pa.PeerID(), addr: a.String(), idents: tr.PeerIdentities(a)}:
			default:
			}
			_, _ = tr.WriteTo(append([]byte("echo:"), buf[:n]...), a)
		}
	}()
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		e.wg.Wait()
	})
	return e
}

func (e *echo) addr() string { return e.tr.LocalAddr().String() }

// next returns what the listener saw of the next datagram.
func (e *echo) next(t *testing.T) seen {
	t.Helper()
	select {
	case s := <-e.seen:
		return s
	case <-time.After(wait):
		t.Fatal("the listener saw no datagram")
		return seen{}
	}
}

// pskClient returns client options for a PSK identity.
func pskClient(id string, key []byte, extra ...dtls.ClientOption) []dtls.ClientOption {
	return append([]dtls.ClientOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		dtls.WithPSKIdentityHint([]byte(id)),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8),
		dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()),
		dtls.WithLoggerFactory(dtlstest.QuietLogger()),
	}, extra...)
}

// dial handshakes over pc (a fresh socket when nil) within timeout.
func dial(t *testing.T, addr string, pc net.PacketConn, timeout time.Duration, opts ...dtls.ClientOption) (*dtls.Conn, error) {
	t.Helper()
	if pc == nil {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		pc = c
	}
	c, err := dtlstest.Handshake(t, pc, addr, timeout, opts...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// mustDial is dial that fails the test on error.
func mustDial(t *testing.T, addr string, pc net.PacketConn, opts ...dtls.ClientOption) *dtls.Conn {
	t.Helper()
	c, err := dial(t, addr, pc, wait, opts...)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c
}

// roundTrip sends msg and expects its echo.
func roundTrip(t *testing.T, c *dtls.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got := string(buf[:n]); got != "echo:"+msg {
		t.Fatalf("got %q, want %q", got, "echo:"+msg)
	}
}

// eventually polls cond until it holds, failing after wait. For counters
// only, where there is no event to wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		<-tick.C
	}
}
