package snpacket

import "strconv"

// MsgType is the MsgType octet of the message header (spec 5.2.2).
type MsgType uint8

// Message types of MQTT-SN v1.2 (spec Table 3). Note that PUBCOMP (0x0E)
// comes before PUBREC (0x0F).
const (
	TypeAdvertise     MsgType = 0x00
	TypeSearchGW      MsgType = 0x01
	TypeGWInfo        MsgType = 0x02
	TypeAuth          MsgType = 0x03 // MQTT-SN v2.0 draft, reserved in v1.2: see Auth
	TypeConnect       MsgType = 0x04
	TypeConnack       MsgType = 0x05
	TypeWillTopicReq  MsgType = 0x06
	TypeWillTopic     MsgType = 0x07
	TypeWillMsgReq    MsgType = 0x08
	TypeWillMsg       MsgType = 0x09
	TypeRegister      MsgType = 0x0A
	TypeRegack        MsgType = 0x0B
	TypePublish       MsgType = 0x0C
	TypePuback        MsgType = 0x0D
	TypePubcomp       MsgType = 0x0E
	TypePubrec        MsgType = 0x0F
	TypePubrel        MsgType = 0x10
	TypeSubscribe     MsgType = 0x12
	TypeSuback        MsgType = 0x13
	TypeUnsubscribe   MsgType = 0x14
	TypeUnsuback      MsgType = 0x15
	TypePingReq       MsgType = 0x16
	TypePingResp      MsgType = 0x17
	TypeDisconnect    MsgType = 0x18
	TypeWillTopicUpd  MsgType = 0x1A
	TypeWillTopicResp MsgType = 0x1B
	TypeWillMsgUpd    MsgType = 0x1C
	TypeWillMsgResp   MsgType = 0x1D
	TypeEncapsulated  MsgType = 0xFE
)

// String returns the spec name of t ("PUBLISH", "CONNECT", ...), or
// "UNKNOWN(0x1e)" for a reserved value.
func (t MsgType) String() string {
	switch t {
	case TypeAdvertise:
		return "ADVERTISE"
	case TypeSearchGW:
		return "SEARCHGW"
	case TypeGWInfo:
		return "GWINFO"
	case TypeAuth:
		return "AUTH"
	case TypeConnect:
		return "CONNECT"
	case TypeConnack:
		return "CONNACK"
	case TypeWillTopicReq:
		return "WILLTOPICREQ"
	case TypeWillTopic:
		return "WILLTOPIC"
	case TypeWillMsgReq:
		return "WILLMSGREQ"
	case TypeWillMsg:
		return "WILLMSG"
	case TypeRegister:
		return "REGISTER"
	case TypeRegack:
		return "REGACK"
	case TypePublish:
		return "PUBLISH"
	case TypePuback:
		return "PUBACK"
	case TypePubcomp:
		return "PUBCOMP"
	case TypePubrec:
		return "PUBREC"
	case TypePubrel:
		return "PUBREL"
	case TypeSubscribe:
		return "SUBSCRIBE"
	case TypeSuback:
		return "SUBACK"
	case TypeUnsubscribe:
		return "UNSUBSCRIBE"
	case TypeUnsuback:
		return "UNSUBACK"
	case TypePingReq:
		return "PINGREQ"
	case TypePingResp:
		return "PINGRESP"
	case TypeDisconnect:
		return "DISCONNECT"
	case TypeWillTopicUpd:
		return "WILLTOPICUPD"
	case TypeWillTopicResp:
		return "WILLTOPICRESP"
	case TypeWillMsgUpd:
		return "WILLMSGUPD"
	case TypeWillMsgResp:
		return "WILLMSGRESP"
	case TypeEncapsulated:
		return "ENCAPSULATED"
	}
	return "UNKNOWN(" + hex8(uint8(t)) + ")"
}

// hex8 formats v as "0x" and two lower-case hex digits.
func hex8(v uint8) string {
	const digits = "0123456789abcdef"
	return string([]byte{'0', 'x', digits[v>>4], digits[v&0x0f]})
}

// ReturnCode is the ReturnCode octet of CONNACK, REGACK, PUBACK, SUBACK,
// WILLTOPICRESP and WILLMSGRESP (spec 5.3.10).
//
// ReturnCode implements error so that a rejection can travel as an error
// and still map straight back to the wire code (use errors.As). Values
// 0x04-0xFF are reserved by the spec; the codec carries them unchanged.
type ReturnCode uint8

// Return codes of spec Table 5.
const (
	Accepted               ReturnCode = 0x00
	RejectedCongestion     ReturnCode = 0x01
	RejectedInvalidTopicID ReturnCode = 0x02
	RejectedNotSupported   ReturnCode = 0x03
)

