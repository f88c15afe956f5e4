package gateway

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// inbound is one decoded datagram on its way to a shard.
type inbound struct {
	from peer
	pkt  snpacket.Packet
	size int
}

// readLoop reads datagrams from one transport until ctx ends, decodes them
// and hands each to its shard without ever blocking on one. A UDP socket
// is read in batches (recvmmsg where the OS has it).
func (g *Gateway) readLoop(ctx context.Context, tr int, t Transport) {
	if uc, ok := t.(*net.UDPConn); ok && g.cfg.ReadBatch > 1 {
		g.readBatches(ctx, tr, uc)
		return
	}
	buf := make([]byte, 65536)
	for {
		n, addr, err := t.ReadFrom(buf)
		if err != nil {
			if g.readFailed(ctx, err) {
				return
			}
			continue
		}
		g.received(tr, addr, buf[:n])
	}
}

// readBatches is readLoop for a UDP socket: up to Config.ReadBatch
// datagrams per system call.
func (g *Gateway) readBatches(ctx context.Context, tr int, uc *net.UDPConn) {
	var readBatch func([]ipv4.Message, int) (int, error)
	if a, ok := uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		readBatch = ipv6.NewPacketConn(uc).ReadBatch // also serves a dual-stack socket's IPv4 peers
	} else {
		readBatch = ipv4.NewPacketConn(uc).ReadBatch
	}
	msgs := make([]ipv4.Message, g.cfg.ReadBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	for {
		n, err := readBatch(msgs, 0)
		if err != nil {
			if g.readFailed(ctx, err) {
				return
			}
			continue
		}
		g.stats.ReadBatches.Add(1)
		for i := range msgs[:n] {
			m := &msgs[i]
			g.received(tr, m.Addr, m.Buffers[0][:m.N])
		}
	}
}

