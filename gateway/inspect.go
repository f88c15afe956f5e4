package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"sort"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Traffic is one node's radio cost: what it sent and received, and what
// that bought. Arrays by QoS are indexed by QoS+1 (index 0 is QoS -1,
// unused for downlink).
type Traffic struct {
	DatagramsIn  uint64 `json:"datagrams_in"`
	DatagramsOut uint64 `json:"datagrams_out"`
	BytesIn      uint64 `json:"bytes_in"`
	BytesOut     uint64 `json:"bytes_out"`
	// PublishesIn counts the node's PUBLISHes (retransmissions included).
	PublishesIn [4]uint64 `json:"publishes_in"`
	// Uplinked counts node messages the broker accepted.
	Uplinked [4]uint64 `json:"uplinked"`
	// UplinkDatagrams counts datagrams both ways spent on uplink messages.
	UplinkDatagrams [4]uint64 `json:"uplink_datagrams"`
	// Delivered counts messages delivered to the node (acknowledged at
	// QoS 1 and 2, sent at QoS 0).
	Delivered [4]uint64 `json:"delivered"`
	// DownlinkDatagrams counts datagrams both ways spent on delivering
	// messages: REGISTER, PUBLISH, PUBREL, retransmissions and the node's
	// acknowledgements.
	DownlinkDatagrams [4]uint64 `json:"downlink_datagrams"`
	Retransmissions   uint64    `json:"retransmissions"`
	WakeCycles        uint64    `json:"wake_cycles"`
}

// SubscriptionInfo describes one of a node's subscriptions.
type SubscriptionInfo struct {
	Filter      string `json:"filter"`
	QoS         int    `json:"qos"`
	TopicIDType string `json:"topic_id_type"` // "normal", "predefined" or "short"
}

// ClientInfo is a snapshot of one node, for operators.
type ClientInfo struct {
	ClientID      string             `json:"client_id"`
	State         string             `json:"state"`
	Addr          string             `json:"addr"`
	Transport     string             `json:"transport"`
	ForwarderNode string             `json:"forwarder_node,omitempty"` // wireless node id (hex) behind a forwarder
	CleanSession  bool               `json:"clean_session"`
	KeepAlive     float64            `json:"keep_alive_seconds"`
	SleepDuration float64            `json:"sleep_seconds,omitempty"`
	LastSeen      time.Time          `json:"last_seen"`
	Will          bool               `json:"will"`
	Subscriptions []SubscriptionInfo `json:"subscriptions"`
	Topics        map[uint16]string  `json:"topics"`
	Buffered      int                `json:"buffered"`
	BufferedBytes int64              `json:"buffered_bytes"`
	InFlight      bool               `json:"in_flight"`
	Traffic       Traffic            `json:"traffic"`
}

// ErrNotServing is returned by Clients and Client when the gateway is not
// running.
var ErrNotServing = errors.New("gateway: not serving")

