// Package snpacket encodes and decodes MQTT-SN v1.2 messages (the
// "MQTT For Sensor Networks Protocol Specification", section 5), including
// the forwarder encapsulation of section 5.5.
//
// It is a pure codec: it imports only the standard library, opens no
// sockets, starts no goroutines and never logs.
//
// # Messages
//
// Each message type is a plain struct (Connect, Register, Publish, ...)
// whose pointer implements Packet: Type, Len and AppendTo. Unmarshal decodes
// one whole datagram and returns the matching pointer type; Marshal is a thin
// wrapper around AppendTo. Len always equals the number of octets AppendTo
// appends.
//
// Both forms of the Length field are decoded: one octet, or 0x01 followed by
// a 2-octet big-endian length (legal for short messages too). The encoder
// uses the 1-octet form when the total is below 256 octets and the 3-octet
// form otherwise, up to 65535 octets (ErrTooLarge beyond). Re-encoding a
// decoded message may therefore differ in bytes from the input while
// decoding to the same value.
//
// # Aliasing
//
// Decoded []byte fields (Publish.Data, WillMsg.WillMsg, WillMsgUpd.WillMsg,
// GWInfo.GatewayAddr, Encapsulated.NodeID) alias the input buffer and are
// nil when empty. Copy them (bytes.Clone) before the buffer is reused or the
// value is stored. String fields are copies.
//
// # Allocation
//
// (*Publish).Unmarshal, (*Puback).Unmarshal and (*Regack).Unmarshal decode
// into a caller-owned value without allocating; this is the hot path for
// PUBLISH and is pinned by a test. The package-level Unmarshal allocates the
// returned message (one allocation for a PUBLISH). (*Register).Unmarshal
// allocates only the TopicName string. AppendTo into a buffer
// with Len() spare capacity never allocates.
//
// # Validation and errors
//
// Decoding is strict: lengths must match exactly, fixed-size messages
// must not carry trailing octets, QoS -1 is accepted only in PUBLISH,
// TopicIdType 0b11 is rejected. Flag bits that a message does not use, the
// reserved Ctrl bits of an encapsulation and reserved ReturnCode values are
// carried or ignored, not rejected; so are semantic rules that belong to the
// gateway (ClientId length, reserved topic IDs 0x0000/0xFFFF, MsgId of QoS 0).
// Decoding never panics and never allocates more than the input size.
//
// Every error wraps one of the sentinel errors (ErrTooShort,
// ErrLengthMismatch, ErrUnknownType, ErrReservedTopicIDType, ErrReservedQoS,
// ErrProtocolID, ErrMalformed, ErrTooLarge); test with errors.Is. A CONNECT
// with a ProtocolId other than 0x01 is returned decoded together with an
// error wrapping ErrProtocolID so that the gateway can answer CONNACK
// "rejected: not supported"; likewise a PUBLISH, SUBSCRIBE or UNSUBSCRIBE
// with a reserved TopicIdType, or a SUBSCRIBE with reserved QoS bits, comes
// back with its MsgId so that it can be answered (ReturnsPacket). ReturnCode implements error so a rejection maps straight
// back to its wire code.
//
// The importable package snpackettest holds the golden vectors used by the
// tests of this package, for reuse by other packages' tests.
package snpacket
