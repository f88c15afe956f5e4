package snpacket

// Publish is a PUBLISH message (spec 5.4.12):
//
//	Length 0C Flags TopicId(2) MsgId(2) Data...
//
// TopicID holds a normal or pre-defined topic ID, or for TopicShort the two
// characters of the short topic name (see ShortTopicID). MsgID is 0 for QoS 0
// and -1 by convention; the codec does not enforce it. QoS may be
// QoSMinusOne.
type Publish struct {
	DUP         bool
	QoS         QoS
	Retain      bool
	TopicIDType TopicIDType
	TopicID     uint16
	MsgID       uint16
	// Data is the application payload. When decoded it aliases the input
	// buffer (nil when empty): copy it before the buffer is reused.
	Data []byte
}

const publishFixed = 5 // Flags + TopicId + MsgId

// Type implements Packet.
func (p *Publish) Type() MsgType { return TypePublish }

// Len implements Packet.
func (p *Publish) Len() int { return packetLen(publishFixed + len(p.Data)) }

// Flags returns the flags octet p encodes to.
func (p *Publish) Flags() Flags {
	return MakeFlags(p.DUP, p.QoS, p.Retain, false, false, p.TopicIDType)
}

// AppendTo implements Packet.
func (p *Publish) AppendTo(b []byte) ([]byte, error) {
	if err := checkQoS(TypePublish, p.QoS, true); err != nil {
		return b, err
	}
	if err := checkTopicIDType(TypePublish, p.TopicIDType); err != nil {
		return b, err
	}
	b, err := appendHeader(b, TypePublish, publishFixed+len(p.Data))
	if err != nil {
		return b, err
	}
	b = append(b, byte(p.Flags()))
	b = app16(b, p.TopicID)
	b = app16(b, p.MsgID)
	return append(b, p.Data...), nil
}

// Unmarshal decodes the whole datagram b, which must be a PUBLISH, into p,
// overwriting every field. p.Data aliases b. This path does not allocate on
// success; prefer it to the package-level Unmarshal on the hot path.
func (p *Publish) Unmarshal(b []byte) error {
	body, err := splitAs(b, TypePublish)
	if err != nil {
		return err
	}
	return p.decode(body)
}

func (p *Publish) decode(body []byte) error {
	if err := checkMin(TypePublish, body, publishFixed); err != nil {
		return err
	}
	f := Flags(body[0])
	*p = Publish{
		DUP:         f.DUP(),
		QoS:         f.QoS(),
		Retain:      f.Retain(),
		TopicIDType: f.TopicIDType(),
		TopicID:     be16(body[1:3]),
		MsgID:       be16(body[3:5]),
		Data:        aliasOrNil(body[publishFixed:]),
	}
	// Decoded in full first: with a reserved TopicIdType the receiver
	// still answers the MsgId.
	return checkTopicIDType(TypePublish, f.TopicIDType())
}

// Puback is a PUBACK message (spec 5.4.13):
//
//	07 0D TopicId(2) MsgId(2) ReturnCode
type Puback struct {
	TopicID    uint16
	MsgID      uint16
	ReturnCode ReturnCode
}

// Type implements Packet.
func (p *Puback) Type() MsgType { return TypePuback }

// Len implements Packet.
func (p *Puback) Len() int { return packetLen(ackLen) }

// AppendTo implements Packet.
func (p *Puback) AppendTo(b []byte) ([]byte, error) {
	return appendAck(b, TypePuback, p.TopicID, p.MsgID, p.ReturnCode)
}

// Unmarshal decodes the whole datagram b, which must be a PUBACK, into p.
// It does not allocate on success.
func (p *Puback) Unmarshal(b []byte) error {
	body, err := splitAs(b, TypePuback)
	if err != nil {
		return err
	}
	return p.decode(body)
}

func (p *Puback) decode(body []byte) error {
	tid, mid, rc, err := decodeAck(TypePuback, body)
	if err != nil {
		return err
	}
	*p = Puback{TopicID: tid, MsgID: mid, ReturnCode: rc}
	return nil
}

// ackLen is the variable part of REGACK and PUBACK:
// TopicId(2) MsgId(2) ReturnCode.
const ackLen = 5

func appendAck(b []byte, t MsgType, topicID, msgID uint16, rc ReturnCode) ([]byte, error) {
	b, err := appendHeader(b, t, ackLen)
	if err != nil {
		return b, err
	}
	b = app16(b, topicID)
	b = app16(b, msgID)
	return append(b, byte(rc)), nil
}

func decodeAck(t MsgType, body []byte) (topicID, msgID uint16, rc ReturnCode, err error) {
	if err := checkFixed(t, body, ackLen); err != nil {
		return 0, 0, 0, err
	}
	return be16(body[0:2]), be16(body[2:4]), ReturnCode(body[4]), nil
}

// Pubrec is a PUBREC message (spec 5.4.14): 04 0F MsgId(2).
type Pubrec struct{ MsgID uint16 }

// Pubrel is a PUBREL message (spec 5.4.14): 04 10 MsgId(2).
type Pubrel struct{ MsgID uint16 }

// Pubcomp is a PUBCOMP message (spec 5.4.14): 04 0E MsgId(2).
type Pubcomp struct{ MsgID uint16 }

// Type implements Packet.
func (p *Pubrec) Type() MsgType { return TypePubrec }

// Len implements Packet.
func (p *Pubrec) Len() int { return packetLen(2) }

// AppendTo implements Packet.
func (p *Pubrec) AppendTo(b []byte) ([]byte, error) { return appendMsgID(b, TypePubrec, p.MsgID) }

func (p *Pubrec) decode(body []byte) (err error) {
	p.MsgID, err = decodeMsgID(TypePubrec, body)
	return err
}

// Type implements Packet.
func (p *Pubrel) Type() MsgType { return TypePubrel }

// Len implements Packet.
func (p *Pubrel) Len() int { return packetLen(2) }

// AppendTo implements Packet.
func (p *Pubrel) AppendTo(b []byte) ([]byte, error) { return appendMsgID(b, TypePubrel, p.MsgID) }

func (p *Pubrel) decode(body []byte) (err error) {
	p.MsgID, err = decodeMsgID(TypePubrel, body)
	return err
}

// Type implements Packet.
func (p *Pubcomp) Type() MsgType { return TypePubcomp }

// Len implements Packet.
func (p *Pubcomp) Len() int { return packetLen(2) }

// AppendTo implements Packet.
func (p *Pubcomp) AppendTo(b []byte) ([]byte, error) { return appendMsgID(b, TypePubcomp, p.MsgID) }

func (p *Pubcomp) decode(body []byte) (err error) {
	p.MsgID, err = decodeMsgID(TypePubcomp, body)
	return err
}

// appendMsgID encodes a message whose variable part is only MsgId(2).
func appendMsgID(b []byte, t MsgType, msgID uint16) ([]byte, error) {
	b, err := appendHeader(b, t, 2)
	if err != nil {
		return b, err
	}
	return app16(b, msgID), nil
}

// decodeMsgID decodes a variable part that is only MsgId(2).
func decodeMsgID(t MsgType, body []byte) (uint16, error) {
	if err := checkFixed(t, body, 2); err != nil {
		return 0, err
	}
	return be16(body), nil
}
