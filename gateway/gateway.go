// Package gateway is the MQTT-SN session engine: it reads datagrams from
// its transports, keeps one session per node (ClientId), and bridges each
// node to an upstream MQTT session.
//
// Concurrency model: one reader goroutine per transport decodes datagrams
// and routes them to a fixed set of shard workers (sessions hashed by
// ClientId). Each shard is an event loop that alone owns its sessions, with
// one timer for all their deadlines. An idle or sleeping node therefore
// costs memory, not a goroutine. Upstream operations run in short-lived
// goroutines, one at a time per node, and report back to the shard.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/store"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// ErrGatewayClosed is returned by Serve after Shutdown.
var ErrGatewayClosed = errors.New("gateway: closed")

// Transport is a datagram socket. *net.UDPConn satisfies it; a DTLS
// listener or an in-memory pipe can be adapted to it.
type Transport interface {
	ReadFrom(p []byte) (n int, addr net.Addr, err error)
	WriteTo(p []byte, addr net.Addr) (n int, err error)
	Close() error
	LocalAddr() net.Addr
	SetReadDeadline(t time.Time) error
}

// PeerAddr is implemented by the addresses of transports that keep a
// connection per peer (DTLS): PeerID stays the same while the peer's UDP
// address changes (DTLS Connection IDs), so its session follows it.
type PeerAddr interface {
	net.Addr
	PeerID() uint64
}

// Authenticator is implemented by transports that authenticate their peers
// (DTLS with PSK or certificates). PeerIdentities returns the names a peer
// proved (PSK identity, certificate CN and SANs); unless
// Config.DisableIdentityBinding is set, a node's ClientId must be one of
// them or its CONNECT is refused.
type Authenticator interface {
	PeerIdentities(addr net.Addr) []string
}

// Gateway is an MQTT-SN gateway. Create it with New, run it with Serve.
type Gateway struct {
	cfg   Config
	log   *zap.Logger
	up    Upstream
	extra []Transport

	predef predefSet     // swapped whole by SetPredefined
	allow  allowSet      // forwarders allowed (nil list: any); swapped by SetForwarderAllow
	dests  []destination // ADVERTISE destinations
	budget *sleepmgr.Budget
	stats  Stats
	lim    limiter     // gateway-wide counts of the bounds (limits.go)
	warns  warnLimiter // per-node warnings, rate-limited (logs.go)
	gone   goneRing    // recently lost or forgotten nodes

	store   store.Store // durable sessions (persist.go); store.Nop: none
	durable bool        // store is not store.Nop
	drain   drainState  // graceful shutdown (shutdown.go)

	transports []Transport
	shards     []*shard

	// index routes a peer (address, forwarder node) to its shard.
	indexMu sync.RWMutex
	index   map[peerKey]int
	// connects routes an AUTH to the shard of its CONNECT (auth.go).
	connects connectRoutes

	qm1 chan Message // QoS -1 publishes for the gateway's own connection

	// evictLog rate-limits the warnings for messages dropped for the
	// sleep-buffer budget (budget.go).
	evictLog evictLog

	mu       sync.Mutex
	serving  bool
	closed   bool
	ready    chan struct{}
	stopping chan struct{} // closed when shutdown begins
	done     chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutOnce sync.Once
}

