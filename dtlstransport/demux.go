package dtlstransport

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"go.uber.org/zap"
)

// DTLS 1.2 record and handshake layout (RFC 6347 §4.1, §4.2.2; RFC 9146).
const (
	recordHeaderLen    = 13 // type, version, epoch, sequence number, length
	handshakeHeaderLen = 12 // type, length, message_seq, fragment offset and length

	contentTypeHandshake    = 22
	contentTypeConnectionID = 25 // tls12_cid

	handshakeTypeClientHello = 1
	handshakeTypeServerHello = 2

	randomLen      = 32
	randomBytesLen = 28 // random after its 4-byte gmt_unix_time
)

// clientHello is what the demultiplexer needs from a ClientHello.
type clientHello struct {
	random    [randomBytesLen]byte // after gmt_unix_time
	hasCookie bool
}

// parseClientHello reports whether the first record of b is an epoch-0
// handshake record holding the start of a ClientHello, and returns its
// random and whether it echoes a cookie. It never allocates.
func parseClientHello(b []byte) (clientHello, bool) {
	var ch clientHello
	if len(b) < recordHeaderLen+handshakeHeaderLen || b[0] != contentTypeHandshake {
		return ch, false
	}
	if binary.BigEndian.Uint16(b[3:5]) != 0 { // epoch
		return ch, false
	}
	recLen := int(binary.BigEndian.Uint16(b[11:13]))
	rec := b[recordHeaderLen:]
	if recLen < len(rec) {
		rec = rec[:recLen]
	}
	if len(rec) < handshakeHeaderLen || rec[0] != handshakeTypeClientHello {
		return ch, false
	}
	fragOff := uint32(rec[6])<<16 | uint32(rec[7])<<8 | uint32(rec[8])
	if fragOff != 0 {
		return ch, false
	}
	body := rec[handshakeHeaderLen:]
	// client_version(2) random(32) session_id<0..32> cookie<0..255>
	if len(body) < 2+randomLen+1 {
		return ch, false
	}
	copy(ch.random[:], body[2+randomLen-randomBytesLen:2+randomLen])
	i := 2 + randomLen
	sid := int(body[i])
	i += 1 + sid
	if sid > 32 || len(body) < i+1 {
		return ch, false
	}
	ch.hasCookie = body[i] > 0
	return ch, true
}

// isServerHello reports whether an outgoing datagram starts with an
// epoch-0 ServerHello: pion sends one only once the client echoed a valid
// cookie, that is once the client proved it receives at its address.
func isServerHello(b []byte) bool {
	return len(b) > recordHeaderLen && b[0] == contentTypeHandshake &&
		binary.BigEndian.Uint16(b[3:5]) == 0 && b[recordHeaderLen] == handshakeTypeServerHello
}

// recordCID returns the Connection ID of b's first record, if it is a
// tls12_cid record.
func recordCID(b []byte) ([]byte, bool) {
	if len(b) < recordHeaderLen+cidLength || b[0] != contentTypeConnectionID {
		return nil, false
	}
	return b[11 : 11+cidLength], true
}

// demux reads the UDP socket and hands each datagram to its peer, creating
// a peer for a new ClientHello. It runs until the socket is closed.
func (t *Transport) demux() {
	defer t.demuxWG.Done()
	buf := make([]byte, 65536)
	for {
		n, ap, err := t.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Debug("DTLS socket read failed", zap.Error(err))
			continue
		}
		t.route(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), buf[:n])
	}
}

// route delivers one datagram from ap.
func (t *Transport) route(ap netip.AddrPort, b []byte) {
	t.mu.Lock()
	var p *peer
	if !t.cfg.DisableConnectionIDs {
		if cid, ok := recordCID(b); ok {
			p = t.byCID[string(cid)]
		}
	}
	if p == nil {
		p = t.byAddr[ap]
	}
	ch, isHello := parseClientHello(b)
	if p != nil && isHello && p.established && ch.random != p.random {
		// A new handshake from the address of an established connection:
		// the node rebooted (or its address was reassigned). Its old
		// connection would swallow the ClientHello (pion/dtls#253).
		t.evictLocked(p)
		t.stats.Evicted.Add(1)
		t.log.Debug("DTLS connection replaced by a new handshake from its address",
			zap.Uint64("peer", p.id), zap.Stringer("addr", ap))
		p = nil
	}
	if p == nil {
		if !isHello || t.closed {
			t.mu.Unlock()
			t.stats.Unrouted.Add(1)
			return
		}
		if len(t.pending) >= t.cfg.MaxHandshakes {
			v := t.oldestUnverifiedLocked()
			if v == nil {
				t.mu.Unlock()
				t.stats.HandshakesRefused.Add(1)
				t.log.Debug("DTLS ClientHello refused: too many handshakes", zap.Stringer("addr", ap))
				return
			}
			t.evictLocked(v)
			t.stats.HandshakesDisplaced.Add(1)
		}
		p = t.newPeerLocked(ap)
	}
	t.mu.Unlock()
	p.deliver(ap, b)
}

// oldestUnverifiedLocked returns the oldest handshake whose peer has not
// yet echoed a cookie, or nil.
func (t *Transport) oldestUnverifiedLocked() *peer {
	var v *peer
	for p := range t.pending {
		if !p.verified.Load() && (v == nil || p.seq < v.seq) {
			v = p
		}
	}
	return v
}

// newPeerLocked registers a peer for a ClientHello from ap and starts it.
func (t *Transport) newPeerLocked(ap netip.AddrPort) *peer {
	t.nextID++
	t.nextSeq++
	p := newPeer(t, t.nextID, t.nextSeq, ap)
	t.byAddr[ap] = p
	t.pending[p] = struct{}{}
	p.pending = true
	t.stats.Handshaking.Add(1)
	t.peerWG.Add(1) // under mu and before closed: Close waits for it
	go p.run()
	return p
}

// evictLocked forgets p and closes its connection without a close_notify
// (which would reach whoever now uses its address).
func (t *Transport) evictLocked(p *peer) {
	p.evicted.Store(true)
	t.forgetLocked(p)
	p.cancel()
}

// forgetLocked removes p from every index that still points to it.
func (t *Transport) forgetLocked(p *peer) {
	p.gone = true
	if p.ap.IsValid() && t.byAddr[p.ap] == p {
		delete(t.byAddr, p.ap)
	}
	if p.cid != "" && t.byCID[p.cid] == p {
		delete(t.byCID, p.cid)
	}
	if p.pending {
		delete(t.pending, p)
		p.pending = false
		t.stats.Handshaking.Add(-1)
	}
	if p.established {
		delete(t.peers, p.id)
		p.established = false
		t.stats.Established.Add(-1)
	}
}

// moved re-indexes p under its new UDP address, learnt by pion from an
// authenticated Connection ID record. The old address is released so that
// whoever gets it next is not mistaken for p.
func (t *Transport) moved(p *peer, ap netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.gone {
		return
	}
	if p.ap.IsValid() && t.byAddr[p.ap] == p {
		delete(t.byAddr, p.ap)
	}
	p.ap = netip.AddrPort{}
	if t.byAddr[ap] == nil {
		t.byAddr[ap] = p
		p.ap = ap
	}
	t.log.Debug("DTLS peer moved", zap.Uint64("peer", p.id), zap.Stringer("addr", ap))
}
