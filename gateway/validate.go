package gateway

import (
	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// The one validation step between a node and any upstream (issue 18):
// every topic name and filter that would reach the broker is checked
// against MQTT's rules here, whatever topic id type carried it, and every
// reserved flag value a node sends is refused here, so that no node input
// can make the broker drop a connection. Callers answer the node on the
// MQTT-SN side (PUBACK, SUBACK, UNSUBACK, WILLTOPICRESP, CONNACK) or drop
// the message (QoS 0 and -1); these functions count and log.

// RejectReason says why a node's message was refused before it reached
// the broker.
type RejectReason uint8

// Reject reasons. The first ones mirror topicreg's Violations.
const (
	RejectEmptyTopic          RejectReason = iota // empty topic name or filter
	RejectTopicTooLong                            // more than 65535 octets
	RejectNullChar                                // U+0000 in a topic
	RejectInvalidUTF8                             // a topic that is not UTF-8
	RejectBadCodePoint                            // a control character or non-character in a topic
	RejectWildcardInName                          // '+' or '#' in a topic name
	RejectMalformedFilter                         // a filter with a misplaced wildcard
	RejectReservedTopicIDType                     // TopicIdType 0b11
	RejectReservedQoS                             // QoS 0b11 in SUBSCRIBE
	// QoS -1 PUBLISH with a normal topic id type: a long topic name
	// (a Paho extension, not in v1.2) or a registered id, which means
	// nothing without a connection (spec §6.8).
	RejectQoSMinusOneLongTopic
	RejectQoSMinusOneUnknownPredefined // QoS -1 PUBLISH to an unknown predefined id
	rejectReasons
)

var rejectNames = [...]string{ //nolint:gochecknoglobals // constant table
	"empty_topic", "topic_too_long", "null_char", "invalid_utf8", "bad_code_point",
	"wildcard_in_name", "malformed_filter", "reserved_topic_id_type", "reserved_qos",
	"qos_minus_one_long_topic", "qos_minus_one_unknown_predefined",
}

func (r RejectReason) String() string {
	if int(r) < len(rejectNames) {
		return rejectNames[r]
	}
	return "unknown"
}

// RejectReasons lists every RejectReason, for metrics.
func RejectReasons() []RejectReason {
	out := make([]RejectReason, rejectReasons)
	for i := range out {
		out[i] = RejectReason(i)
	}
	return out
}

// rejectOf maps a topic rule violation (not Valid) to its reason.
func rejectOf(v topicreg.Violation) RejectReason {
	switch v {
	case topicreg.Empty:
		return RejectEmptyTopic
	case topicreg.TooLong:
		return RejectTopicTooLong
	case topicreg.NullChar:
		return RejectNullChar
	case topicreg.InvalidUTF8:
		return RejectInvalidUTF8
	case topicreg.BadCodePoint:
		return RejectBadCodePoint
	case topicreg.WildcardInName:
		return RejectWildcardInName
	default:
		return RejectMalformedFilter
	}
}

// maxLoggedTopic bounds how much of a refused topic a log line carries.
const maxLoggedTopic = 128

// reject counts a refused message and logs it at debug.
func (g *Gateway) reject(log *zap.Logger, r RejectReason, t snpacket.MsgType, topic string) {
	g.stats.Rejected[r].Add(1)
	if ce := log.Check(zap.DebugLevel, "refused before the broker"); ce != nil {
		if len(topic) > maxLoggedTopic {
			topic = topic[:maxLoggedTopic]
		}
		ce.Write(zap.Stringer("reason", r), zap.Stringer("type", t), zap.String("topic", topic))
	}
}

// checkName validates a topic name bound for the broker; on a violation
// it counts and logs it and reports false.
func (g *Gateway) checkName(log *zap.Logger, t snpacket.MsgType, name string) bool {
	if v := topicreg.CheckName(name); v != topicreg.Valid {
		g.reject(log, rejectOf(v), t, name)
		return false
	}
	return true
}

// checkFilter is checkName for a topic filter.
func (g *Gateway) checkFilter(log *zap.Logger, t snpacket.MsgType, filter string) bool {
	if v := topicreg.CheckFilter(filter); v != topicreg.Valid {
		g.reject(log, rejectOf(v), t, filter)
		return false
	}
	return true
}

// checkReserved refuses the reserved TopicIdType in PUBLISH, SUBSCRIBE
// and UNSUBSCRIBE, and the reserved QoS in SUBSCRIBE, reporting false.
func (g *Gateway) checkReserved(log *zap.Logger, p snpacket.Packet) bool {
	var tt snpacket.TopicIDType
	switch p := p.(type) {
	case *snpacket.Publish:
		tt = p.TopicIDType
	case *snpacket.Subscribe:
		if p.QoS == snpacket.QoSMinusOne {
			g.reject(log, RejectReservedQoS, p.Type(), "")
			return false
		}
		tt = p.TopicIDType
	case *snpacket.Unsubscribe:
		tt = p.TopicIDType
	default:
		return true
	}
	if tt > snpacket.TopicShort {
		g.reject(log, RejectReservedTopicIDType, p.Type(), "")
		return false
	}
	return true
}
