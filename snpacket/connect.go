package snpacket

import "fmt"

// ProtocolID is the only ProtocolId defined by MQTT-SN v1.2 (spec 5.3.8).
const ProtocolID = 0x01

// Connect is a CONNECT message (spec 5.4.4):
//
//	Length 04 Flags ProtocolId Duration(2) ClientId...
//
// Only the Will and CleanSession flags are used; other flag bits are ignored
// when decoding. The codec accepts any ClientID length (including empty);
// the spec's 1-23 characters rule is for the gateway to enforce.
type Connect struct {
	Will         bool
	CleanSession bool
	// ProtocolID is the decoded ProtocolId. When encoding, 0 means
	// ProtocolID (0x01); other values are written as given.
	ProtocolID uint8
	// Duration is the keep-alive timer in seconds.
	Duration uint16
	ClientID string
}

const connectFixed = 4 // Flags + ProtocolId + Duration

// Type implements Packet.
func (p *Connect) Type() MsgType { return TypeConnect }

// Len implements Packet.
func (p *Connect) Len() int { return packetLen(connectFixed + len(p.ClientID)) }

// Flags returns the flags octet p encodes to.
func (p *Connect) Flags() Flags { return MakeFlags(false, 0, false, p.Will, p.CleanSession, 0) }

// AppendTo implements Packet.
func (p *Connect) AppendTo(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypeConnect, connectFixed+len(p.ClientID))
	if err != nil {
		return b, err
	}
	pid := p.ProtocolID
	if pid == 0 {
		pid = ProtocolID
	}
	b = append(b, byte(p.Flags()), pid)
	b = app16(b, p.Duration)
	return append(b, p.ClientID...), nil
}

// decode decodes the variable part. A ProtocolId other than 0x01 is
// reported after every field has been decoded.
func (p *Connect) decode(body []byte) error {
	if err := checkMin(TypeConnect, body, connectFixed); err != nil {
		return err
	}
	f := Flags(body[0])
	*p = Connect{
		Will:         f.Will(),
		CleanSession: f.CleanSession(),
		ProtocolID:   body[1],
		Duration:     be16(body[2:4]),
		ClientID:     string(body[connectFixed:]),
	}
	if p.ProtocolID != ProtocolID {
		return fmt.Errorf("%w: 0x%02x", ErrProtocolID, p.ProtocolID)
	}
	return nil
}

// Connack is a CONNACK message (spec 5.4.5): 03 05 ReturnCode.
type Connack struct{ ReturnCode ReturnCode }

// Type implements Packet.
func (p *Connack) Type() MsgType { return TypeConnack }

// Len implements Packet.
func (p *Connack) Len() int { return packetLen(1) }

// AppendTo implements Packet.
func (p *Connack) AppendTo(b []byte) ([]byte, error) { return appendRC(b, TypeConnack, p.ReturnCode) }

func (p *Connack) decode(body []byte) (err error) {
	p.ReturnCode, err = decodeRC(TypeConnack, body)
	return err
}

// WillTopicReq is a WILLTOPICREQ message (spec 5.4.6): 02 06.
type WillTopicReq struct{}

// Type implements Packet.
func (p *WillTopicReq) Type() MsgType { return TypeWillTopicReq }

// Len implements Packet.
func (p *WillTopicReq) Len() int { return packetLen(0) }

// AppendTo implements Packet.
func (p *WillTopicReq) AppendTo(b []byte) ([]byte, error) {
	return appendHeader(b, TypeWillTopicReq, 0)
}

func (p *WillTopicReq) decode(body []byte) error { return checkFixed(TypeWillTopicReq, body, 0) }

// WillMsgReq is a WILLMSGREQ message (spec 5.4.8): 02 08.
type WillMsgReq struct{}

// Type implements Packet.
func (p *WillMsgReq) Type() MsgType { return TypeWillMsgReq }

// Len implements Packet.
func (p *WillMsgReq) Len() int { return packetLen(0) }

