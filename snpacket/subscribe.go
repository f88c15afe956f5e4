package snpacket

import "fmt"

// Subscribe is a SUBSCRIBE message (spec 5.4.15):
//
//	Length 12 Flags MsgId(2) (TopicName... | TopicId(2))
//
// With TopicNormal the message carries TopicName (which may contain
// wildcards, and which the codec accepts empty); with TopicPredefined and
// TopicShort it carries TopicID (2 octets; a short name packs its 2
// characters, see ShortTopicID). Setting the field that the TopicIDType does
// not use is an encoding error. QoS must be 0..2.
type Subscribe struct {
	DUP         bool
	QoS         QoS
	TopicIDType TopicIDType
	MsgID       uint16
	TopicName   string
	TopicID     uint16
}

const subFixed = 3 // Flags + MsgId

// Type implements Packet.
func (p *Subscribe) Type() MsgType { return TypeSubscribe }

// Len implements Packet.
func (p *Subscribe) Len() int { return packetLen(subFixed + subTopicLen(p.TopicIDType, p.TopicName)) }

// Flags returns the flags octet p encodes to.
func (p *Subscribe) Flags() Flags {
	return MakeFlags(p.DUP, p.QoS, false, false, false, p.TopicIDType)
}

// AppendTo implements Packet.
func (p *Subscribe) AppendTo(b []byte) ([]byte, error) {
	if err := checkQoS(TypeSubscribe, p.QoS, false); err != nil {
		return b, err
	}
	if err := checkSubTopic(TypeSubscribe, p.TopicIDType, p.TopicName, p.TopicID); err != nil {
		return b, err
	}
	b, err := appendHeader(b, TypeSubscribe, subFixed+subTopicLen(p.TopicIDType, p.TopicName))
	if err != nil {
		return b, err
	}
	b = append(b, byte(p.Flags()))
	b = app16(b, p.MsgID)
	return appendSubTopic(b, p.TopicIDType, p.TopicName, p.TopicID), nil
}

func (p *Subscribe) decode(body []byte) error {
	if err := checkMin(TypeSubscribe, body, subFixed); err != nil {
		return err
	}
	f := Flags(body[0])
	// A reserved QoS or TopicIdType still yields the flags and MsgId, so
	// that the receiver can answer SUBACK; the topic is left empty.
	*p = Subscribe{DUP: f.DUP(), QoS: f.QoS(), TopicIDType: f.TopicIDType(), MsgID: be16(body[1:3])}
	if p.QoS == QoSMinusOne {
		return fmt.Errorf("%w: QoS -1 in %v", ErrReservedQoS, TypeSubscribe)
	}
	name, id, err := decodeSubTopic(TypeSubscribe, f.TopicIDType(), body[subFixed:])
	if err != nil {
		return err
	}
	p.TopicName, p.TopicID = name, id
	return nil
}

// Unsubscribe is an UNSUBSCRIBE message (spec 5.4.17):
//
//	Length 14 Flags MsgId(2) (TopicName... | TopicId(2))
//
// The topic follows the same rule as in Subscribe.
type Unsubscribe struct {
	TopicIDType TopicIDType
	MsgID       uint16
	TopicName   string
	TopicID     uint16
}

// Type implements Packet.
func (p *Unsubscribe) Type() MsgType { return TypeUnsubscribe }

// Len implements Packet.
func (p *Unsubscribe) Len() int {
	return packetLen(subFixed + subTopicLen(p.TopicIDType, p.TopicName))
}

// Flags returns the flags octet p encodes to.
func (p *Unsubscribe) Flags() Flags { return MakeFlags(false, 0, false, false, false, p.TopicIDType) }

// AppendTo implements Packet.
func (p *Unsubscribe) AppendTo(b []byte) ([]byte, error) {
	if err := checkSubTopic(TypeUnsubscribe, p.TopicIDType, p.TopicName, p.TopicID); err != nil {
		return b, err
	}
	b, err := appendHeader(b, TypeUnsubscribe, subFixed+subTopicLen(p.TopicIDType, p.TopicName))
	if err != nil {
		return b, err
	}
	b = append(b, byte(p.Flags()))
	b = app16(b, p.MsgID)
	return appendSubTopic(b, p.TopicIDType, p.TopicName, p.TopicID), nil
}