// String returns the spec meaning of rc, e.g. "rejected: invalid topic ID",
// or "reserved(0x80)" for a reserved value.
func (rc ReturnCode) String() string {
	switch rc {
	case Accepted:
		return "accepted"
	case RejectedCongestion:
		return "rejected: congestion"
	case RejectedInvalidTopicID:
		return "rejected: invalid topic ID"
	case RejectedNotSupported:
		return "rejected: not supported"
	}
	return "reserved(" + hex8(uint8(rc)) + ")"
}

// Error returns "snpacket: " followed by String(), e.g.
// "snpacket: rejected: invalid topic ID".
func (rc ReturnCode) Error() string { return "snpacket: " + rc.String() }

// QoS is a quality of service level. QoSMinusOne (wire 0b11) is legal only
// in PUBLISH.
type QoS int8

// QoS levels.
const (
	QoS0        QoS = 0
	QoS1        QoS = 1
	QoS2        QoS = 2
	QoSMinusOne QoS = -1
)

// String returns "QoS0", "QoS1", "QoS2", "QoS-1" or "QoS(n)" when invalid.
func (q QoS) String() string {
	if q >= QoSMinusOne && q <= QoS2 {
		return "QoS" + strconv.Itoa(int(q))
	}
	return "QoS(" + strconv.Itoa(int(q)) + ")"
}

// bits returns the 2-bit wire encoding of q (0b11 for QoS -1).
func (q QoS) bits() uint8 { return uint8(q) & 0x03 }

// TopicIDType is the TopicIdType of the flags octet (spec 5.3.4).
type TopicIDType uint8

// Topic ID types. The value 3 (0b11) is reserved.
const (
	TopicNormal     TopicIDType = 0 // a normal topic ID (or a topic name in SUBSCRIBE/UNSUBSCRIBE)
	TopicPredefined TopicIDType = 1 // a pre-defined topic ID
	TopicShort      TopicIDType = 2 // a short, 2-character topic name
)

// String returns "normal", "predefined", "short" or "reserved(n)".
func (tt TopicIDType) String() string {
	switch tt {
	case TopicNormal:
		return "normal"
	case TopicPredefined:
		return "predefined"
	case TopicShort:
		return "short"
	}
	return "reserved(" + strconv.Itoa(int(tt)) + ")"
}

// Flags is the raw flags octet (spec 5.3.4) with named accessors:
//
//	bit  7    6-5   4       3     2             1-0
//	     DUP  QoS   Retain  Will  CleanSession  TopicIdType
type Flags uint8

// Flag bits and masks.
const (
	flagDUP       = 0x80
	flagQoSShift  = 5
	flagQoSMask   = 0x60
	flagRetain    = 0x10
	flagWill      = 0x08
	flagClean     = 0x04
	flagTopicMask = 0x03
)

// DUP reports the DUP bit (7).
func (f Flags) DUP() bool { return f&flagDUP != 0 }

// QoS returns the QoS bits (6-5); 0b11 is QoSMinusOne.
func (f Flags) QoS() QoS {
	v := (f & flagQoSMask) >> flagQoSShift
	if v == 3 {
		return QoSMinusOne
	}
	return QoS(v)
}

// Retain reports the Retain bit (4).
func (f Flags) Retain() bool { return f&flagRetain != 0 }

// Will reports the Will bit (3).
func (f Flags) Will() bool { return f&flagWill != 0 }

// CleanSession reports the CleanSession bit (2).
func (f Flags) CleanSession() bool { return f&flagClean != 0 }

// TopicIDType returns the TopicIdType bits (1-0); 3 is reserved.
func (f Flags) TopicIDType() TopicIDType { return TopicIDType(f & flagTopicMask) }

// MakeFlags builds a flags octet. qos and tt are truncated to their 2 bits
// (QoSMinusOne becomes 0b11); the encoders validate ranges before calling it.
func MakeFlags(dup bool, qos QoS, retain, will, clean bool, tt TopicIDType) Flags {
	f := Flags(qos.bits()<<flagQoSShift) | Flags(tt)&flagTopicMask
	if dup {
		f |= flagDUP
	}
	if retain {
		f |= flagRetain
	}
	if will {
		f |= flagWill
	}
	if clean {
		f |= flagClean
	}
	return f
}

// ShortTopicID packs a 2-character short topic name into a TopicId
// ("ab" -> 0x6162). It reports false unless len(name) == 2 (octets).
func ShortTopicID(name string) (uint16, bool) {
	if len(name) != 2 {
		return 0, false
	}
	return uint16(name[0])<<8 | uint16(name[1]), true
}

// ShortTopicName unpacks a short topic name from a TopicId (0x6162 -> "ab").
func ShortTopicName(id uint16) string {
	return string([]byte{byte(id >> 8), byte(id)})
}