// AppendTo implements Packet.
func (p *WillMsgReq) AppendTo(b []byte) ([]byte, error) { return appendHeader(b, TypeWillMsgReq, 0) }

func (p *WillMsgReq) decode(body []byte) error { return checkFixed(TypeWillMsgReq, body, 0) }

// WillTopic is a WILLTOPIC message (spec 5.4.7):
//
//	Length 07 Flags WillTopic...
//
// A WillTopic of "" encodes the empty form "02 07" (delete the will; QoS
// and Retain are then not sent), and "02 07" decodes to the zero value.
// A received WILLTOPIC with Flags but no topic octets is also decoded as
// the empty form (its Flags are validated, then dropped). QoS must be 0..2.
type WillTopic struct {
	QoS       QoS
	Retain    bool
	WillTopic string
}

// Type implements Packet.
func (p *WillTopic) Type() MsgType { return TypeWillTopic }

// Len implements Packet.
func (p *WillTopic) Len() int { return packetLen(willTopicBodyLen(p.WillTopic)) }

// Flags returns the flags octet p encodes to (not sent in the empty form).
func (p *WillTopic) Flags() Flags { return MakeFlags(false, p.QoS, p.Retain, false, false, 0) }

// AppendTo implements Packet.
func (p *WillTopic) AppendTo(b []byte) ([]byte, error) {
	return appendWillTopic(b, TypeWillTopic, p.QoS, p.Retain, p.WillTopic)
}

func (p *WillTopic) decode(body []byte) error {
	q, r, s, err := decodeWillTopic(TypeWillTopic, body)
	if err != nil {
		return err
	}
	*p = WillTopic{QoS: q, Retain: r, WillTopic: s}
	return nil
}

// WillTopicUpd is a WILLTOPICUPD message (spec 5.4.22):
//
//	Length 1A Flags WillTopic...
//
// The same rules as for WillTopic apply: "" is the empty form "02 1A",
// which deletes both the Will topic and the Will message.
type WillTopicUpd struct {
	QoS       QoS
	Retain    bool
	WillTopic string
}

// Type implements Packet.
func (p *WillTopicUpd) Type() MsgType { return TypeWillTopicUpd }

// Len implements Packet.
func (p *WillTopicUpd) Len() int { return packetLen(willTopicBodyLen(p.WillTopic)) }

// Flags returns the flags octet p encodes to (not sent in the empty form).
func (p *WillTopicUpd) Flags() Flags { return MakeFlags(false, p.QoS, p.Retain, false, false, 0) }

// AppendTo implements Packet.
func (p *WillTopicUpd) AppendTo(b []byte) ([]byte, error) {
	return appendWillTopic(b, TypeWillTopicUpd, p.QoS, p.Retain, p.WillTopic)
}

func (p *WillTopicUpd) decode(body []byte) error {
	q, r, s, err := decodeWillTopic(TypeWillTopicUpd, body)
	if err != nil {
		return err
	}
	*p = WillTopicUpd{QoS: q, Retain: r, WillTopic: s}
	return nil
}

func willTopicBodyLen(topic string) int {
	if topic == "" {
		return 0
	}
	return 1 + len(topic)
}

func appendWillTopic(b []byte, t MsgType, q QoS, retain bool, topic string) ([]byte, error) {
	if err := checkQoS(t, q, false); err != nil {
		return b, err
	}
	b, err := appendHeader(b, t, willTopicBodyLen(topic))
	if err != nil || topic == "" {
		return b, err
	}
	b = append(b, byte(MakeFlags(false, q, retain, false, false, 0)))
	return append(b, topic...), nil
}

func decodeWillTopic(t MsgType, body []byte) (QoS, bool, string, error) {
	if len(body) == 0 {
		return 0, false, "", nil
	}
	f := Flags(body[0])
	q, err := decodeQoS(t, f)
	if err != nil {
		return 0, false, "", err
	}
	if len(body) == 1 {
		return 0, false, "", nil // Flags without a topic: the empty form
	}
	return q, f.Retain(), string(body[1:]), nil
}

