package dtlstransport

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
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

// peer is one DTLS connection: a pion server conn over a virtual packet
// conn (peer implements net.PacketConn for pion) fed by the demultiplexer.
// One goroutine (run) owns the pion conn: it handshakes, then reads.
type peer struct {
	t      *Transport
	id     uint64
	seq    uint64 // creation order
	addr   *Addr
	ctx    context.Context //nolint:containedctx // the connection's lifetime
	cancel context.CancelFunc

	in       chan rawDatagram // raw datagrams for pion
	rdl      *deadline.Deadline
	closed   chan struct{} // closed when pion closes its conn
	close1   sync.Once
	evicted  atomic.Bool // writes are dropped: the address belongs to someone else now
	verified atomic.Bool // we sent a ServerHello: the client echoed our cookie
	curUA    atomic.Pointer[net.UDPAddr]

	// Guarded by t.mu.
	ap          netip.AddrPort       // key in t.byAddr, if any
	cid         string               // key in t.byCID, if any
	pending     bool                 // in t.pending
	established bool                 // in t.peers
	gone        bool                 // forgotten: never index again
	random      [randomBytesLen]byte // the established handshake's ClientHello random (after gmt_unix_time)
	pskIdentity string
	pskKey      []byte

	// Set before the first datagram with addr is queued; read-only after.
	conn       *dtls.Conn
	identities []string

	// Used by the demultiplexer goroutine only.
	lastAP netip.AddrPort
	lastUA *net.UDPAddr
}

// rawDatagram is a datagram on its way to pion.
type rawDatagram struct {
	b    []byte
	from *net.UDPAddr
}

func newPeer(t *Transport, id, seq uint64, ap netip.AddrPort) *peer {
	p := &peer{
		t:      t,
		id:     id,
		seq:    seq,
		in:     make(chan rawDatagram, peerInboxSize),
		rdl:    deadline.New(),
		closed: make(chan struct{}),
		ap:     ap,
		lastAP: ap,
		lastUA: net.UDPAddrFromAddrPort(ap),
	}
	p.addr = &Addr{p: p}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	p.curUA.Store(p.lastUA)
	return p
}

// deliver queues a copy of b for pion; a full inbox drops it.
func (p *peer) deliver(ap netip.AddrPort, b []byte) {
	if ap != p.lastAP {
		p.lastAP, p.lastUA = ap, net.UDPAddrFromAddrPort(ap)
	}
	d := rawDatagram{b: append([]byte(nil), b...), from: p.lastUA}
	select {
	case p.in <- d:
	default:
		p.t.stats.PeerDropped.Add(1)
	}
}

// newCID issues a Connection ID for p and routes it to p. pion calls it
// while it builds the ServerHello.
func (p *peer) newCID() []byte {
	t := p.t
	cid := make([]byte, cidLength)
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		_, _ = rand.Read(cid)
		if _, taken := t.byCID[string(cid)]; !taken {
			break
		}
	}
	if p.gone {
		return cid
	}
	if p.cid != "" && t.byCID[p.cid] == p {
		delete(t.byCID, p.cid)
	}
	p.cid = string(cid)
	t.byCID[p.cid] = p
	return cid
}

