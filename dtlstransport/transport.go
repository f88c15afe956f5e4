package dtlstransport

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/transport/v5/deadline"
	"go.uber.org/zap"
)

// Transport is a DTLS listener used as a datagram socket: ReadFrom returns
// the decrypted datagrams of every peer, WriteTo encrypts to one peer. Its
// addresses are *Addr values (one per DTLS connection). It also reports
// each peer's authenticated identities (PeerIdentities).
type Transport struct {
	cfg       Config
	log       *zap.Logger
	udp       *net.UDPConn
	opts      []dtls.ServerOption // shared by every peer's server conn
	clientCAs *x509.CertPool
	psk       atomic.Pointer[pskKeys]
	stats     Stats
	failLog   failLog

	ctx    context.Context //nolint:containedctx // lifetime of the listener, parent of every peer's
	cancel context.CancelFunc

	queue chan datagram      // decrypted datagrams for ReadFrom
	rdl   *deadline.Deadline // ReadFrom's deadline

	mu      sync.Mutex
	closed  bool
	byAddr  map[netip.AddrPort]*peer // where a peer's datagrams come from
	byCID   map[string]*peer         // Connection IDs issued by us
	peers   map[uint64]*peer         // established connections
	pending map[*peer]struct{}       // handshakes in progress
	nextID  uint64
	nextSeq uint64

	peerWG  sync.WaitGroup
	demuxWG sync.WaitGroup
	done    chan struct{}
	err     error
}

// datagram is one decrypted datagram from a peer.
type datagram struct {
	b    []byte
	from *Addr
}

// Stats are the listener's counters. Fields are safe to read at any time.
type Stats struct {
	HandshakesOK     atomic.Uint64
	HandshakesFailed atomic.Uint64 // timeout, bad key, bad certificate, ...
	// HandshakesRefused counts ClientHellos dropped because MaxHandshakes
	// handshakes were in progress and none could make room.
	HandshakesRefused atomic.Uint64
	// HandshakesDisplaced counts handshakes whose peer had not proven its
	// address yet, closed to make room for a new one (a flood).
	HandshakesDisplaced atomic.Uint64
	// Evicted counts established connections replaced by a new handshake
	// from their address (a node that rebooted).
	Evicted     atomic.Uint64
	IdleClosed  atomic.Uint64 // connections closed after IdleTimeout
	Revoked     atomic.Uint64 // connections closed by Reload
	Dropped     atomic.Uint64 // decrypted datagrams dropped: ReadFrom's queue full
	PeerDropped atomic.Uint64 // raw datagrams dropped: a peer's inbox full
	// Unrouted counts datagrams for no connection that are no ClientHello
	// either (plain MQTT-SN, garbage, records of forgotten connections).
	Unrouted    atomic.Uint64
	Handshaking atomic.Int64 // gauge: handshakes in progress
	Established atomic.Int64 // gauge: established connections
}

// Listen validates cfg, loads the PSK file and certificates and starts
// serving DTLS on cfg.Listen. log may be nil.
func Listen(cfg Config, log *zap.Logger) (*Transport, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	t := &Transport{
		cfg:     cfg,
		log:     log,
		queue:   make(chan datagram, queueSize),
		rdl:     deadline.New(),
		byAddr:  make(map[netip.AddrPort]*peer),
		byCID:   make(map[string]*peer),
		peers:   make(map[uint64]*peer),
		pending: make(map[*peer]struct{}),
		done:    make(chan struct{}),
	}
	opts := []dtls.ServerOption{
		dtls.WithLoggerFactory(pionLoggerFactory{log: log.Named("pion")}),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
	}
	var suites []dtls.CipherSuiteID
	if cfg.PSKFile != "" {
		keys, err := readPSKFile(cfg.PSKFile)
		if err != nil {
			return nil, err
		}
		t.psk.Store(&keys)
		// WithPSK is added per peer (serverOptions), to record the key used.
		suites = append(suites, dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_128_GCM_SHA256)
		if cfg.PSKIdentityHint != "" {
			opts = append(opts, dtls.WithPSKIdentityHint([]byte(cfg.PSKIdentityHint)))
		}
	}
	if cfg.CertFile != "" {
		cert, err := loadCertificate(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, dtls.WithCertificates(cert))
		suites = append(suites, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
		if cfg.ClientCAFile != "" {
			pool, err := loadCAs(cfg.ClientCAFile)
			if err != nil {
				return nil, err
			}
			t.clientCAs = pool
			opts = append(opts, dtls.WithClientAuth(dtls.RequireAndVerifyClientCert), dtls.WithClientCAs(pool))
		}
	}
	opts = append(opts, dtls.WithCipherSuites(suites...))
	t.opts = opts
	// Let pion check the options once, without a socket, so that a bad
	// combination fails here rather than in every handshake.
	if _, err := dtls.NewListenerWithOptions(nil, t.serverOptions(nil)...); err != nil {
		return nil, fmt.Errorf("dtls: %w", err)
	}
	ua, _ := net.ResolveUDPAddr("udp", cfg.Listen) // validated
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("dtls: listen.dtls %q: %w", cfg.Listen, err)
	}
	t.udp = c
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.demuxWG.Add(1)
	go t.demux()
	log.Info("DTLS listener started", zap.Stringer("addr", c.LocalAddr()),
		zap.Bool("psk", cfg.PSKFile != ""), zap.Bool("certificate", cfg.CertFile != ""),
		zap.Bool("client_certificates", t.clientCAs != nil), zap.Bool("connection_ids", !cfg.DisableConnectionIDs))
	return t, nil
}

