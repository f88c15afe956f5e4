package dtlstransport_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
)

func pskConfig(t *testing.T, keys map[string][]byte) dtlstransport.Config {
	t.Helper()
	return dtlstransport.Config{PSKFile: dtlstest.PSKFile(t, t.TempDir(), keys)}
}

func TestPSKRoundTrip(t *testing.T) {
	noLeaks(t)
	e := startEcho(t, pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1"), "node-2": dtlstest.Key("k2")}))
	for _, suite := range []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_128_GCM_SHA256} {
		t.Run(suite.String(), func(t *testing.T) {
			c := mustDial(t, e.addr(), nil, pskClient("node-1", dtlstest.Key("k1"), dtls.WithCipherSuites(suite))...)
			if st, _ := c.ConnectionState(); st.CipherSuiteID != suite {
				t.Fatalf("negotiated %v, want %v", st.CipherSuiteID, suite)
			}
			roundTrip(t, c, "hello")
			s := e.next(t)
			if s.data != "hello" || !slices.Equal(s.idents, []string{"node-1"}) || s.addr != c.LocalAddr().String() || s.peer == 0 {
				t.Fatalf("listener saw %+v (client at %v)", s, c.LocalAddr())
			}
			roundTrip(t, c, "again")
			if s2 := e.next(t); s2.peer != s.peer {
				t.Fatalf("peer id changed on the same connection: %d then %d", s.peer, s2.peer)
			}
		})
	}
	if got := e.tr.Stats().HandshakesOK.Load(); got != 2 {
		t.Fatalf("HandshakesOK = %d, want 2", got)
	}
}

func TestPSKWrongKeyOrIdentityRejected(t *testing.T) {
	noLeaks(t)
	cfg := pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")})
	// A wrong key shows as a Finished that does not decrypt, which DTLS
	// drops silently (RFC 6347 §4.1.2.7): the handshake ends by timeout.
	cfg.HandshakeTimeout = time.Second
	e := startEcho(t, cfg)
	if _, err := dial(t, e.addr(), nil, 3*time.Second, pskClient("node-1", dtlstest.Key("wrong"))...); err == nil {
		t.Fatal("handshake with a wrong key succeeded")
	}
	if _, err := dial(t, e.addr(), nil, wait, pskClient("stranger", dtlstest.Key("k1"))...); err == nil {
		t.Fatal("handshake with an unknown identity succeeded")
	}
	eventually(t, "two failed handshakes", func() bool { return e.tr.Stats().HandshakesFailed.Load() == 2 })
	if n := e.tr.Stats().HandshakesOK.Load() + uint64(len(e.seen)); n != 0 {
		t.Fatalf("%d handshakes or datagrams got through", n)
	}
}

func TestCertificates(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	ca := dtlstest.NewCA(t, "test CA")
	srv := ca.Issue(t, "gateway", "localhost")
	cfg := dtlstransport.Config{
		CertFile: dtlstest.WriteFile(t, dir, "cert.pem", srv.CertPEM),
		KeyFile:  dtlstest.WriteFile(t, dir, "key.pem", srv.KeyPEM),
	}
	certClient := func(extra ...dtls.ClientOption) []dtls.ClientOption {
		return append([]dtls.ClientOption{
			dtls.WithRootCAs(ca.Pool()), dtls.WithServerName("localhost"),
			dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
			dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()),
			dtls.WithLoggerFactory(dtlstest.QuietLogger()),
		}, extra...)
	}

	t.Run("server only", func(t *testing.T) {
		e := startEcho(t, cfg)
		c := mustDial(t, e.addr(), nil, certClient()...)
		roundTrip(t, c, "anonymous")
		if s := e.next(t); len(s.idents) != 0 {
			t.Fatalf("identities %q without client certificates", s.idents)
		}
	})

	t.Run("client certificates", func(t *testing.T) {
		cfg := cfg
		cfg.ClientCAFile = dtlstest.WriteFile(t, dir, "ca.pem", ca.PEM)
		e := startEcho(t, cfg)
		node := ca.Issue(t, "node-7", "dns:node-7.example", "uri:urn:dev:node-7")
		for _, suite := range []dtls.CipherSuiteID{dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256} {
			c := mustDial(t, e.addr(), nil, certClient(dtls.WithCertificates(node.TLS), dtls.WithCipherSuites(suite))...)
			roundTrip(t, c, "signed")
			if s := e.next(t); !slices.Equal(s.idents, []string{"node-7", "node-7.example", "urn:dev:node-7"}) {
				t.Fatalf("identities %q", s.idents)
			}
		}
		if _, err := dial(t, e.addr(), nil, wait, certClient()...); err == nil {
			t.Fatal("handshake without a client certificate succeeded")
		}
		other := dtlstest.NewCA(t, "other CA").Issue(t, "node-7")
		if _, err := dial(t, e.addr(), nil, wait, certClient(dtls.WithCertificates(other.TLS))...); err == nil {
			t.Fatal("handshake with a certificate from another CA succeeded")
		}
		eventually(t, "two failed handshakes", func() bool { return e.tr.Stats().HandshakesFailed.Load() == 2 })
	})
}

