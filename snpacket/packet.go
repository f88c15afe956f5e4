package snpacket

import (
	"errors"
	"fmt"
)

// Packet is one MQTT-SN message. All message types of this package
// implement it with pointer receivers.
type Packet interface {
	// Type returns the MsgType of the message.
	Type() MsgType
	// Len returns the encoded size in octets; it always equals
	// len(AppendTo(nil)) for a message that encodes without error.
	Len() int
	// AppendTo appends the full datagram to b: the 1-octet Length form when
	// the total is below 256 octets, else 0x01 and 2 octets. It validates
	// the fields first; on error it returns b unchanged. Appending into a
	// buffer with Len() spare capacity does not allocate.
	AppendTo(b []byte) ([]byte, error)
}

// decoder is a Packet that can decode its variable part. decode overwrites
// every field of the receiver.
type decoder interface {
	Packet
	decode(body []byte) error
}

// newDecoder returns a zero message of type t, or nil when t is reserved or
// unknown (or TypeEncapsulated, which decodes differently).
func newDecoder(t MsgType) decoder {
	switch t {
	case TypeAdvertise:
		return new(Advertise)
	case TypeSearchGW:
		return new(SearchGW)
	case TypeGWInfo:
		return new(GWInfo)
	case TypeAuth:
		return new(Auth)
	case TypeConnect:
		return new(Connect)
	case TypeConnack:
		return new(Connack)
	case TypeWillTopicReq:
		return new(WillTopicReq)
	case TypeWillTopic:
		return new(WillTopic)
	case TypeWillMsgReq:
		return new(WillMsgReq)
	case TypeWillMsg:
		return new(WillMsg)
	case TypeRegister:
		return new(Register)
	case TypeRegack:
		return new(Regack)
	case TypePublish:
		return new(Publish)
	case TypePuback:
		return new(Puback)
	case TypePubcomp:
		return new(Pubcomp)
	case TypePubrec:
		return new(Pubrec)
	case TypePubrel:
		return new(Pubrel)
	case TypeSubscribe:
		return new(Subscribe)
	case TypeSuback:
		return new(Suback)
	case TypeUnsubscribe:
		return new(Unsubscribe)
	case TypeUnsuback:
		return new(Unsuback)
	case TypePingReq:
		return new(PingReq)
	case TypePingResp:
		return new(PingResp)
	case TypeDisconnect:
		return new(Disconnect)
	case TypeWillTopicUpd:
		return new(WillTopicUpd)
	case TypeWillTopicResp:
		return new(WillTopicResp)
	case TypeWillMsgUpd:
		return new(WillMsgUpd)
	case TypeWillMsgResp:
		return new(WillMsgResp)
	case TypeEncapsulated:
		return nil // see unmarshalEncapsulated
	}
	return nil
}

// Unmarshal decodes one whole datagram and returns a pointer to the message
// type matching its MsgType (*Publish, *Connect, ..., *Encapsulated).
//
// Decoded []byte fields alias b; copy them before b is reused.
//
// On error the Packet is nil, with these exceptions (see ReturnsPacket),
// each possibly encapsulated: a CONNECT whose ProtocolId is not 0x01 is
// returned fully decoded together with an error wrapping ErrProtocolID; a
// PUBLISH, SUBSCRIBE or UNSUBSCRIBE with the reserved TopicIdType 0b11
// (ErrReservedTopicIDType) and a SUBSCRIBE with the reserved QoS bits 0b11
// (ErrReservedQoS) are returned with their flags and MsgId decoded (a
// PUBLISH in full; the topic of a SUBSCRIBE or UNSUBSCRIBE left empty), so
// that the receiver can answer them. Such a message does not encode.
//
// Unmarshal allocates the returned message. To decode a PUBLISH without
// allocating, use (*Publish).Unmarshal on a reused value.
func Unmarshal(b []byte) (Packet, error) {
	t, hl, n, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	if t == TypeEncapsulated {
		return unmarshalEncapsulated(b, hl, n)
	}
	return unmarshalPlain(b, t, hl, n)
}

// unmarshalPlain decodes a message that is not an encapsulation, whose
// header parseHeader has read.
func unmarshalPlain(b []byte, t MsgType, hl, n int) (Packet, error) {
	if n != len(b) {
		return nil, fmt.Errorf("%w: Length field %d, datagram %d octets", ErrLengthMismatch, n, len(b))
	}
	p := newDecoder(t)
	if p == nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownType, t)
	}
	if err := p.decode(b[hl:]); err != nil {
		if ReturnsPacket(err) {
			return p, err
		}
		return nil, err
	}
	return p, nil
}

// ReturnsPacket reports whether Unmarshal returns a decoded message along
// with err: ErrProtocolID, ErrReservedTopicIDType and ErrReservedQoS.
func ReturnsPacket(err error) bool {
	return errors.Is(err, ErrProtocolID) || errors.Is(err, ErrReservedTopicIDType) || errors.Is(err, ErrReservedQoS)
}

// Marshal returns the encoding of p in a new buffer of exactly p.Len()
// octets.
func Marshal(p Packet) ([]byte, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil Packet", ErrMalformed)
	}
	b, err := p.AppendTo(make([]byte, 0, p.Len()))
	if err != nil {
		return nil, err
	}
	return b, nil
}
