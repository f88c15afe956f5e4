package snpacket

// Register is a REGISTER message (spec 5.4.10):
//
//	Length 0A TopicId(2) MsgId(2) TopicName...
//
// TopicID is 0x0000 when sent by a client. The codec accepts an empty
// TopicName; the gateway decides whether it is acceptable.
type Register struct {
	TopicID   uint16
	MsgID     uint16
	TopicName string
}

const registerFixed = 4 // TopicId + MsgId

// Type implements Packet.
func (p *Register) Type() MsgType { return TypeRegister }

// Len implements Packet.
func (p *Register) Len() int { return packetLen(registerFixed + len(p.TopicName)) }

// AppendTo implements Packet.
func (p *Register) AppendTo(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypeRegister, registerFixed+len(p.TopicName))
	if err != nil {
		return b, err
	}
	b = app16(b, p.TopicID)
	b = app16(b, p.MsgID)
	return append(b, p.TopicName...), nil
}

// Unmarshal decodes the whole datagram b, which must be a REGISTER, into p.
// It allocates only the TopicName string.
func (p *Register) Unmarshal(b []byte) error {
	body, err := splitAs(b, TypeRegister)
	if err != nil {
		return err
	}
	return p.decode(body)
}

func (p *Register) decode(body []byte) error {
	if err := checkMin(TypeRegister, body, registerFixed); err != nil {
		return err
	}
	*p = Register{
		TopicID:   be16(body[0:2]),
		MsgID:     be16(body[2:4]),
		TopicName: string(body[registerFixed:]),
	}
	return nil
}

// Regack is a REGACK message (spec 5.4.11):
//
//	07 0B TopicId(2) MsgId(2) ReturnCode
type Regack struct {
	TopicID    uint16
	MsgID      uint16
	ReturnCode ReturnCode
}

// Type implements Packet.
func (p *Regack) Type() MsgType { return TypeRegack }

// Len implements Packet.
func (p *Regack) Len() int { return packetLen(ackLen) }

// AppendTo implements Packet.
func (p *Regack) AppendTo(b []byte) ([]byte, error) {
	return appendAck(b, TypeRegack, p.TopicID, p.MsgID, p.ReturnCode)
}

// Unmarshal decodes the whole datagram b, which must be a REGACK, into p.
// It does not allocate on success.
func (p *Regack) Unmarshal(b []byte) error {
	body, err := splitAs(b, TypeRegack)
	if err != nil {
		return err
	}
	return p.decode(body)
}

func (p *Regack) decode(body []byte) error {
	tid, mid, rc, err := decodeAck(TypeRegack, body)
	if err != nil {
		return err
	}
	*p = Regack{TopicID: tid, MsgID: mid, ReturnCode: rc}
	return nil
}