// With Connection IDs a client keeps its session when its port changes;
// the listener's Addr keeps its PeerID and reports the new address.
func TestConnectionIDFollowsNewPort(t *testing.T) {
	noLeaks(t)
	e := startEcho(t, pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")}))
	sc, err := dtlstest.NewSwapConn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, e.addr(), sc, pskClient("node-1", dtlstest.Key("k1"))...)
	roundTrip(t, c, "before")
	before := e.next(t)
	if err := sc.Swap(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "after")
	after := e.next(t)
	if after.peer != before.peer || after.addr == before.addr || after.addr != sc.LocalAddr().String() {
		t.Fatalf("before %+v, after %+v (client now at %v)", before, after, sc.LocalAddr())
	}
	roundTrip(t, c, "still")
}

// Without Connection IDs the records from the new port go nowhere.
func TestWithoutConnectionIDsNewPortIsUnknown(t *testing.T) {
	noLeaks(t)
	cfg := pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")})
	cfg.DisableConnectionIDs = true
	e := startEcho(t, cfg)
	sc, err := dtlstest.NewSwapConn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, e.addr(), sc, pskClient("node-1", dtlstest.Key("k1"))...)
	roundTrip(t, c, "before")
	if err := sc.Swap(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the record from the new port is unrouted", func() bool { return e.tr.Stats().Unrouted.Load() == 1 })
}