// run owns p's pion conn from handshake to close.
func (p *peer) run() {
	t := p.t
	defer t.peerWG.Done()
	defer func() {
		p.cancel()
		t.mu.Lock()
		t.forgetLocked(p)
		t.mu.Unlock()
	}()
	conn, err := dtls.ServerWithOptions(p, p.curUA.Load(), t.serverOptions(p)...)
	if err != nil {
		t.stats.HandshakesFailed.Add(1)
		t.log.Warn("DTLS server connection not created", zap.Error(err))
		return
	}
	// Eviction, revocation and Close cancel p.ctx: close the conn then.
	closed := make(chan struct{})
	stop := context.AfterFunc(p.ctx, func() {
		_ = conn.Close()
		close(closed)
	})
	defer func() {
		if stop() {
			_ = conn.Close()
		} else {
			<-closed
		}
	}()

	start := time.Now()
	hctx, cancel := context.WithTimeout(p.ctx, t.cfg.HandshakeTimeout)
	err = conn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		if p.ctx.Err() == nil {
			t.stats.HandshakesFailed.Add(1)
			t.logHandshakeFailure(p, time.Since(start), err)
			return
		}
		// Evicted, displaced or closed: not the client's failure.
		t.log.Debug("DTLS handshake ended", zap.Uint64("peer", p.id), zap.Stringer("addr", p.curUA.Load()),
			zap.Duration("after", time.Since(start)), zap.Error(err))
		return
	}
	st, ok := conn.ConnectionState()
	if !ok {
		return
	}
	ids, pskID := t.identitiesOf(&st)
	t.mu.Lock()
	if p.gone {
		t.mu.Unlock()
		return
	}
	p.conn, p.identities = conn, ids
	p.random = st.RemoteRandomBytes()
	if pskID != p.pskIdentity { // not a PSK handshake: no key to revoke
		p.pskIdentity, p.pskKey = "", nil
	}
	if p.pskIdentity != "" && !t.keyCurrent(p.pskIdentity, p.pskKey) {
		t.mu.Unlock() // Reload ran during the handshake and revoked its key
		t.stats.Revoked.Add(1)
		return
	}
	delete(t.pending, p)
	p.pending = false
	t.stats.Handshaking.Add(-1)
	p.established = true
	t.peers[p.id] = p
	t.stats.Established.Add(1)
	t.mu.Unlock()
	t.stats.HandshakesOK.Add(1)
	t.log.Debug("DTLS handshake done", zap.Uint64("peer", p.id), zap.Stringer("addr", conn.RemoteAddr()),
		zap.Strings("identities", ids), zap.Duration("took", time.Since(start)))
	p.readLoop(conn)
}

// readLoop queues p's decrypted datagrams for ReadFrom until the conn
// ends or stays silent for IdleTimeout.
func (p *peer) readLoop(conn *dtls.Conn) {
	t := p.t
	buf := make([]byte, maxRecordSize)
	for errs := 0; errs < 100; {
		_ = conn.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout))
		n, err := conn.Read(buf)
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.stats.IdleClosed.Add(1)
				t.log.Debug("DTLS connection idle: closed", zap.Uint64("peer", p.id), zap.Duration("idle", t.cfg.IdleTimeout))
				return
			}
			errs++ // pion passes non-fatal alerts and bad records on
			continue
		}
		select {
		case t.queue <- datagram{b: append([]byte(nil), buf[:n]...), from: p.addr}:
		default:
			t.stats.Dropped.Add(1)
		}
	}
}

// The methods below make *peer the net.PacketConn under p's pion conn.

// ReadFrom returns the next raw datagram the demultiplexer routed to p.
func (p *peer) ReadFrom(b []byte) (int, net.Addr, error) {
	if p.rdl.Err() != nil {
		return 0, nil, os.ErrDeadlineExceeded
	}
	select {
	case d := <-p.in:
		return copy(b, d.b), d.from, nil
	case <-p.rdl.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case <-p.closed:
		return 0, nil, net.ErrClosed
	}
}

// WriteTo sends a record datagram from the shared socket.
func (p *peer) WriteTo(b []byte, addr net.Addr) (int, error) {
	if p.evicted.Load() {
		return 0, net.ErrClosed
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("dtls: peer address is not a UDP address")
	}
	if !p.verified.Load() && isServerHello(b) {
		p.verified.Store(true)
	}
	if cur := p.curUA.Swap(ua); cur != ua && cur.AddrPort() != ua.AddrPort() {
		ap := ua.AddrPort()
		p.t.moved(p, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return p.t.udp.WriteTo(b, ua)
}

// Close is called by pion when its conn closes.
func (p *peer) Close() error {
	p.close1.Do(func() { close(p.closed) })
	return nil
}

// LocalAddr returns the listener's address.
func (p *peer) LocalAddr() net.Addr { return p.t.udp.LocalAddr() }

// SetDeadline sets the read deadline (writes never block).
func (p *peer) SetDeadline(d time.Time) error { return p.SetReadDeadline(d) }

// SetReadDeadline sets the deadline of ReadFrom.
func (p *peer) SetReadDeadline(d time.Time) error {
	p.rdl.Set(d)
	return nil
}

// SetWriteDeadline does nothing: writes to the shared socket never block.
func (*peer) SetWriteDeadline(time.Time) error { return nil }