// New validates cfg, fills its defaults and binds the UDP listeners.
func New(cfg Config, opts ...Option) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:      cfg,
		log:      zap.NewNop(),
		index:    make(map[peerKey]int),
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
		qm1:      make(chan Message, qosMinusOneQueue),
		store:    store.Nop{},
	}
	for _, o := range opts {
		if err := o(g); err != nil {
			return nil, err
		}
	}
	if g.up == nil {
		return nil, errors.New("gateway: no upstream: pass WithUpstream")
	}
	if len(cfg.Listen) == 0 && len(g.extra) == 0 {
		return nil, errors.New("gateway: nothing to listen on: set listen.udp (e.g. 0.0.0.0:1884)")
	}
	predef, _ := topicreg.NewPredefined(cfg.Predefined) // validated above
	g.predef.p.Store(predef)
	allow, _ := parseAllow(cfg.ForwarderAllow)
	g.allow.a.Store(allow)
	g.budget = sleepmgr.NewBudget(cfg.MaxBufferedBytes)
	lc := net.ListenConfig{Control: setBroadcast}
	for _, a := range cfg.Listen {
		c, err := lc.ListenPacket(context.Background(), "udp", a)
		if err != nil {
			g.closeTransports()
			return nil, fmt.Errorf("gateway: listen.udp %q: %w", a, err)
		}
		uc := c.(*net.UDPConn)
		g.setReadBuffer(uc, a)
		g.transports = append(g.transports, uc)
	}
	g.transports = append(g.transports, g.extra...)
	dests, err := g.resolveDestinations()
	if err != nil {
		g.closeTransports()
		return nil, err
	}
	g.dests = dests
	for i := 0; i < cfg.Shards; i++ {
		g.shards = append(g.shards, newShard(g, i))
	}
	if err := g.restore(time.Now()); err != nil {
		g.closeTransports()
		return nil, err
	}
	return g, nil
}

// setReadBuffer asks for Config.UDPReadBuffer and says so when the kernel
// grants less (Linux caps it at net.core.rmem_max).
func (g *Gateway) setReadBuffer(c *net.UDPConn, addr string) {
	if err := c.SetReadBuffer(g.cfg.UDPReadBuffer); err != nil {
		g.log.Warn("UDP receive buffer not set", zap.String("listen", addr), zap.Error(err))
		return
	}
	if got := readBufferSize(c); got > 0 && got < g.cfg.UDPReadBuffer {
		g.log.Warn("UDP receive buffer smaller than asked: bursts may be dropped by the kernel; raise net.core.rmem_max",
			zap.String("listen", addr), zap.Int("asked", g.cfg.UDPReadBuffer), zap.Int("granted", got))
	}
}

func (g *Gateway) closeTransports() {
	for _, t := range g.transports {
		_ = t.Close()
	}
}

// Addrs returns the local addresses of every transport, in order: the
// Config.Listen addresses, then those added with WithTransport.
func (g *Gateway) Addrs() []net.Addr {
	out := make([]net.Addr, len(g.transports))
	for i, t := range g.transports {
		out[i] = t.LocalAddr()
	}
	return out
}

// Ready is closed once Serve is reading from every transport.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Stopping is closed when the gateway begins to shut down, so that
// readiness checks fail while it drains.
func (g *Gateway) Stopping() <-chan struct{} { return g.stopping }

// Stats returns the gateway's counters.
func (g *Gateway) Stats() *Stats { return &g.stats }

// Serve runs the gateway until Shutdown is called or ctx ends. It returns
// ErrGatewayClosed after Shutdown.
func (g *Gateway) Serve(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrGatewayClosed
	}
	if g.serving {
		g.mu.Unlock()
		return errors.New("gateway: Serve called twice")
	}
	g.serving = true
	ctx, g.cancel = context.WithCancel(ctx)
	g.mu.Unlock()

	for _, s := range g.shards {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); s.run(ctx) }()
	}
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.runQoSMinusOne(ctx) }()
	go func() { defer g.wg.Done(); g.runDiscovery(ctx) }()
	for i, t := range g.transports {
		g.wg.Add(1)
		g.drain.readers.Add(1)
		go func() { defer g.wg.Done(); defer g.drain.readers.Done(); g.readLoop(ctx, i, t) }()
	}
	close(g.ready)
	g.log.Info("gateway serving", zap.Stringers("addrs", addrStringers(g.Addrs())), zap.Int("shards", len(g.shards)))
	<-ctx.Done()
	g.markStopping()
	g.stop()
	close(g.done)
	return ErrGatewayClosed
}

