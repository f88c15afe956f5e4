// Package snpackettest holds named golden vectors for package snpacket, for
// reuse by the tests of snpacket, gateway and the black-box harness.
//
// Raw bytes are commented field by field. The vectors come from the spec's
// message layouts (section 5.4) and the worked bytes of the project's
// wire-format notes (A.6); each call returns fresh slices, so callers may
// modify them.
package snpackettest

import (
	"bytes"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Case is one named vector.
type Case struct {
	// Name identifies the vector, e.g. "PUBLISH/qos1".
	Name string
	// Raw is the datagram.
	Raw []byte
	// Packet is the decoded value. For Valid cases, Unmarshal(Raw) returns
	// exactly this value. For Malformed cases it is nil, except where
	// Unmarshal returns a packet along with the error (see
	// snpacket.ReturnsPacket).
	Packet snpacket.Packet
	// Err is the sentinel error that Unmarshal(Raw) wraps (Malformed only).
	Err error
	// Canonical, when non-nil, is the encoding AppendTo produces for Packet
	// because Raw is a legal but non-canonical form (e.g. the 3-octet
	// Length form of a short message). Use Encoded to get the expected
	// encoding of any Valid case.
	Canonical []byte
}

// Encoded returns the bytes that encoding c.Packet must produce: Canonical
// when set, otherwise Raw.
func (c Case) Encoded() []byte {
	if c.Canonical != nil {
		return c.Canonical
	}
	return c.Raw
}

// cat concatenates byte slices (for long vectors).
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// payload returns n octets 0x00, 0x01, ... (mod 256).
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// Payload300 is the payload of the "PUBLISH/300-byte payload" vector.
func Payload300() []byte { return payload(300) }
