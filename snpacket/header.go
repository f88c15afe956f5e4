package snpacket

import (
	"encoding/binary"
	"fmt"
)

// Header sizes and limits (spec 5.2.1).
const (
	// MaxLen is the largest message the 3-octet Length form can describe.
	MaxLen = 65535
	// shortHeaderLen is Length(1) + MsgType(1).
	shortHeaderLen = 2
	// longHeaderLen is 0x01 + Length(2) + MsgType(1).
	longHeaderLen = 4
	// longLengthMarker is the first octet of the 3-octet Length form.
	longLengthMarker = 0x01
)

// parseHeader reads the Length and MsgType of the message at the start of b.
// It returns the type, the header size (2 or 4) and the value of the Length
// field. It does not compare length with len(b): the caller does, because an
// encapsulation's Length counts only its own header.
//
// Errors: ErrTooShort for fewer than 2 octets or a truncated 3-octet form,
// ErrMalformed for a zero Length or a Length smaller than the header.
func parseHeader(b []byte) (t MsgType, hdrLen, length int, err error) {
	if len(b) < shortHeaderLen {
		return 0, 0, 0, fmt.Errorf("%w: %d octets, need at least %d", ErrTooShort, len(b), shortHeaderLen)
	}
	switch b[0] {
	case 0x00:
		return 0, 0, 0, fmt.Errorf("%w: zero Length field", ErrMalformed)
	case longLengthMarker:
		if len(b) < longHeaderLen {
			return 0, 0, 0, fmt.Errorf("%w: truncated 3-octet Length field (%d octets)", ErrTooShort, len(b))
		}
		length = int(binary.BigEndian.Uint16(b[1:3]))
		if length < longHeaderLen {
			return 0, 0, 0, fmt.Errorf("%w: 3-octet Length %d is smaller than the header", ErrMalformed, length)
		}
		return MsgType(b[3]), longHeaderLen, length, nil
	default:
		return MsgType(b[1]), shortHeaderLen, int(b[0]), nil
	}
}

// splitMessage checks the header of the plain (not encapsulated) message b
// against the datagram size, and returns the type and the variable part.
func splitMessage(b []byte) (MsgType, []byte, error) {
	t, hl, n, err := parseHeader(b)
	if err != nil {
		return 0, nil, err
	}
	if n != len(b) {
		return t, nil, fmt.Errorf("%w: Length field %d, datagram %d octets", ErrLengthMismatch, n, len(b))
	}
	return t, b[hl:], nil
}

// splitAs is splitMessage for a caller that expects type want.
func splitAs(b []byte, want MsgType) ([]byte, error) {
	t, body, err := splitMessage(b)
	if err != nil {
		return nil, err
	}
	if t != want {
		return nil, fmt.Errorf("%w: got %v, want %v", ErrMalformed, t, want)
	}
	return body, nil
}

// packetLen returns the total encoded size of a message whose variable part
// is bodyLen octets: the 1-octet Length form when the total is below 256,
// else the 3-octet form.
func packetLen(bodyLen int) int {
	if n := shortHeaderLen + bodyLen; n < 256 {
		return n
	}
	return longHeaderLen + bodyLen
}

// appendHeader appends the Length and MsgType for a message with a variable
// part of bodyLen octets. It returns ErrTooLarge, and b unchanged, when the
// total exceeds MaxLen.
func appendHeader(b []byte, t MsgType, bodyLen int) ([]byte, error) {
	n := packetLen(bodyLen)
	switch {
	case n > MaxLen:
		return b, fmt.Errorf("%w: %v of %d octets exceeds %d", ErrTooLarge, t, n, MaxLen)
	case n < 256:
		return append(b, byte(n), byte(t)), nil
	default:
		return append(b, longLengthMarker, byte(n>>8), byte(n), byte(t)), nil
	}
}

// checkFixed checks that a fixed-size variable part has exactly n octets.
func checkFixed(t MsgType, body []byte, n int) error {
	switch {
	case len(body) < n:
		return fmt.Errorf("%w: %v variable part %d octets, want %d", ErrTooShort, t, len(body), n)
	case len(body) > n:
		return fmt.Errorf("%w: %v has %d trailing octets", ErrMalformed, t, len(body)-n)
	}
	return nil
}

// checkMin checks that a variable part has at least n octets.
func checkMin(t MsgType, body []byte, n int) error {
	if len(body) < n {
		return fmt.Errorf("%w: %v variable part %d octets, need at least %d", ErrTooShort, t, len(body), n)
	}
	return nil
}

// checkQoS validates an encoder's QoS: 0..2, or -1 where allowed (PUBLISH).
func checkQoS(t MsgType, q QoS, minusOneOK bool) error {
	if q >= QoS0 && q <= QoS2 || q == QoSMinusOne && minusOneOK {
		return nil
	}
	return fmt.Errorf("%w: %v with %v", ErrMalformed, t, q)
}

// decodeQoS validates a decoded QoS (QoS -1 is legal only in PUBLISH).
func decodeQoS(t MsgType, f Flags) (QoS, error) {
	q := f.QoS()
	if q == QoSMinusOne {
		return 0, fmt.Errorf("%w: QoS -1 in %v", ErrMalformed, t)
	}
	return q, nil
}

// checkTopicIDType validates a TopicIdType, when encoding or decoding.
func checkTopicIDType(t MsgType, tt TopicIDType) error {
	switch {
	case tt <= TopicShort:
		return nil
	case tt == 3:
		return fmt.Errorf("%w in %v", ErrReservedTopicIDType, t)
	default:
		return fmt.Errorf("%w: %v with topic ID type %d", ErrMalformed, t, tt)
	}
}

// aliasOrNil returns b, or nil when it is empty, so that an absent variable
// field always decodes to nil.
func aliasOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// be16 reads a big-endian uint16; the caller has checked the length.
func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// app16 appends a big-endian uint16.
func app16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