// stop unblocks the readers and waits for every goroutine to finish.
func (g *Gateway) stop() {
	for _, t := range g.transports {
		_ = t.SetReadDeadline(time.Unix(1, 0))
	}
	g.drain.stopReading.Store(true)
	g.wg.Wait()
	// Close upstream sessions cleanly (no wills: the nodes are not lost),
	// within the context Shutdown was given.
	ctx, cancel := g.stopContext()
	defer cancel()
	g.closeShards(ctx)
	g.closeTransports()
}

// Shutdown stops the gateway gracefully and waits until it stopped or ctx
// ends (shutdown.go): it stops reading datagrams, lets the broker
// operations in flight finish and answers their nodes, closes the upstream
// sessions and flushes the store, all within ctx. It is safe to call more
// than once and before Serve.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	serving := g.serving
	cancel := g.cancel
	g.mu.Unlock()
	if !serving {
		g.shutOnce.Do(g.closeTransports)
		return nil
	}
	g.shutOnce.Do(func() { go g.drainAndStop(ctx, cancel) })
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// peerKey identifies where a node talks from: a transport, a source
// address and, behind a forwarder, the node's Wireless Node Id.
type peerKey struct {
	tr   int
	ap   netip.AddrPort
	id   uint64 // PeerAddr transports: the peer's connection
	node string
}

// peer is a peerKey plus what is needed to answer it.
type peer struct {
	key  peerKey
	addr net.Addr
}

func keyOf(tr int, a net.Addr) (peerKey, bool) {
	if pa, ok := a.(PeerAddr); ok {
		return peerKey{tr: tr, id: pa.PeerID()}, true
	}
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return peerKey{tr: tr, ap: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, true
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return peerKey{}, false
	}
	return peerKey{tr: tr, ap: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, true
}

func (g *Gateway) lookup(k peerKey) (int, bool) {
	g.indexMu.RLock()
	i, ok := g.index[k]
	g.indexMu.RUnlock()
	return i, ok
}

func (g *Gateway) bind(k peerKey, shard int) {
	g.indexMu.Lock()
	g.index[k] = shard
	g.indexMu.Unlock()
}

func (g *Gateway) unbind(k peerKey, shard int) {
	g.indexMu.Lock()
	if g.index[k] == shard {
		delete(g.index, k)
	}
	g.indexMu.Unlock()
}

func (g *Gateway) shardFor(clientID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(clientID))
	return int(h.Sum32() % uint32(len(g.shards)))
}

// send encodes p and writes it to the peer, encapsulated when the peer is
// behind a forwarder.
func (g *Gateway) send(to peer, p snpacket.Packet) int {
	return g.sendRadius(to, p, 0)
}

// sendRadius is send with a broadcast radius for a forwarder (spec §5.5).
// It returns the bytes written, 0 on failure.
func (g *Gateway) sendRadius(to peer, p snpacket.Packet, radius uint8) int {
	out := p
	if to.key.node != "" {
		out = &snpacket.Encapsulated{Radius: radius & 0x03, NodeID: []byte(to.key.node), Message: p}
	}
	b, err := out.AppendTo(make([]byte, 0, out.Len()))
	if err != nil {
		g.log.Warn("encode failed", zap.Stringer("type", p.Type()), zap.Error(err))
		return 0
	}
	if _, err := g.transports[to.key.tr].WriteTo(b, to.addr); err != nil {
		g.stats.WriteErrors.Add(1)
		g.log.Debug("write failed", zap.Stringer("to", to.addr), zap.Error(err))
		return 0
	}
	g.stats.countOut(p.Type(), len(b))
	if rc, ok := returnCodeOf(p); ok && rc <= snpacket.RejectedNotSupported {
		g.stats.ReturnCodes[rc].Add(1)
	}
	return len(b)
}

func addrStringers(as []net.Addr) []fmt.Stringer {
	out := make([]fmt.Stringer, len(as))
	for i, a := range as {
		out[i] = a
	}
	return out
}
