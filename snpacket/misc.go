package snpacket

import "fmt"

// Advertise is an ADVERTISE message (spec 5.4.1): 05 00 GwId Duration(2).
// Duration is the interval in seconds until the next ADVERTISE.
type Advertise struct {
	GatewayID uint8
	Duration  uint16
}

// Type implements Packet.
func (p *Advertise) Type() MsgType { return TypeAdvertise }

// Len implements Packet.
func (p *Advertise) Len() int { return packetLen(3) }

// AppendTo implements Packet.
func (p *Advertise) AppendTo(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypeAdvertise, 3)
	if err != nil {
		return b, err
	}
	return app16(append(b, p.GatewayID), p.Duration), nil
}

func (p *Advertise) decode(body []byte) error {
	if err := checkFixed(TypeAdvertise, body, 3); err != nil {
		return err
	}
	*p = Advertise{GatewayID: body[0], Duration: be16(body[1:3])}
	return nil
}

// SearchGW is a SEARCHGW message (spec 5.4.2): 03 01 Radius.
// Radius 0 means "broadcast to all nodes".
type SearchGW struct{ Radius uint8 }

// Type implements Packet.
func (p *SearchGW) Type() MsgType { return TypeSearchGW }

// Len implements Packet.
func (p *SearchGW) Len() int { return packetLen(1) }

// AppendTo implements Packet.
func (p *SearchGW) AppendTo(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypeSearchGW, 1)
	if err != nil {
		return b, err
	}
	return append(b, p.Radius), nil
}

func (p *SearchGW) decode(body []byte) error {
	if err := checkFixed(TypeSearchGW, body, 1); err != nil {
		return err
	}
	p.Radius = body[0]
	return nil
}

// GWInfo is a GWINFO message (spec 5.4.3): Length 02 GwId [GwAdd...].
type GWInfo struct {
	GatewayID uint8
	// GatewayAddr is empty when a gateway sends the message and holds the
	// gateway's address when a client answers on its behalf. When decoded
	// it aliases the input buffer (nil when absent): copy it before storing.
	GatewayAddr []byte
}

// Type implements Packet.
func (p *GWInfo) Type() MsgType { return TypeGWInfo }

// Len implements Packet.
func (p *GWInfo) Len() int { return packetLen(1 + len(p.GatewayAddr)) }

// AppendTo implements Packet.
func (p *GWInfo) AppendTo(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypeGWInfo, 1+len(p.GatewayAddr))
	if err != nil {
		return b, err
	}
	return append(append(b, p.GatewayID), p.GatewayAddr...), nil
}

func (p *GWInfo) decode(body []byte) error {
	if err := checkMin(TypeGWInfo, body, 1); err != nil {
		return err
	}
	*p = GWInfo{GatewayID: body[0], GatewayAddr: aliasOrNil(body[1:])}
	return nil
}

// PingReq is a PINGREQ message (spec 5.4.19): Length 16 [ClientId...].
// ClientID is "" (no ClientId field) except when a sleeping client wakes up.
type PingReq struct{ ClientID string }

// Type implements Packet.
func (p *PingReq) Type() MsgType { return TypePingReq }

// Len implements Packet.
func (p *PingReq) Len() int { return packetLen(len(p.ClientID)) }

// AppendTo implements Packet.
func (p *PingReq) AppendTo(b []byte) ([]byte, error) {
	b, err := appendHeader(b, TypePingReq, len(p.ClientID))
	if err != nil {
		return b, err
	}
	return append(b, p.ClientID...), nil
}

func (p *PingReq) decode(body []byte) error {
	p.ClientID = string(body)
	return nil
}

// PingResp is a PINGRESP message (spec 5.4.20): 02 17.
type PingResp struct{}

// Type implements Packet.
func (p *PingResp) Type() MsgType { return TypePingResp }

// Len implements Packet.
func (p *PingResp) Len() int { return packetLen(0) }

// AppendTo implements Packet.
func (p *PingResp) AppendTo(b []byte) ([]byte, error) { return appendHeader(b, TypePingResp, 0) }

func (p *PingResp) decode(body []byte) error { return checkFixed(TypePingResp, body, 0) }

// Disconnect is a DISCONNECT message (spec 5.4.21): 02 18, or 04 18
// Duration(2) when HasDuration is set (a client going to sleep for Duration
// seconds). Encoding a non-zero Duration without HasDuration is an error.
type Disconnect struct {
	Duration    uint16
	HasDuration bool
}

// Type implements Packet.
func (p *Disconnect) Type() MsgType { return TypeDisconnect }

// Len implements Packet.
func (p *Disconnect) Len() int {
	if p.HasDuration {
		return packetLen(2)
	}
	return packetLen(0)
}

// AppendTo implements Packet.
func (p *Disconnect) AppendTo(b []byte) ([]byte, error) {
	if !p.HasDuration {
		if p.Duration != 0 {
			return b, fmt.Errorf("%w: DISCONNECT Duration %d without HasDuration", ErrMalformed, p.Duration)
		}
		return appendHeader(b, TypeDisconnect, 0)
	}
	b, err := appendHeader(b, TypeDisconnect, 2)
	if err != nil {
		return b, err
	}
	return app16(b, p.Duration), nil
}

func (p *Disconnect) decode(body []byte) error {
	switch len(body) {
	case 0:
		*p = Disconnect{}
	case 1:
		return fmt.Errorf("%w: DISCONNECT with a 1-octet Duration", ErrTooShort)
	case 2:
		*p = Disconnect{Duration: be16(body), HasDuration: true}
	default:
		return fmt.Errorf("%w: DISCONNECT has %d trailing octets", ErrMalformed, len(body)-2)
	}
	return nil
}
