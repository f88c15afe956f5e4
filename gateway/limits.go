package gateway

import (
	"errors"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Bounds under abuse (issue 14): every queue a node can fill has a bound,
// and what a bound refuses is answered as the spec allows and counted by
// reason in Stats.Limited (mqttsn_limited_total).
//
// What a node holds for the uplink: its operations waiting for the broker
// (sess.ops, at most Config.MaxPendingPerNode), the one a worker runs, and
// the shard's backlog of operations waiting for a worker (at most
// Config.InboxSize per shard). The topic and payload bytes of all of them,
// and of the QoS -1 queue, count against Config.MaxPendingBytes. Closes
// (and the will a close publishes) are never refused: they free what a
// node holds.

// LimitReason says which bound refused a request, or dropped or held a
// message.
type LimitReason uint8

// Limit reasons.
const (
	LimitPendingPerNode       LimitReason = iota // limits.max_pending_per_node
	LimitPendingBytes                            // limits.max_pending_bytes
	LimitShardBacklog                            // a shard's operations waiting for a worker (limits.inbox_size)
	LimitTopicBytes                              // limits.max_topic_bytes
	LimitSubscriptions                           // limits.max_subscriptions
	LimitConnecting                              // limits.max_connecting
	LimitSessions                                // limits.max_sessions
	LimitConnectRate                             // limits.connect_rate_per_ip
	LimitAmplificationHeld                       // downlink held until an unproven address earns it
	LimitAmplificationDropped                    // a datagram not sent to an unproven address
	limitReasons
)

var limitNames = [...]string{ //nolint:gochecknoglobals // constant table
	"pending_per_node", "pending_bytes", "shard_backlog", "topic_bytes", "subscriptions",
	"connecting", "sessions", "connect_rate", "amplification_held", "amplification_dropped",
}

func (r LimitReason) String() string {
	if int(r) < len(limitNames) {
		return limitNames[r]
	}
	return "unknown"
}

// LimitReasons lists every LimitReason, for metrics.
func LimitReasons() []LimitReason {
	out := make([]LimitReason, limitReasons)
	for i := range out {
		out[i] = LimitReason(i)
	}
	return out
}

func (c *Config) setLimitDefaults() {
	if c.MaxPendingPerNode == 0 {
		c.MaxPendingPerNode = DefaultMaxPendingPerNode
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if c.MaxTopicBytes == 0 {
		c.MaxTopicBytes = DefaultMaxTopicBytes
	}
	if c.MaxSubscriptions == 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxConnecting == 0 {
		c.MaxConnecting = DefaultMaxConnecting
	}
}

func (c *Config) validateLimits() error {
	switch {
	case c.MaxPendingPerNode < 0 || c.MaxPendingPerNode > 1<<20:
		return errors.New("gateway: limits.max_pending_per_node must be between 1 and 1048576 (default 64)")
	case c.MaxPendingBytes < 0:
		return errors.New("gateway: limits.max_pending_bytes must be positive (bytes, default 67108864)")
	case c.MaxTopicBytes < 0:
		return errors.New("gateway: limits.max_topic_bytes must be positive (bytes, default 65536)")
	case c.MaxSubscriptions < 0:
		return errors.New("gateway: limits.max_subscriptions must be positive (default 100)")
	case c.MaxConnecting < 0:
		return errors.New("gateway: limits.max_connecting must be positive (default 256)")
	case c.MaxSessions < 0:
		return errors.New("gateway: limits.max_sessions must be 0 (no limit) or positive")
	case c.ConnectRatePerIP < 0 || math.IsNaN(c.ConnectRatePerIP) || math.IsInf(c.ConnectRatePerIP, 0):
		return errors.New("gateway: limits.connect_rate_per_ip must be 0 (off) or a positive number of CONNECTs per second")
	}
	return nil
}

// limiter holds the gateway-wide counts the bounds compare with.
type limiter struct {
	pendingBytes atomic.Int64 // bytes held for the uplink
	connecting   atomic.Int64 // upstream connects admitted and not done
	sessions     atomic.Int64 // sessions in the shards' tables
	rate         connectRate
}

// limited counts a refusal, drop or hold by r.
func (g *Gateway) limited(r LimitReason) { g.stats.Limited[r].Add(1) }

// holdUplink charges n bytes held for the uplink against
// Config.MaxPendingBytes, reporting false (and charging nothing) when they
// do not fit.
func (g *Gateway) holdUplink(n int64) bool {
	if g.lim.pendingBytes.Add(n) > g.cfg.MaxPendingBytes {
		g.lim.pendingBytes.Add(-n)
		return false
	}
	return true
}

// releaseUplink gives back what holdUplink charged.
func (g *Gateway) releaseUplink(n int64) {
	if n != 0 {
		g.lim.pendingBytes.Add(-n)
	}
}

// PendingBytes is what the nodes hold for the uplink now, in bytes.
func (g *Gateway) PendingBytes() int64 { return g.lim.pendingBytes.Load() }

// uplinkBytes is what a node's operation holds until it is done.
func (o *op) uplinkBytes() int64 {
	switch o.kind {
	case opPublish:
		return int64(len(o.msg.Topic) + len(o.msg.Payload))
	case opSubscribe, opUnsubscribe:
		return int64(len(o.filter))
	default:
		return 0
	}
}

// admit decides whether a node's operation may be queued, and when it may,
// charges what it holds (released by release when it is done or dropped).
// Closes are always admitted. On refusal it counts the reason and reports
// it with false; the caller answers the node.
func (s *shard) admit(sess *session, o *op) bool {
	if o.kind == opClose {
		return true
	}
	g := s.g
	waiting := len(sess.ops)
	if sess.opBusy {
		waiting++
	}
	var r LimitReason
	switch n := o.uplinkBytes(); {
	case waiting >= g.cfg.MaxPendingPerNode:
		r = LimitPendingPerNode
	case !sess.opBusy && s.idle == 0 && len(s.backlog) >= g.cfg.InboxSize:
		r = LimitShardBacklog
	case o.kind == opOpen && g.lim.connecting.Add(1) > int64(g.cfg.MaxConnecting):
		g.lim.connecting.Add(-1)
		r = LimitConnecting
	case !g.holdUplink(n):
		if o.kind == opOpen {
			g.lim.connecting.Add(-1)
		}
		r = LimitPendingBytes
	default:
		o.held = n
		o.slot = o.kind == opOpen
		return true
	}
	g.limited(r)
	if ce := sess.log.Check(zap.DebugLevel, "refused: limit reached"); ce != nil {
		ce.Write(limitField(r), opField(o.kind))
	}
	return false
}

// release gives back what admit charged for o.
func (g *Gateway) release(o *op) {
	g.releaseUplink(o.held)
	o.held = 0
	if o.slot {
		g.lim.connecting.Add(-1)
		o.slot = false
	}
}

// admitSession reports whether a CONNECT with a ClientId the gateway has no
// session for may make one (Config.MaxSessions).
func (g *Gateway) admitSession() bool {
	if g.cfg.MaxSessions > 0 && g.lim.sessions.Load() >= int64(g.cfg.MaxSessions) {
		g.limited(LimitSessions)
		return false
	}
	return true
}

// topicBytes is what a node holds in topic names and filters: the names
// of its registry, and the filters of its subscriptions that are not in
// the registry (wildcards, short names, predefined ones).
func (sess *session) topicBytes() int {
	n := sess.topics.Bytes()
	for f := range sess.subs {
		if _, ok := sess.topics.ID(f); !ok {
			n += len(f)
		}
	}
	return n
}

// topicRoom checks that adding name (a new registry entry or filter) keeps
// the node within Config.MaxTopicBytes. It returns the return code for the
// REGACK or SUBACK: "not supported" (0x03) for a name that alone exceeds
// the limit (retrying cannot help), "congestion" (0x01) when only the
// node's other names leave no room (a clean session frees them), counted.
func (s *shard) topicRoom(sess *session, name string) snpacket.ReturnCode {
	if _, ok := sess.topics.ID(name); ok {
		return snpacket.Accepted // already held
	}
	if _, ok := sess.subs[name]; ok {
		return snpacket.Accepted
	}
	limit := s.g.cfg.MaxTopicBytes
	switch {
	case len(name) > limit:
		s.g.limited(LimitTopicBytes)
		return snpacket.RejectedNotSupported
	case sess.topicBytes()+len(name) > limit:
		s.g.limited(LimitTopicBytes)
		return snpacket.RejectedCongestion
	}
	return snpacket.Accepted
}

// subscriptionRoom checks Config.MaxSubscriptions for a new filter:
// "congestion" (0x01) when the node has as many as allowed (unsubscribing
// frees one), counted.
func (s *shard) subscriptionRoom(sess *session, filter string) snpacket.ReturnCode {
	if _, ok := sess.subs[filter]; ok || len(sess.subs) < s.g.cfg.MaxSubscriptions {
		return snpacket.Accepted
	}
	s.g.limited(LimitSubscriptions)
	return snpacket.RejectedCongestion
}

// maxRateEntries bounds the per-IP CONNECT rate table.
const maxRateEntries = 16384

// connectRate is the per-source-IP CONNECT token bucket table
// (Config.ConnectRatePerIP). Its size is bounded: entries that refilled
// are worth nothing and are swept when it is full, and if none has, a
// random one gives way.
type connectRate struct {
	mu sync.Mutex
	m  map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// allow takes a token for ip at now; rate is tokens per second, with a
// burst of max(1, rate).
func (c *connectRate) allow(ip netip.Addr, now time.Time, rate float64) bool {
	burst := max(1, rate)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[netip.Addr]*bucket)
	}
	b := c.m[ip]
	if b == nil {
		if len(c.m) >= maxRateEntries {
			c.sweep(now, rate, burst)
		}
		b = &bucket{tokens: burst, at: now}
		c.m[ip] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (c *connectRate) sweep(now time.Time, rate, burst float64) {
	for ip, b := range c.m {
		if b.tokens+now.Sub(b.at).Seconds()*rate >= burst {
			delete(c.m, ip)
		}
	}
	for ip := range c.m { // random order: one gives way
		if len(c.m) < maxRateEntries {
			break
		}
		delete(c.m, ip)
	}
}

// allowConnect applies Config.ConnectRatePerIP to a CONNECT from from; on
// refusal it counts it and answers CONNACK congestion (3 octets, less
// than any CONNECT).
func (g *Gateway) allowConnect(from peer) bool {
	if g.cfg.ConnectRatePerIP <= 0 {
		return true
	}
	ip := from.key.ap.Addr()
	if !ip.IsValid() {
		return true // a connection-oriented transport (DTLS) proved the peer
	}
	if g.lim.rate.allow(ip, time.Now(), g.cfg.ConnectRatePerIP) {
		return true
	}
	g.limited(LimitConnectRate)
	g.send(from, &snpacket.Connack{ReturnCode: snpacket.RejectedCongestion})
	return false
}

// subscribeRoom applies Config.MaxSubscriptions and Config.MaxTopicBytes
// to a SUBSCRIBE of filter, returning the SUBACK's return code.
func (s *shard) subscribeRoom(sess *session, filter string) snpacket.ReturnCode {
	if rc := s.subscriptionRoom(sess, filter); rc != snpacket.Accepted {
		return rc
	}
	return s.topicRoom(sess, filter)
}

// duplicatePublish reports whether p is a retransmission of a QoS 1 or 2
// PUBLISH the gateway holds already: it is answered as such, never
// refused by a bound.
func (s *shard) duplicatePublish(sess *session, p *snpacket.Publish) bool {
	switch p.QoS {
	case snpacket.QoS1:
		return sess.qos1[p.MsgID]
	case snpacket.QoS2:
		_, ok := sess.qos2[p.MsgID]
		return ok
	default:
		return false
	}
}

func limitField(r LimitReason) zap.Field { return zap.Stringer("limit", r) }

func opField(k opKind) zap.Field {
	names := [...]string{"open", "publish", "subscribe", "unsubscribe", "close"}
	if int(k) < len(names) {
		return zap.String("op", names[k])
	}
	return zap.Int("op", int(k))
}

// qosMinusOneBytes is what a QoS -1 message in the queue holds.
func qosMinusOneBytes(m Message) int64 { return int64(len(m.Topic) + len(m.Payload)) }
