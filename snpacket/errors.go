package snpacket

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (with fmt.Errorf and %w) so callers can test with errors.Is. Their
// messages, and so the messages of all wrapping errors, start with
// "snpacket: ".
//
// These are the only package-level variables of the package.
var (
	// ErrTooShort reports a datagram, or the fields of a message, shorter
	// than its type requires: an input of 0 or 1 octet, a truncated 3-octet
	// Length, a fixed message whose variable part is too short, or an
	// encapsulation without an inner message.
	ErrTooShort = errors.New("snpacket: message too short")

	// ErrLengthMismatch reports a Length field that disagrees with the size
	// of the datagram (for an encapsulation: a Le beyond the datagram).
	ErrLengthMismatch = errors.New("snpacket: length field does not match datagram size")

	// ErrUnknownType reports a reserved or unknown MsgType.
	ErrUnknownType = errors.New("snpacket: unknown message type")

	// ErrReservedTopicIDType reports the reserved TopicIdType 0b11, when
	// decoding or when encoding. When decoding a PUBLISH, SUBSCRIBE or
	// UNSUBSCRIBE, Unmarshal returns the message together with the error
	// (see Unmarshal) so that the receiver can answer its MsgId.
	ErrReservedTopicIDType = errors.New("snpacket: reserved topic ID type")

	// ErrReservedQoS reports the QoS bits 0b11 (QoS -1) in a SUBSCRIBE,
	// where they are reserved. Unmarshal returns the decoded *Subscribe
	// together with the error, as for ErrReservedTopicIDType.
	ErrReservedQoS = errors.New("snpacket: reserved QoS")

	// ErrProtocolID reports a CONNECT whose ProtocolId is not 0x01.
	// Unmarshal then returns the decoded *Connect (or the *Encapsulated
	// carrying it) together with the error so that the gateway can answer
	// with CONNACK "rejected: not supported".
	ErrProtocolID = errors.New("snpacket: unsupported protocol ID")

	// ErrMalformed reports any other invalid input: a zero Length, a Length
	// smaller than the header, QoS -1 where it is not allowed, trailing
	// octets after a fixed-size message, a nested encapsulation, and, when
	// encoding, field values out of range.
	ErrMalformed = errors.New("snpacket: malformed message")

	// ErrTooLarge reports, when encoding, a message that would exceed
	// 65535 octets (or an encapsulation header beyond 255 octets).
	ErrTooLarge = errors.New("snpacket: message too large")
)