// A node that reboots and handshakes again from the same address and port
// replaces its stale connection (pion/dtls#253).
func TestRebootFromSameAddressEvictsStaleConnection(t *testing.T) {
	noLeaks(t)
	e := startEcho(t, pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")}))
	sc, err := dtlstest.NewSwapConn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := sc.LocalAddr().String()
	c := mustDial(t, e.addr(), sc, pskClient("node-1", dtlstest.Key("k1"))...)
	roundTrip(t, c, "first life")
	first := e.next(t)
	sc.Mute() // power loss: no close_notify
	_ = c.Close()
	sc2, err := dtlstest.NewSwapConn(local)
	if err != nil {
		t.Fatalf("rebind %s: %v", local, err)
	}
	c2 := mustDial(t, e.addr(), sc2, pskClient("node-1", dtlstest.Key("k1"))...)
	roundTrip(t, c2, "second life")
	second := e.next(t)
	if second.peer == first.peer || second.addr != local {
		t.Fatalf("first %+v, second %+v", first, second)
	}
	st := e.tr.Stats()
	if st.Evicted.Load() != 1 {
		t.Fatalf("Evicted = %d, want 1", st.Evicted.Load())
	}
	eventually(t, "one established connection", func() bool { return st.Established.Load() == 1 })
}

// Spoofed ClientHellos fill the handshake slots, but a node that proves
// its address displaces the oldest of them and connects.
func TestHandshakeFloodDoesNotLockOut(t *testing.T) {
	noLeaks(t)
	cfg := pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")})
	cfg.MaxHandshakes = 8
	e := startEcho(t, cfg)
	st := e.tr.Stats()
	flood(t, e.addr(), 50, 50)
	eventually(t, "flood processed", func() bool {
		return st.Unrouted.Load() == 50 && st.HandshakesDisplaced.Load() == 42 && st.Handshaking.Load() == 8
	})
	c := mustDial(t, e.addr(), nil, pskClient("node-1", dtlstest.Key("k1"))...)
	roundTrip(t, c, "through")
}

// flood sends hellos cookieless ClientHellos, each from its own socket,
// and garbage datagrams starting like a handshake record.
func flood(t *testing.T, addr string, hellos, garbage int) {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	dtlstest.SendHellos(t, ra, hellos)
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range garbage {
		b := make([]byte, 20+i)
		_, _ = rand.Read(b)
		b[0], b[1], b[2] = 22, 0xfe, 0xfd // handshake record, epoch and type random
		b[3], b[4], b[13] = 0, 0, 99
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

// stallConn lets the first datagram from the server through (the
// HelloVerifyRequest) and swallows the rest, so its handshake stalls after
// the client proved its address.
type stallConn struct {
	net.PacketConn
	reads atomic.Int32
}

func (s *stallConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := s.PacketConn.ReadFrom(b)
		if err != nil || s.reads.Add(1) == 1 {
			return n, a, err
		}
	}
}

// At the handshake bound, with no unproven handshake to displace, a new
// ClientHello is refused; once the stalled handshake times out, the
// node's retransmission gets in.
func TestHandshakeBoundAndTimeout(t *testing.T) {
	noLeaks(t)
	cfg := pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")})
	cfg.MaxHandshakes = 1
	cfg.HandshakeTimeout = 2 * time.Second
	e := startEcho(t, cfg)
	st := e.tr.Stats()

	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	stall := &stallConn{PacketConn: udp}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ra, _ := net.ResolveUDPAddr("udp", e.addr())
		c, err := dtls.ClientWithOptions(stall, ra, pskClient("node-1", dtlstest.Key("k1"))...)
		if err != nil {
			_ = udp.Close()
			return
		}
		_ = c.HandshakeContext(ctx)
		_ = c.Close()
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	eventually(t, "the stalled client got the ServerHello flight", func() bool { return stall.reads.Load() >= 2 })

	start := time.Now()
	c := mustDial(t, e.addr(), nil, pskClient("node-1", dtlstest.Key("k1"))...)
	roundTrip(t, c, "after the stall")
	// The stalled client's retransmitted ClientHello may start a new
	// (unproven) handshake after the timeout, which the node displaces or
	// which times out too on a slow run: at least the first one failed.
	if st.HandshakesRefused.Load() == 0 || st.HandshakesFailed.Load() < 1 {
		t.Fatalf("refused %d, failed %d after %v", st.HandshakesRefused.Load(), st.HandshakesFailed.Load(), time.Since(start))
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	noLeaks(t)
	cfg := pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")})
	cfg.IdleTimeout = 300 * time.Millisecond
	e := startEcho(t, cfg)
	c := mustDial(t, e.addr(), nil, pskClient("node-1", dtlstest.Key("k1"))...)
	roundTrip(t, c, "then silence")
	// The listener closes the connection with close_notify: the client's
	// read ends.
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := c.Read(make([]byte, 100)); err == nil {
		t.Fatal("read succeeded on an idle connection")
	}
	st := e.tr.Stats()
	eventually(t, "idle close counted", func() bool { return st.IdleClosed.Load() == 1 && st.Established.Load() == 0 })
}

func TestReloadRevokesChangedKeys(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	file := dtlstest.PSKFile(t, dir, map[string][]byte{"a": dtlstest.Key("a1"), "b": dtlstest.Key("b1")})
	e := startEcho(t, dtlstransport.Config{PSKFile: file})
	ca := mustDial(t, e.addr(), nil, pskClient("a", dtlstest.Key("a1"))...)
	cb := mustDial(t, e.addr(), nil, pskClient("b", dtlstest.Key("b1"))...)
	roundTrip(t, ca, "a")
	roundTrip(t, cb, "b")

	dtlstest.PSKFile(t, dir, map[string][]byte{"a": dtlstest.Key("a1"), "b": dtlstest.Key("b2")})
	if err := e.tr.Reload(); err != nil {
		t.Fatal(err)
	}
	_ = cb.SetReadDeadline(time.Now().Add(wait))
	if _, err := cb.Read(make([]byte, 100)); err == nil {
		t.Fatal("revoked connection still reads")
	}
	if got := e.tr.Stats().Revoked.Load(); got != 1 {
		t.Fatalf("Revoked = %d, want 1", got)
	}
	roundTrip(t, ca, "a kept")
	if _, err := dial(t, e.addr(), nil, 2*time.Second, pskClient("b", dtlstest.Key("b1"))...); err == nil {
		t.Fatal("old key still accepted")
	}
	roundTrip(t, mustDial(t, e.addr(), nil, pskClient("b", dtlstest.Key("b2"))...), "b new")

	// A broken file is refused and the keys in use stay.
	if err := os.WriteFile(file, []byte("a:00\nb:zz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.tr.Reload(); err == nil || !strings.Contains(err.Error(), file+":2") {
		t.Fatalf("Reload of a bad file: %v", err)
	}
	roundTrip(t, mustDial(t, e.addr(), nil, pskClient("a", dtlstest.Key("a1"))...), "a still")
}

func TestPlainDatagramsGetNoAnswer(t *testing.T) {
	noLeaks(t)
	e := startEcho(t, pskConfig(t, map[string][]byte{"node-1": dtlstest.Key("k1")}))
	ra, _ := net.ResolveUDPAddr("udp", e.addr())
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// MQTT-SN CONNECT "c1" and SEARCHGW.
	for _, b := range [][]byte{{0x08, 0x04, 0x04, 0x01, 0x00, 0x0a, 0x63, 0x31}, {0x03, 0x01, 0x00}} {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both dropped", func() bool { return e.tr.Stats().Unrouted.Load() == 2 })
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 100)); err == nil {
		t.Fatalf("got a %d-byte answer", n)
	}
}

func TestReadDeadlineAndClose(t *testing.T) {
	noLeaks(t)
	cfg := pskConfig(t, map[string][]byte{"x": dtlstest.Key("x")})
	cfg.Listen = "127.0.0.1:0"
	tr, err := dtlstransport.Listen(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = tr.SetReadDeadline(time.Unix(1, 0))
	var ne net.Error
	if _, _, err := tr.ReadFrom(make([]byte, 10)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadFrom after a past deadline: %v", err)
	}
	_ = tr.SetReadDeadline(time.Time{})
	if _, err := tr.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Fatal("WriteTo a plain UDP address succeeded")
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := tr.ReadFrom(make([]byte, 10))
		done <- err
	}()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom after Close: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