// Clients returns a snapshot of every node the gateway knows, sorted by
// ClientId.
func (g *Gateway) Clients(ctx context.Context) ([]ClientInfo, error) {
	var out []ClientInfo
	for _, s := range g.shards {
		part, err := query(ctx, s, func() []ClientInfo {
			r := make([]ClientInfo, 0, len(s.sessions))
			for _, sess := range s.sessions {
				r = append(r, s.info(sess))
			}
			return r
		})
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out, nil
}

// Client returns one node's snapshot; ok is false if it is unknown.
func (g *Gateway) Client(ctx context.Context, clientID string) (ClientInfo, bool, error) {
	s := g.shards[g.shardFor(clientID)]
	var found bool
	ci, err := query(ctx, s, func() ClientInfo {
		sess := s.sessions[clientID]
		if sess == nil {
			return ClientInfo{}
		}
		found = true
		return s.info(sess)
	})
	return ci, found && err == nil, err
}

// Census counts the nodes by state and what is queued for them: what the
// metrics need, without copying every node's details.
type Census struct {
	ByState       map[string]int
	Buffered      int
	BufferedBytes int64
	InFlight      int
}

// Census takes a census of every shard.
func (g *Gateway) Census(ctx context.Context) (Census, error) {
	c := Census{ByState: map[string]int{}}
	for _, s := range g.shards {
		part, err := query(ctx, s, func() Census {
			p := Census{ByState: map[string]int{}}
			for _, sess := range s.sessions {
				st := sess.state.String()
				if sess.phase != phaseNone {
					st = "connecting"
				}
				p.ByState[st]++
				p.Buffered += sess.queue.Len()
				p.BufferedBytes += sess.queue.Bytes()
				if sess.inflight != nil {
					p.InFlight++
				}
			}
			return p
		})
		if err != nil {
			return Census{}, err
		}
		for k, v := range part.ByState {
			c.ByState[k] += v
		}
		c.Buffered += part.Buffered
		c.BufferedBytes += part.BufferedBytes
		c.InFlight += part.InFlight
	}
	return c, nil
}

// query runs fn on the shard's loop and returns its result.
func query[T any](ctx context.Context, s *shard, fn func() T) (T, error) {
	var zero T
	select {
	case <-s.g.ready:
	default:
		return zero, ErrNotServing
	}
	res := make(chan T, 1)
	select {
	case s.events <- func(time.Time) { res <- fn() }:
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-s.g.done:
		return zero, ErrNotServing
	}
	select {
	case r := <-res:
		return r, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-s.g.done:
		return zero, ErrNotServing
	}
}

func (s *shard) info(sess *session) ClientInfo {
	ci := ClientInfo{
		ClientID:      sess.id,
		State:         sess.state.String(),
		Addr:          sess.peer.addr.String(),
		Transport:     transportOf(sess.peer.addr),
		CleanSession:  sess.clean,
		KeepAlive:     sess.keepAlive.Seconds(),
		LastSeen:      sess.lastSeen,
		Will:          sess.will != nil,
		Topics:        sess.topics.Topics(),
		Buffered:      sess.queue.Len(),
		BufferedBytes: sess.queue.Bytes(),
		InFlight:      sess.inflight != nil,
		Traffic:       sess.traffic,
		Subscriptions: make([]SubscriptionInfo, 0, len(sess.subs)),
	}
	if sess.peer.key.node != "" {
		ci.ForwarderNode = hex.EncodeToString([]byte(sess.peer.key.node))
	}
	if sess.state == sleepmgr.Asleep || sess.state == sleepmgr.Awake {
		ci.SleepDuration = sess.sleep.Seconds()
	}
	if sess.phase != phaseNone {
		ci.State = "connecting"
	}
	for f, sub := range sess.subs {
		ci.Subscriptions = append(ci.Subscriptions, SubscriptionInfo{Filter: f, QoS: int(sub.qos), TopicIDType: topicIDTypeName(sub.idType)})
	}
	sort.Slice(ci.Subscriptions, func(i, j int) bool { return ci.Subscriptions[i].Filter < ci.Subscriptions[j].Filter })
	return ci
}

func topicIDTypeName(t snpacket.TopicIDType) string {
	switch t {
	case snpacket.TopicPredefined:
		return "predefined"
	case snpacket.TopicShort:
		return "short"
	default:
		return "normal"
	}
}

// transportOf names the transport a peer talks over, for operators: what
// its address's network says ("dtls" for a DTLS peer), else "udp". (The
// DTLS transport's own LocalAddr is its UDP socket's, so it cannot tell.)
func transportOf(a net.Addr) string {
	if a != nil {
		if n := a.Network(); n != "" {
			return n
		}
	}
	return "udp"
}

// qi indexes per-QoS arrays: QoS -1 at 0.
func qi(q snpacket.QoS) int {
	i := int(q) + 1
	if i < 0 || i > 3 {
		return 0
	}
	return i
}