// serverOptions returns the shared options plus p's PSK callback and
// Connection ID generator (p nil: stand-ins, for validation).
func (t *Transport) serverOptions(p *peer) []dtls.ServerOption {
	opts := append([]dtls.ServerOption(nil), t.opts...)
	if t.cfg.PSKFile != "" {
		psk := t.pskCallback
		if p != nil {
			psk = p.pskCallback
		}
		opts = append(opts, dtls.WithPSK(psk))
	}
	if !t.cfg.DisableConnectionIDs {
		gen := dtls.RandomCIDGenerator(cidLength)
		if p != nil {
			gen = p.newCID
		}
		opts = append(opts, dtls.WithConnectionIDGenerator(gen))
	}
	return opts
}

// ReadFrom returns the next decrypted datagram of any peer and the peer's
// *Addr. A datagram longer than p is truncated, as on a UDP socket.
func (t *Transport) ReadFrom(p []byte) (int, net.Addr, error) {
	if t.rdl.Err() != nil {
		return 0, nil, os.ErrDeadlineExceeded
	}
	select {
	case d := <-t.queue:
		return copy(p, d.b), d.from, nil
	case <-t.rdl.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case <-t.ctx.Done():
		return 0, nil, net.ErrClosed
	}
}

// WriteTo encrypts p to the peer at addr, an *Addr returned by ReadFrom.
func (t *Transport) WriteTo(p []byte, addr net.Addr) (int, error) {
	a, ok := addr.(*Addr)
	if !ok || a.p.t != t {
		return 0, fmt.Errorf("dtls: write to %v: not a peer of this listener", addr)
	}
	if a.p.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	return a.p.conn.Write(p)
}

// SetReadDeadline sets the deadline of ReadFrom; a time in the past
// unblocks it at once.
func (t *Transport) SetReadDeadline(d time.Time) error {
	t.rdl.Set(d)
	return nil
}

// LocalAddr returns the UDP address the listener is bound to.
func (t *Transport) LocalAddr() net.Addr { return t.udp.LocalAddr() }

// Stats returns the listener's counters.
func (t *Transport) Stats() *Stats { return &t.stats }

// PeerIdentities returns what the peer at addr proved in its handshake:
// its PSK identity, or its client certificate's subject CN, DNS and URI
// SANs (client certificates are verified only when ClientCAFile is set;
// otherwise none is asked for). It implements gateway.Authenticator.
func (t *Transport) PeerIdentities(addr net.Addr) []string {
	a, ok := addr.(*Addr)
	if !ok || a.p.t != t {
		return nil
	}
	return a.p.identities
}

// Close closes every connection (sending close_notify), stops the
// listener and waits for all its goroutines. It is safe to call twice.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.done
		return t.err
	}
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.peerWG.Wait() // no peer starts once closed is set
	t.err = t.udp.Close()
	t.demuxWG.Wait()
	close(t.done)
	t.log.Info("DTLS listener closed", zap.Stringer("addr", t.udp.LocalAddr()))
	return t.err
}

// Addr is the address of a DTLS peer: one per connection. PeerID stays the
// same while the peer's UDP address changes (Connection IDs); String
// returns its current UDP address. It implements gateway.PeerAddr.
type Addr struct {
	p *peer
}

// Network returns "dtls".
func (a *Addr) Network() string { return "dtls" }

// String returns the peer's current UDP address.
func (a *Addr) String() string {
	if c := a.p.conn; c != nil {
		return c.RemoteAddr().String()
	}
	return "dtls-peer"
}

// PeerID identifies the DTLS connection.
func (a *Addr) PeerID() uint64 { return a.p.id }

// identitiesOf extracts the identities a handshake proved.
func (t *Transport) identitiesOf(st *dtls.State) (ids []string, pskIdentity string) {
	if len(st.IdentityHint) > 0 {
		id := string(st.IdentityHint)
		return []string{id}, id
	}
	if t.clientCAs == nil || len(st.PeerCertificates) == 0 {
		return nil, ""
	}
	leaf, err := x509.ParseCertificate(st.PeerCertificates[0])
	if err != nil {
		return nil, ""
	}
	return certIdentities(leaf), ""
}

// certIdentities returns a certificate's subject CN, DNS names and URIs.
func certIdentities(c *x509.Certificate) []string {
	var ids []string
	if c.Subject.CommonName != "" {
		ids = append(ids, c.Subject.CommonName)
	}
	ids = append(ids, c.DNSNames...)
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	return ids
}
