package snpackettest

import (
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Malformed returns datagrams that Unmarshal rejects with an error wrapping
// Err. Packet is nil except where Unmarshal returns the decoded message
// along with the error (ErrProtocolID, ErrReservedTopicIDType in PUBLISH,
// SUBSCRIBE and UNSUBSCRIBE, ErrReservedQoS in SUBSCRIBE; see
// snpacket.ReturnsPacket).
func Malformed() []Case {
	return []Case{
		// ---- header ----
		{Name: "header/empty", Raw: []byte{}, Err: sn.ErrTooShort},
		{Name: "header/one octet", Raw: []byte{
			0x02, // Length, no MsgType
		}, Err: sn.ErrTooShort},
		{Name: "header/zero length", Raw: []byte{
			0x00, // Length 0: never valid
			0x16, // MsgType PINGREQ
		}, Err: sn.ErrMalformed},
		{Name: "header/truncated 3-octet length", Raw: []byte{
			0x01, 0x00, // 3-octet Length form, second length octet missing
		}, Err: sn.ErrTooShort},
		{Name: "header/3-octet length without type", Raw: []byte{
			0x01, 0x00, 0x04, // 3-octet Length 4, MsgType missing
		}, Err: sn.ErrTooShort},
		{Name: "header/3-octet length below header", Raw: []byte{
			0x01, 0x00, 0x03, // 3-octet Length 3 < 4
			0x16, // MsgType PINGREQ
		}, Err: sn.ErrMalformed},
		{Name: "header/3-octet length zero", Raw: []byte{
			0x01, 0x00, 0x00, // 3-octet Length 0
			0x17, // MsgType PINGRESP
		}, Err: sn.ErrMalformed},
		{Name: "header/length larger than datagram", Raw: []byte{
			0x09,       // Length 9
			0x0C,       // MsgType PUBLISH
			0x20,       // Flags
			0x00, 0x01, // TopicId
			0x00, 0x02, // MsgId
			0x68, // Data: one octet missing
		}, Err: sn.ErrLengthMismatch},
		{Name: "header/length smaller than datagram", Raw: []byte{
			0x02, // Length 2
			0x16, // MsgType PINGREQ
			0x63, // extra octet beyond Length
		}, Err: sn.ErrLengthMismatch},
		{Name: "header/3-octet length mismatch", Raw: []byte{
			0x01, 0x00, 0x09, // 3-octet Length 9
			0x04,             // MsgType CONNECT
			0x04, 0x01, 0x00, // Flags, ProtocolId, Duration (1 of 2 octets): datagram is 7
		}, Err: sn.ErrLengthMismatch},

		// ---- unknown types ----
		{Name: "AUTH/no reason code", Raw: []byte{0x02, 0x03}, Err: sn.ErrTooShort}, // Length, MsgType AUTH (0x03, reserved in v1.2)
		{Name: "AUTH/no method length", Raw: []byte{
			0x03, 0x03, // Length, MsgType AUTH
			0x00, // Reason Code; Auth Method Length missing
		}, Err: sn.ErrTooShort},
		{Name: "AUTH/method beyond datagram", Raw: []byte{
			0x07, 0x03, // Length, MsgType AUTH
			0x00,             // Reason Code
			0x05,             // Auth Method Length 5
			0x50, 0x4C, 0x41, // "PLA": 2 octets missing
		}, Err: sn.ErrTooShort},
		{Name: "type/reserved 0x11", Raw: []byte{0x02, 0x11}, Err: sn.ErrUnknownType},                 // Length, MsgType 0x11
		{Name: "type/reserved 0x19", Raw: []byte{0x02, 0x19}, Err: sn.ErrUnknownType},                 // Length, MsgType 0x19
		{Name: "type/reserved 0x1E", Raw: []byte{0x02, 0x1E}, Err: sn.ErrUnknownType},                 // Length, MsgType 0x1E
		{Name: "type/reserved 0xFD", Raw: []byte{0x02, 0xFD}, Err: sn.ErrUnknownType},                 // Length, MsgType 0xFD
		{Name: "type/reserved 0xFF", Raw: []byte{0x02, 0xFF}, Err: sn.ErrUnknownType},                 // Length, MsgType 0xFF
		{Name: "type/reserved 0x11 with body", Raw: []byte{0x03, 0x11, 0x00}, Err: sn.ErrUnknownType}, // Length, MsgType 0x11, one octet

		// ---- fields too short for the type ----
		{Name: "ADVERTISE/too short", Raw: []byte{
			0x04, 0x00, // Length, ADVERTISE
			0x01, 0x00, // GwId, Duration (1 of 2 octets)
		}, Err: sn.ErrTooShort},
		{Name: "SEARCHGW/no radius", Raw: []byte{0x02, 0x01}, Err: sn.ErrTooShort},   // Length, SEARCHGW
		{Name: "GWINFO/no gateway ID", Raw: []byte{0x02, 0x02}, Err: sn.ErrTooShort}, // Length, GWINFO
		{Name: "CONNECT/too short", Raw: []byte{
			0x05, 0x04, // Length, CONNECT
			0x04, 0x01, 0x00, // Flags, ProtocolId, Duration (1 of 2 octets)
		}, Err: sn.ErrTooShort},
		{Name: "CONNACK/no return code", Raw: []byte{0x02, 0x05}, Err: sn.ErrTooShort}, // Length, CONNACK
		{Name: "REGISTER/too short", Raw: []byte{
			0x05, 0x0A, // Length, REGISTER
			0x00, 0x00, 0x00, // TopicId, MsgId (1 of 2 octets)
		}, Err: sn.ErrTooShort},
		{Name: "REGACK/too short", Raw: []byte{
			0x06, 0x0B, // Length, REGACK
			0x00, 0x01, 0x00, 0x01, // TopicId, MsgId; ReturnCode missing
		}, Err: sn.ErrTooShort},
		{Name: "PUBLISH/too short", Raw: []byte{
			0x06, 0x0C, // Length, PUBLISH
			0x20, 0x00, 0x01, 0x00, // Flags, TopicId, MsgId (1 of 2 octets)
		}, Err: sn.ErrTooShort},
		{Name: "PUBACK/too short", Raw: []byte{
			0x05, 0x0D, // Length, PUBACK
			0x00, 0x01, 0x00, // TopicId, MsgId (1 of 2 octets)
		}, Err: sn.ErrTooShort},
		{Name: "PUBREC/too short", Raw: []byte{0x03, 0x0F, 0x00}, Err: sn.ErrTooShort},  // Length, PUBREC, MsgId (1 of 2)
		{Name: "PUBREL/no msg id", Raw: []byte{0x02, 0x10}, Err: sn.ErrTooShort},        // Length, PUBREL
		{Name: "PUBCOMP/too short", Raw: []byte{0x03, 0x0E, 0x00}, Err: sn.ErrTooShort}, // Length, PUBCOMP, MsgId (1 of 2)
		{Name: "SUBSCRIBE/too short", Raw: []byte{
			0x04, 0x12, // Length, SUBSCRIBE
			0x20, 0x00, // Flags, MsgId (1 of 2 octets)
		}, Err: sn.ErrTooShort},
		{Name: "SUBSCRIBE/predefined topic ID truncated", Raw: []byte{
			0x06, 0x12, // Length, SUBSCRIBE
			0x21,       // Flags: QoS1, predefined
			0x00, 0x05, // MsgId
			0x00, // TopicId (1 of 2 octets)
		}, Err: sn.ErrTooShort},
		{Name: "SUBACK/too short", Raw: []byte{
			0x07, 0x13, // Length, SUBACK
			0x20, 0x00, 0x01, 0x00, 0x03, // Flags, TopicId, MsgId; ReturnCode missing
		}, Err: sn.ErrTooShort},
		{Name: "UNSUBSCRIBE/short name truncated", Raw: []byte{
			0x05, 0x14, // Length, UNSUBSCRIBE
			0x02,       // Flags: short topic name
			0x00, 0x09, // MsgId; TopicId missing
		}, Err: sn.ErrTooShort},
		{Name: "UNSUBACK/too short", Raw: []byte{0x03, 0x15, 0x00}, Err: sn.ErrTooShort},          // Length, UNSUBACK, MsgId (1 of 2)
		{Name: "DISCONNECT/1-octet duration", Raw: []byte{0x03, 0x18, 0x00}, Err: sn.ErrTooShort}, // Length, DISCONNECT, Duration (1 of 2)
		{Name: "WILLTOPICRESP/no return code", Raw: []byte{0x02, 0x1B}, Err: sn.ErrTooShort},      // Length, WILLTOPICRESP
		{Name: "WILLMSGRESP/no return code", Raw: []byte{0x02, 0x1D}, Err: sn.ErrTooShort},        // Length, WILLMSGRESP

		// ---- trailing octets on fixed-size messages ----
		{Name: "ADVERTISE/trailing", Raw: []byte{0x06, 0x00, 0x01, 0x00, 0x0A, 0xFF}, Err: sn.ErrMalformed}, // Length, ADVERTISE, GwId, Duration, extra
		{Name: "SEARCHGW/trailing", Raw: []byte{0x04, 0x01, 0x00, 0xFF}, Err: sn.ErrMalformed},              // Length, SEARCHGW, Radius, extra
		{Name: "CONNACK/trailing", Raw: []byte{0x04, 0x05, 0x00, 0x00}, Err: sn.ErrMalformed},               // Length, CONNACK, RC, extra
		{Name: "WILLTOPICREQ/trailing", Raw: []byte{0x03, 0x06, 0x00}, Err: sn.ErrMalformed},                // Length, WILLTOPICREQ, extra
		{Name: "WILLMSGREQ/trailing", Raw: []byte{0x03, 0x08, 0x00}, Err: sn.ErrMalformed},                  // Length, WILLMSGREQ, extra
		{Name: "REGACK/trailing", Raw: []byte{
			0x08, 0x0B, // Length, REGACK
			0x00, 0x01, 0x00, 0x01, 0x00, // TopicId, MsgId, ReturnCode
			0x00, // extra
		}, Err: sn.ErrMalformed},
		{Name: "PUBACK/trailing", Raw: []byte{
			0x08, 0x0D, // Length, PUBACK
			0x00, 0x01, 0x00, 0x02, 0x00, // TopicId, MsgId, ReturnCode
			0x00, // extra
		}, Err: sn.ErrMalformed},
		{Name: "PUBREC/trailing", Raw: []byte{0x05, 0x0F, 0x00, 0x02, 0x00}, Err: sn.ErrMalformed},  // Length, PUBREC, MsgId, extra
		{Name: "PUBREL/trailing", Raw: []byte{0x05, 0x10, 0x00, 0x02, 0x00}, Err: sn.ErrMalformed},  // Length, PUBREL, MsgId, extra
		{Name: "PUBCOMP/trailing", Raw: []byte{0x05, 0x0E, 0x00, 0x02, 0x00}, Err: sn.ErrMalformed}, // Length, PUBCOMP, MsgId, extra
		{Name: "SUBSCRIBE/predefined trailing", Raw: []byte{
			0x08, 0x12, // Length, SUBSCRIBE
			0x21,       // Flags: QoS1, predefined
			0x00, 0x05, // MsgId
			0x00, 0x01, // TopicId
			0x00, // extra
		}, Err: sn.ErrMalformed},
		{Name: "SUBACK/trailing", Raw: []byte{
			0x09, 0x13, // Length, SUBACK
			0x20, 0x00, 0x01, 0x00, 0x03, 0x00, // Flags, TopicId, MsgId, ReturnCode
			0x00, // extra
		}, Err: sn.ErrMalformed},
		{Name: "UNSUBSCRIBE/short trailing", Raw: []byte{
			0x08, 0x14, // Length, UNSUBSCRIBE
			0x02,       // Flags: short topic name
			0x00, 0x09, // MsgId
			0x61, 0x62, 0x63, // TopicId "ab" plus extra "c"
		}, Err: sn.ErrMalformed},
		{Name: "UNSUBACK/trailing", Raw: []byte{0x05, 0x15, 0x00, 0x04, 0x00}, Err: sn.ErrMalformed},   // Length, UNSUBACK, MsgId, extra
		{Name: "PINGRESP/trailing", Raw: []byte{0x03, 0x17, 0x00}, Err: sn.ErrMalformed},               // Length, PINGRESP, extra
		{Name: "DISCONNECT/trailing", Raw: []byte{0x05, 0x18, 0x00, 0x0A, 0x00}, Err: sn.ErrMalformed}, // Length, DISCONNECT, Duration, extra
		{Name: "WILLTOPICRESP/trailing", Raw: []byte{0x04, 0x1B, 0x00, 0x00}, Err: sn.ErrMalformed},    // Length, WILLTOPICRESP, RC, extra
		{Name: "WILLMSGRESP/trailing", Raw: []byte{0x04, 0x1D, 0x00, 0x00}, Err: sn.ErrMalformed},      // Length, WILLMSGRESP, RC, extra

		// ---- flags ----
		{Name: "PUBLISH/reserved topic ID type", Raw: []byte{
			0x08, 0x0C, // Length, PUBLISH
			0x23,       // Flags: QoS1, TopicIdType 0b11 (reserved)
			0x00, 0x01, // TopicId
			0x00, 0x02, // MsgId
			0x78, // Data
		}, Packet: &sn.Publish{QoS: sn.QoS1, TopicIDType: 3, TopicID: 1, MsgID: 2, Data: []byte("x")},
			Err: sn.ErrReservedTopicIDType},
		{Name: "SUBSCRIBE/reserved topic ID type", Raw: []byte{
			0x07, 0x12, // Length, SUBSCRIBE
			0x23,       // Flags: QoS1, TopicIdType 0b11 (reserved)
			0x00, 0x05, // MsgId
			0x00, 0x01, // TopicId
		}, Packet: &sn.Subscribe{QoS: sn.QoS1, TopicIDType: 3, MsgID: 5}, Err: sn.ErrReservedTopicIDType},
		{Name: "UNSUBSCRIBE/reserved topic ID type", Raw: []byte{
			0x07, 0x14, // Length, UNSUBSCRIBE
			0x03,       // Flags: TopicIdType 0b11 (reserved)
			0x00, 0x05, // MsgId
			0x00, 0x01, // TopicId
		}, Packet: &sn.Unsubscribe{TopicIDType: 3, MsgID: 5}, Err: sn.ErrReservedTopicIDType},
		{Name: "SUBSCRIBE/qos -1", Raw: []byte{
			0x08, 0x12, // Length, SUBSCRIBE
			0x60,       // Flags: QoS -1 (only legal in PUBLISH)
			0x00, 0x03, // MsgId
			0x77, 0x2F, 0x2B, // TopicName "w/+"
		}, Packet: &sn.Subscribe{QoS: sn.QoSMinusOne, MsgID: 3}, Err: sn.ErrReservedQoS},
		{Name: "SUBACK/qos -1", Raw: []byte{
			0x08, 0x13, // Length, SUBACK
			0x60,                         // Flags: QoS -1
			0x00, 0x01, 0x00, 0x03, 0x00, // TopicId, MsgId, ReturnCode
		}, Err: sn.ErrMalformed},
		{Name: "WILLTOPIC/qos -1", Raw: []byte{
			0x04, 0x07, // Length, WILLTOPIC
			0x60, // Flags: QoS -1
			0x77, // WillTopic "w"
		}, Err: sn.ErrMalformed},
		{Name: "WILLTOPICUPD/qos -1", Raw: []byte{
			0x04, 0x1A, // Length, WILLTOPICUPD
			0x70, // Flags: QoS -1 | Retain
			0x77, // WillTopic "w"
		}, Err: sn.ErrMalformed},

		// ---- CONNECT protocol ID: decoded message returned with the error ----
		{Name: "CONNECT/protocol ID 0x02", Raw: []byte{
			0x08, 0x04, // Length, CONNECT
			0x04,       // Flags: CleanSession
			0x02,       // ProtocolId 0x02 (only 0x01 is defined)
			0x00, 0x1E, // Duration 30 s
			0x63, 0x31, // ClientId "c1"
		}, Packet: &sn.Connect{CleanSession: true, ProtocolID: 2, Duration: 30, ClientID: "c1"}, Err: sn.ErrProtocolID},
		{Name: "ENCAPSULATED/CONNECT protocol ID 0x00", Raw: []byte{
			0x04, 0xFE, 0x00, // Le, Encapsulated, Ctrl
			0x09,       // Wireless Node Id
			0x08, 0x04, // inner Length, CONNECT
			0x0C,       // Flags: Will | CleanSession
			0x00,       // ProtocolId 0x00
			0x00, 0x02, // Duration 2 s
			0x63, 0x31, // ClientId "c1"
		}, Packet: &sn.Encapsulated{NodeID: []byte{0x09},
			Message: &sn.Connect{Will: true, CleanSession: true, ProtocolID: 0, Duration: 2, ClientID: "c1"}},
			Err: sn.ErrProtocolID},

		// ---- encapsulation ----
		{Name: "ENCAPSULATED/nested", Raw: []byte{
			0x04, 0xFE, 0x00, 0x01, // Le, Encapsulated, Ctrl, NodeId
			0x04, 0xFE, 0x00, 0x02, // inner: another encapsulation
			0x02, 0x16, // PINGREQ
		}, Err: sn.ErrMalformed},
		{Name: "ENCAPSULATED/Le too short", Raw: []byte{
			0x02, 0xFE, // Le 2: no room for Ctrl
			0x02, 0x16, // PINGREQ
		}, Err: sn.ErrMalformed},
		{Name: "ENCAPSULATED/Le beyond datagram", Raw: []byte{
			0x09, 0xFE, 0x00, // Le 9, Encapsulated, Ctrl
			0xAB, 0xCD, // NodeId: 4 octets short of Le
		}, Err: sn.ErrLengthMismatch},
		{Name: "ENCAPSULATED/no inner message", Raw: []byte{
			0x05, 0xFE, 0x00, // Le, Encapsulated, Ctrl
			0xAB, 0xCD, // NodeId; nothing follows
		}, Err: sn.ErrTooShort},
		{Name: "ENCAPSULATED/inner truncated", Raw: []byte{
			0x05, 0xFE, 0x00, 0xAB, 0xCD, // Le, Encapsulated, Ctrl, NodeId
			0x02, // inner Length only
		}, Err: sn.ErrTooShort},
		{Name: "ENCAPSULATED/inner length mismatch", Raw: []byte{
			0x04, 0xFE, 0x00, 0x01, // Le, Encapsulated, Ctrl, NodeId
			0x04, 0x16, 0x63, // inner Length 4 but 3 octets
		}, Err: sn.ErrLengthMismatch},
		{Name: "ENCAPSULATED/inner unknown type", Raw: []byte{
			0x04, 0xFE, 0x00, 0x01, // Le, Encapsulated, Ctrl, NodeId
			0x02, 0x19, // inner MsgType 0x19 (reserved)
		}, Err: sn.ErrUnknownType},
		{Name: "ENCAPSULATED/3-octet Le", Raw: []byte{
			0x01, 0x00, 0x06, 0xFE, 0x00, 0x01, // 3-octet Length form: not allowed for Le
			0x02, 0x16, // PINGREQ
		}, Err: sn.ErrMalformed},
		{Name: "ENCAPSULATED/inner reserved topic ID type", Raw: []byte{
			0x04, 0xFE, 0x00, 0x01, // Le, Encapsulated, Ctrl, NodeId
			0x08, 0x0C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x78, // PUBLISH with TopicIdType 0b11
		}, Packet: &sn.Encapsulated{NodeID: []byte{0x01},
			Message: &sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: 3, TopicID: 1, Data: []byte("x")}},
			Err: sn.ErrReservedTopicIDType},
	}
}