// WillMsg is a WILLMSG message (spec 5.4.9): Length 09 WillMsg...
type WillMsg struct {
	// WillMsg aliases the input buffer when decoded (nil when empty): copy
	// it before storing.
	WillMsg []byte
}

// Type implements Packet.
func (p *WillMsg) Type() MsgType { return TypeWillMsg }

// Len implements Packet.
func (p *WillMsg) Len() int { return packetLen(len(p.WillMsg)) }

// AppendTo implements Packet.
func (p *WillMsg) AppendTo(b []byte) ([]byte, error) {
	return appendRaw(b, TypeWillMsg, p.WillMsg)
}

func (p *WillMsg) decode(body []byte) error {
	p.WillMsg = aliasOrNil(body)
	return nil
}

// WillMsgUpd is a WILLMSGUPD message (spec 5.4.23): Length 1C WillMsg...
type WillMsgUpd struct {
	// WillMsg aliases the input buffer when decoded (nil when empty): copy
	// it before storing.
	WillMsg []byte
}

// Type implements Packet.
func (p *WillMsgUpd) Type() MsgType { return TypeWillMsgUpd }

// Len implements Packet.
func (p *WillMsgUpd) Len() int { return packetLen(len(p.WillMsg)) }

// AppendTo implements Packet.
func (p *WillMsgUpd) AppendTo(b []byte) ([]byte, error) {
	return appendRaw(b, TypeWillMsgUpd, p.WillMsg)
}

func (p *WillMsgUpd) decode(body []byte) error {
	p.WillMsg = aliasOrNil(body)
	return nil
}

// WillTopicResp is a WILLTOPICRESP message (spec 5.4.24): 03 1B ReturnCode.
type WillTopicResp struct{ ReturnCode ReturnCode }

// Type implements Packet.
func (p *WillTopicResp) Type() MsgType { return TypeWillTopicResp }

// Len implements Packet.
func (p *WillTopicResp) Len() int { return packetLen(1) }

// AppendTo implements Packet.
func (p *WillTopicResp) AppendTo(b []byte) ([]byte, error) {
	return appendRC(b, TypeWillTopicResp, p.ReturnCode)
}

func (p *WillTopicResp) decode(body []byte) (err error) {
	p.ReturnCode, err = decodeRC(TypeWillTopicResp, body)
	return err
}

// WillMsgResp is a WILLMSGRESP message (spec 5.4.25): 03 1D ReturnCode.
type WillMsgResp struct{ ReturnCode ReturnCode }

// Type implements Packet.
func (p *WillMsgResp) Type() MsgType { return TypeWillMsgResp }

// Len implements Packet.
func (p *WillMsgResp) Len() int { return packetLen(1) }

// AppendTo implements Packet.
func (p *WillMsgResp) AppendTo(b []byte) ([]byte, error) {
	return appendRC(b, TypeWillMsgResp, p.ReturnCode)
}

func (p *WillMsgResp) decode(body []byte) (err error) {
	p.ReturnCode, err = decodeRC(TypeWillMsgResp, body)
	return err
}

// appendRC encodes a message whose variable part is only a ReturnCode.
func appendRC(b []byte, t MsgType, rc ReturnCode) ([]byte, error) {
	b, err := appendHeader(b, t, 1)
	if err != nil {
		return b, err
	}
	return append(b, byte(rc)), nil
}

// decodeRC decodes a variable part that is only a ReturnCode.
func decodeRC(t MsgType, body []byte) (ReturnCode, error) {
	if err := checkFixed(t, body, 1); err != nil {
		return 0, err
	}
	return ReturnCode(body[0]), nil
}

// appendRaw encodes a message whose variable part is opaque octets.
func appendRaw(b []byte, t MsgType, data []byte) ([]byte, error) {
	b, err := appendHeader(b, t, len(data))
	if err != nil {
		return b, err
	}
	return append(b, data...), nil
}
