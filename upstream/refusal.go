package upstream

import "fmt"

// refusal describes one MQTT reason code (v5) or CONNACK return code
// (3.1.1): its name as the specifications spell it, whether retrying can
// help, and the configuration key an operator should look at.
type refusal struct {
	name      string
	permanent bool
	key       string // config key to fix, or ""
}

// v3Connack are the MQTT 3.1.1 CONNACK return codes (section 3.2.2.3).
// They are below 0x80, so they cannot be mistaken for v5 reason codes.
var v3Connack = map[byte]refusal{ //nolint:gochecknoglobals // constant table
	0x01: {"unacceptable protocol version", true, "broker.protocol_version"},
	0x02: {"identifier rejected", true, "broker.client_id_prefix"},
	0x03: {"server unavailable", false, ""},
	0x04: {"bad user name or password", true, "broker.username / broker.password"},
	0x05: {"not authorized", true, "broker.username / broker.password"},
}

// v5Reasons are the MQTT 5 failure reason codes (section 2.4) the gateway
// can receive in CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK or DISCONNECT.
var v5Reasons = map[byte]refusal{ //nolint:gochecknoglobals // constant table
	0x80: {"unspecified error", false, ""},
	0x81: {"malformed packet", true, "broker.protocol_version"},
	0x82: {"protocol error", true, "broker.protocol_version"},
	0x83: {"implementation specific error", false, ""},
	0x84: {"unsupported protocol version", true, "broker.protocol_version"},
	0x85: {"client identifier not valid", true, "broker.client_id_prefix"},
	0x86: {"bad user name or password", true, "broker.username / broker.password"},
	0x87: {"not authorized", true, "broker.username / broker.password"},
	0x88: {"server unavailable", false, ""},
	0x89: {"server busy", false, ""},
	0x8A: {"banned", true, ""},
	0x8B: {"server shutting down", false, ""},
	0x8C: {"bad authentication method", true, "broker.username / broker.password"},
	0x8D: {"keep alive timeout", false, "broker.keep_alive"},
	0x8E: {"session taken over", false, ""},
	0x8F: {"topic filter invalid", false, ""},
	0x90: {"topic name invalid", false, ""},
	0x91: {"packet identifier in use", false, ""},
	0x92: {"packet identifier not found", false, ""},
	0x93: {"receive maximum exceeded", false, "broker.receive_maximum"},
	0x94: {"topic alias invalid", false, ""},
	0x95: {"packet too large", false, ""},
	0x96: {"message rate too high", false, ""},
	0x97: {"quota exceeded", false, ""},
	0x98: {"administrative action", false, ""},
	0x99: {"payload format invalid", false, ""},
	0x9A: {"retain not supported", false, ""},
	0x9B: {"QoS not supported", false, "broker.max_qos"},
	0x9C: {"use another server", true, "broker.url"},
	0x9D: {"server moved", true, "broker.url"},
	0x9E: {"shared subscriptions not supported", false, ""},
	0x9F: {"connection rate exceeded", false, ""},
	0xA0: {"maximum connect time", false, ""},
	0xA1: {"subscription identifiers not supported", false, ""},
	0xA2: {"wildcard subscriptions not supported", false, ""},
}

func lookupRefusal(packet string, code byte) (refusal, bool) {
	if packet == "CONNACK" && code < 0x80 {
		r, ok := v3Connack[code]
		return r, ok
	}
	r, ok := v5Reasons[code]
	return r, ok
}

// ReasonCodeError is a refusal by the broker: a failure reason code
// (>= 0x80) in an MQTT 5 CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK or
// DISCONNECT, or a non-zero MQTT 3.1.1 CONNACK return code.
type ReasonCodeError struct {
	Packet string // "CONNACK", "PUBACK", ...
	Code   byte
	Reason string // the broker's reason string, if any
}

func (e *ReasonCodeError) Error() string {
	msg := fmt.Sprintf("upstream: broker refused with %s reason code 0x%02x", e.Packet, e.Code)
	if r, ok := lookupRefusal(e.Packet, e.Code); ok {
		msg = fmt.Sprintf("upstream: broker refused with %s 0x%02x (%s)", e.Packet, e.Code, r.name)
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Name is the specification's name of the code ("not authorized"), or "".
func (e *ReasonCodeError) Name() string {
	r, _ := lookupRefusal(e.Packet, e.Code)
	return r.name
}

// Permanent reports whether retrying cannot help (see gateway.IsPermanent).
// Only connection refusals are permanent: a refused PUBLISH or SUBSCRIBE
// says nothing about the next one.
func (e *ReasonCodeError) Permanent() bool {
	if e.Packet != "CONNACK" {
		return false
	}
	r, _ := lookupRefusal(e.Packet, e.Code)
	return r.permanent
}

// Key is the configuration key an operator should check, or "".
func (e *ReasonCodeError) Key() string {
	r, _ := lookupRefusal(e.Packet, e.Code)
	return r.key
}
