package snpacket

import "fmt"

// Encapsulation limits (spec 5.5).
const (
	// encapFixed is Le + MsgType(0xFE) + Ctrl.
	encapFixed = 3
	// MaxNodeIDLen is the longest Wireless Node Id a 1-octet Le can carry.
	MaxNodeIDLen = 255 - encapFixed
	// ctrlRadiusMask selects the broadcast radius in the Ctrl octet.
	ctrlRadiusMask = 0x03
)

// Encapsulated is a forwarder-encapsulated MQTT-SN message (spec 5.5):
//
//	Le FE Ctrl NodeId... <inner MQTT-SN message>
//
// Le is always 1 octet and counts only up to the end of NodeId
// (Le = 3 + len(NodeID)); the inner message keeps its own Length. The
// 3-octet Length form is rejected for an encapsulation.
//
// Radius is the broadcast radius (Ctrl bits 1-0, 0..3); the reserved Ctrl
// bits 7-2 are sent as zero and ignored when decoding. Message is the
// decoded inner message, which must not itself be an encapsulation.
type Encapsulated struct {
	Radius uint8
	// NodeID is the Wireless Node Id. When decoded it aliases the input
	// buffer (nil when empty): copy it before storing.
	NodeID []byte
	// Message is the inner message. Its decoded []byte fields alias the
	// input buffer too.
	Message Packet
}

// Type implements Packet.
func (p *Encapsulated) Type() MsgType { return TypeEncapsulated }

// Len implements Packet. A nil Message counts as zero octets.
func (p *Encapsulated) Len() int {
	n := encapFixed + len(p.NodeID)
	if p.Message != nil {
		n += p.Message.Len()
	}
	return n
}

// AppendTo implements Packet.
func (p *Encapsulated) AppendTo(b []byte) ([]byte, error) {
	switch {
	case p.Message == nil:
		return b, fmt.Errorf("%w: encapsulation without a message", ErrMalformed)
	case p.Message.Type() == TypeEncapsulated:
		return b, fmt.Errorf("%w: nested encapsulation", ErrMalformed)
	case p.Radius > ctrlRadiusMask:
		return b, fmt.Errorf("%w: encapsulation radius %d exceeds 3", ErrMalformed, p.Radius)
	case len(p.NodeID) > MaxNodeIDLen:
		return b, fmt.Errorf("%w: wireless node ID of %d octets exceeds %d", ErrTooLarge, len(p.NodeID), MaxNodeIDLen)
	}
	orig := len(b)
	b = append(b, byte(encapFixed+len(p.NodeID)), byte(TypeEncapsulated), p.Radius)
	b = append(b, p.NodeID...)
	b, err := p.Message.AppendTo(b)
	if err != nil {
		return b[:orig], err
	}
	return b, nil
}

// unmarshalEncapsulated decodes an encapsulation whose header parseHeader
// has read (hl is the header size, le the Length value).
func unmarshalEncapsulated(b []byte, hl, le int) (Packet, error) {
	switch {
	case hl != shortHeaderLen:
		return nil, fmt.Errorf("%w: encapsulation with a 3-octet Length", ErrMalformed)
	case le < encapFixed:
		return nil, fmt.Errorf("%w: encapsulation Length %d is below %d", ErrMalformed, le, encapFixed)
	case le > len(b):
		return nil, fmt.Errorf("%w: encapsulation Length %d, datagram %d octets", ErrLengthMismatch, le, len(b))
	case le == len(b):
		return nil, fmt.Errorf("%w: encapsulation without a message", ErrTooShort)
	}
	inner := b[le:]
	t, ihl, n, err := parseHeader(inner)
	if err != nil {
		return nil, fmt.Errorf("%w (in encapsulated message)", err)
	}
	if t == TypeEncapsulated {
		return nil, fmt.Errorf("%w: nested encapsulation", ErrMalformed)
	}
	msg, err := unmarshalPlain(inner, t, ihl, n)
	if err != nil && !ReturnsPacket(err) {
		return nil, fmt.Errorf("%w (in encapsulated message)", err)
	}
	p := &Encapsulated{
		Radius:  b[2] & ctrlRadiusMask,
		NodeID:  aliasOrNil(b[encapFixed:le]),
		Message: msg,
	}
	return p, err
}