func (p *Unsubscribe) decode(body []byte) error {
	if err := checkMin(TypeUnsubscribe, body, subFixed); err != nil {
		return err
	}
	f := Flags(body[0])
	// As for Subscribe: a reserved TopicIdType still yields the MsgId.
	*p = Unsubscribe{TopicIDType: f.TopicIDType(), MsgID: be16(body[1:3])}
	name, id, err := decodeSubTopic(TypeUnsubscribe, f.TopicIDType(), body[subFixed:])
	if err != nil {
		return err
	}
	p.TopicName, p.TopicID = name, id
	return nil
}

// subTopicLen is the size of the topic part of SUBSCRIBE/UNSUBSCRIBE.
func subTopicLen(tt TopicIDType, name string) int {
	if tt == TopicNormal {
		return len(name)
	}
	return 2
}

// checkSubTopic validates the topic fields of SUBSCRIBE/UNSUBSCRIBE for
// encoding: a valid TopicIDType, and no value in the unused field.
func checkSubTopic(t MsgType, tt TopicIDType, name string, id uint16) error {
	if err := checkTopicIDType(t, tt); err != nil {
		return err
	}
	if tt == TopicNormal && id != 0 {
		return fmt.Errorf("%w: %v with a topic name must not set TopicID", ErrMalformed, t)
	}
	if tt != TopicNormal && name != "" {
		return fmt.Errorf("%w: %v with a %v topic ID must not set TopicName", ErrMalformed, t, tt)
	}
	return nil
}

func appendSubTopic(b []byte, tt TopicIDType, name string, id uint16) []byte {
	if tt == TopicNormal {
		return append(b, name...)
	}
	return app16(b, id)
}

// decodeSubTopic decodes the topic part of SUBSCRIBE/UNSUBSCRIBE.
func decodeSubTopic(t MsgType, tt TopicIDType, rest []byte) (string, uint16, error) {
	if err := checkTopicIDType(t, tt); err != nil {
		return "", 0, err
	}
	if tt == TopicNormal {
		return string(rest), 0, nil
	}
	if err := checkFixed(t, rest, 2); err != nil {
		return "", 0, err
	}
	return "", be16(rest), nil
}

// Suback is a SUBACK message (spec 5.4.16):
//
//	08 13 Flags TopicId(2) MsgId(2) ReturnCode
//
// QoS is the granted QoS (0..2).
type Suback struct {
	QoS        QoS
	TopicID    uint16
	MsgID      uint16
	ReturnCode ReturnCode
}

const subackLen = 6 // Flags + TopicId + MsgId + ReturnCode

// Type implements Packet.
func (p *Suback) Type() MsgType { return TypeSuback }

// Len implements Packet.
func (p *Suback) Len() int { return packetLen(subackLen) }

// Flags returns the flags octet p encodes to.
func (p *Suback) Flags() Flags { return MakeFlags(false, p.QoS, false, false, false, 0) }

// AppendTo implements Packet.
func (p *Suback) AppendTo(b []byte) ([]byte, error) {
	if err := checkQoS(TypeSuback, p.QoS, false); err != nil {
		return b, err
	}
	b, err := appendHeader(b, TypeSuback, subackLen)
	if err != nil {
		return b, err
	}
	b = append(b, byte(p.Flags()))
	b = app16(b, p.TopicID)
	b = app16(b, p.MsgID)
	return append(b, byte(p.ReturnCode)), nil
}

func (p *Suback) decode(body []byte) error {
	if err := checkFixed(TypeSuback, body, subackLen); err != nil {
		return err
	}
	q, err := decodeQoS(TypeSuback, Flags(body[0]))
	if err != nil {
		return err
	}
	*p = Suback{QoS: q, TopicID: be16(body[1:3]), MsgID: be16(body[3:5]), ReturnCode: ReturnCode(body[5])}
	return nil
}

// Unsuback is an UNSUBACK message (spec 5.4.18): 04 15 MsgId(2).
type Unsuback struct{ MsgID uint16 }

// Type implements Packet.
func (p *Unsuback) Type() MsgType { return TypeUnsuback }

// Len implements Packet.
func (p *Unsuback) Len() int { return packetLen(2) }

// AppendTo implements Packet.
func (p *Unsuback) AppendTo(b []byte) ([]byte, error) { return appendMsgID(b, TypeUnsuback, p.MsgID) }

func (p *Unsuback) decode(body []byte) (err error) {
	p.MsgID, err = decodeMsgID(TypeUnsuback, body)
	return err
}