// readFailed handles a read error and reports whether the loop ends.
func (g *Gateway) readFailed(ctx context.Context, err error) bool {
	if ctx.Err() != nil || g.drain.stopReading.Load() {
		return true // stopped, or draining (shutdown.go)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	g.log.Warn("read failed", zap.Error(err))
	return false
}

// received counts one datagram and dispatches a copy of it.
func (g *Gateway) received(tr int, addr net.Addr, b []byte) {
	g.stats.DatagramsIn.Add(1)
	g.stats.BytesIn.Add(uint64(len(b)))
	key, ok := keyOf(tr, addr)
	if !ok {
		g.malformed(MalformedOther)
		return
	}
	// Decoded byte fields alias the buffer: give each datagram its own.
	g.dispatch(peer{key: key, addr: addr}, append([]byte(nil), b...))
}

// dispatch decodes one datagram and routes it.
func (g *Gateway) dispatch(from peer, data []byte) {
	pkt, err := snpacket.Unmarshal(data)
	if enc, ok := pkt.(*snpacket.Encapsulated); ok && (err == nil || snpacket.ReturnsPacket(err)) {
		if !g.allow.allows(from.key.ap) {
			g.stats.ForwarderDenied.Add(1)
			g.log.Debug("encapsulated message from a forwarder not on forwarders.allow", zap.Stringer("from", from.addr))
			return
		}
		if len(enc.NodeID) == 0 {
			g.malformed(MalformedOther)
			return
		}
		from.key.node = string(enc.NodeID)
		pkt = enc.Message
	}
	if err != nil {
		if c, ok := pkt.(*snpacket.Connect); ok && errors.Is(err, snpacket.ErrProtocolID) {
			g.log.Debug("CONNECT with unsupported protocol id", zap.Uint8("protocol_id", c.ProtocolID), zap.Stringer("from", from.addr))
			g.send(from, &snpacket.Connack{ReturnCode: snpacket.RejectedNotSupported})
			return
		}
		if !g.reservedValue(from, pkt, err, len(data)) {
			g.malformed(malformedKind(err))
			g.log.Debug("malformed datagram dropped", zap.Stringer("from", from.addr), zap.Error(err))
		}
		return
	}
	g.stats.countIn(pkt.Type(), len(data))
	if _, ok := pkt.(*snpacket.Encapsulated); ok {
		g.malformed(MalformedOther) // nested encapsulation is refused by the codec; belt and braces
		return
	}
	in := inbound{from: from, pkt: pkt, size: len(data)}
	switch p := pkt.(type) {
	case *snpacket.SearchGW:
		g.onSearchGW(from, p)
		return
	case *snpacket.Advertise, *snpacket.GWInfo:
		return // other gateways: nothing to do
	case *snpacket.Publish:
		if p.QoS == snpacket.QoSMinusOne {
			g.publishMinusOne(from, p)
			return
		}
	case *snpacket.Connect:
		if !g.allowConnect(from) {
			return
		}
		i := g.shardFor(p.ClientID)
		g.connects.note(from.key, i) // an AUTH may follow at once
		g.toShard(i, in)
		return
	case *snpacket.Auth:
		if i, ok := g.authShard(from.key); ok {
			g.toShard(i, in)
			return
		}
	case *snpacket.PingReq:
		if p.ClientID != "" {
			g.toShard(g.shardFor(p.ClientID), in)
			return
		}
	}
	if i, ok := g.lookup(from.key); ok {
		g.toShard(i, in)
		return
	}
	g.noSession(from, pkt)
}

// reservedValue routes a PUBLISH, SUBSCRIBE or UNSUBSCRIBE that carries a
// reserved TopicIdType or QoS (decoded with its MsgId) to the node's
// session, which answers it; a QoS -1 one is counted and dropped. It
// reports false for what stays a malformed datagram: anything else, and
// such a message from an address without a session (which is never
// answered with more than it sent).
func (g *Gateway) reservedValue(from peer, pkt snpacket.Packet, err error, size int) bool {
	if pkt == nil || (!errors.Is(err, snpacket.ErrReservedTopicIDType) && !errors.Is(err, snpacket.ErrReservedQoS)) {
		return false
	}
	switch p := pkt.(type) {
	case *snpacket.Publish:
		if p.QoS == snpacket.QoSMinusOne {
			g.stats.countIn(pkt.Type(), size)
			g.stats.QoSMinusOneIn.Add(1)
			g.stats.QoSMinusOneDrop.Add(1)
			g.reject(g.log.With(zap.Stringer("from", from.addr)), RejectReservedTopicIDType, p.Type(), "")
			return true
		}
	case *snpacket.Subscribe, *snpacket.Unsubscribe:
	default:
		return false
	}
	i, ok := g.lookup(from.key)
	if !ok {
		return false
	}
	g.stats.countIn(pkt.Type(), size)
	g.toShard(i, inbound{from: from, pkt: pkt, size: size})
	return true
}

// identityAllowed reports whether a peer may act as clientID: always on
// transports that do not authenticate; on those that do, only when the
// ClientId is one of the peer's proven identities (unless disabled).
func (g *Gateway) identityAllowed(from peer, clientID string) bool {
	a, ok := g.transports[from.key.tr].(Authenticator)
	if !ok || g.cfg.DisableIdentityBinding {
		return true
	}
	for _, id := range a.PeerIdentities(from.addr) {
		if id == clientID {
			return true
		}
	}
	return false
}

// authenticated reports whether the peer's transport authenticates peers.
func (g *Gateway) authenticated(from peer) bool {
	_, ok := g.transports[from.key.tr].(Authenticator)
	return ok
}

// malformed counts a datagram dropped as malformed, by kind.
func (g *Gateway) malformed(k MalformedKind) {
	g.stats.Malformed.Add(1)
	g.stats.MalformedByKind[k].Add(1)
}

func (g *Gateway) toShard(i int, in inbound) {
	select {
	case g.shards[i].inbox <- in:
	default:
		g.stats.InboxDropped.Add(1)
	}
}

// noSession answers traffic from a peer without a session. Session traffic
// gets an unsolicited DISCONNECT so the node knows to CONNECT again (after
// a gateway restart, say); acknowledgements are dropped.
func (g *Gateway) noSession(from peer, pkt snpacket.Packet) {
	g.stats.NoSession.Add(1)
	switch pkt.Type() {
	case snpacket.TypeRegister, snpacket.TypePublish, snpacket.TypeSubscribe,
		snpacket.TypeUnsubscribe, snpacket.TypePingReq, snpacket.TypeDisconnect,
		snpacket.TypeWillTopicUpd, snpacket.TypeWillMsgUpd, snpacket.TypePubrel:
		g.send(from, &snpacket.Disconnect{})
	default: // acknowledgements and the rest: dropped
	}
}

// qosMinusOneQueue bounds the QoS -1 publishes waiting for the gateway's
// own upstream connection; beyond it they are dropped and counted. A
// benchmark at 50,000 messages/s overflowed 1,024 in bursts.
const qosMinusOneQueue = 16384

// publishMinusOne forwards a QoS -1 publish through the gateway's own
// upstream connection (spec §7.1). Only predefined ids and short names are
// meaningful without a connection.
func (g *Gateway) publishMinusOne(from peer, p *snpacket.Publish) {
	g.stats.QoSMinusOneIn.Add(1)
	if g.cfg.DisableQoSMinusOne {
		g.stats.QoSMinusOneDrop.Add(1)
		return
	}
	var topic string
	switch p.TopicIDType {
	case snpacket.TopicPredefined:
		name, ok := g.predef.Name(p.TopicID)
		if !ok {
			g.stats.QoSMinusOneDrop.Add(1)
			g.stats.Rejected[RejectQoSMinusOneUnknownPredefined].Add(1)
			g.log.Debug("QoS -1 publish dropped", zap.Stringer("reason", RejectQoSMinusOneUnknownPredefined),
				zap.Uint16("topic_id", p.TopicID), zap.Stringer("from", from.addr))
			return
		}
		topic = name
	case snpacket.TopicShort:
		topic = snpacket.ShortTopicName(p.TopicID)
	default:
		// TopicIdType normal: a long topic name (a Paho extension, not in
		// v1.2) or a registered id; spec §6.8 allows neither.
		g.stats.QoSMinusOneDrop.Add(1)
		g.stats.Rejected[RejectQoSMinusOneLongTopic].Add(1)
		g.log.Debug("QoS -1 publish dropped", zap.Stringer("reason", RejectQoSMinusOneLongTopic),
			zap.Uint16("topic_id", p.TopicID), zap.Int("size", len(p.Data)+7), zap.Stringer("from", from.addr))
		return
	}
	if v := topicreg.CheckName(topic); v != topicreg.Valid {
		// A short name such as "/#" would make the broker drop the
		// gateway's own connection.
		g.stats.QoSMinusOneDrop.Add(1)
		g.reject(g.log.With(zap.Stringer("from", from.addr)), rejectOf(v), p.Type(), topic)
		return
	}
	msg := Message{Topic: topic, Payload: p.Data, QoS: 0, Retain: p.Retain}
	if !g.holdUplink(qosMinusOneBytes(msg)) {
		g.stats.QoSMinusOneDrop.Add(1)
		g.limited(LimitPendingBytes)
		return
	}
	select {
	case g.qm1 <- msg:
	default:
		g.releaseUplink(qosMinusOneBytes(msg))
		g.stats.QoSMinusOneDrop.Add(1)
	}
}

// runQoSMinusOne owns the gateway's dedicated upstream connection for QoS -1
// traffic. It connects lazily; after a failure it opens again on the first
// message after the reconnect backoff and a slot on the limiter, and logs
// the outage once (qm1link.go).
func (g *Gateway) runQoSMinusOne(ctx context.Context) {
	var sess Session
	link := newQM1Link(g.log, g.up)
	defer func() {
		if sess != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 2*g.cfg.RetryInterval)
			_ = sess.Close(cctx)
			cancel()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-g.qm1:
			g.releaseUplink(qosMinusOneBytes(msg)) // limits.go
			if sess != nil {
				select {
				case <-sess.Done(): // gave up reconnecting: open anew
					sess = nil
				default:
				}
			}
			if sess == nil {
				if !link.mayOpen(time.Now()) {
					g.stats.QoSMinusOneDrop.Add(1)
					link.skipped()
					continue
				}
				octx, cancel := context.WithTimeout(ctx, g.cfg.UpstreamTimeout)
				s, err := g.up.Open(octx, SessionOptions{ClientID: gatewayClientID(g.cfg.GatewayID), CleanStart: true}, func(Message) {})
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					g.stats.QoSMinusOneDrop.Add(1)
					link.failed(time.Now(), err, true)
					continue
				}
				sess = s
			}
			pctx, cancel := context.WithTimeout(ctx, g.cfg.UpstreamTimeout)
			err := sess.Publish(pctx, msg)
			cancel()
			if err != nil {
				g.stats.QoSMinusOneDrop.Add(1)
				link.failed(time.Now(), err, false) // the session reconnects by itself
				continue
			}
			link.ok(time.Now())
			g.stats.QoSMinusOneOut.Add(1)
		}
	}
}

func gatewayClientID(id uint8) string {
	return "mqttsn-gateway-" + strconv.Itoa(int(id)) + "-qos-1"
}
