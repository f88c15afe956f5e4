package snpackettest

import (
	"strings"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Valid returns vectors that decode without error to Packet, and that
// Packet encodes to Encoded(). Every message type is covered, in both
// directions where the spec allows both forms.
func Valid() []Case {
	return []Case{
		// ---- gateway discovery (spec 5.4.1-5.4.3) ----
		{Name: "ADVERTISE", Raw: []byte{
			0x05,       // Length
			0x00,       // MsgType ADVERTISE
			0x07,       // GwId
			0x03, 0x84, // Duration 900 s
		}, Packet: &sn.Advertise{GatewayID: 7, Duration: 900}},
		{Name: "SEARCHGW/radius 0", Raw: []byte{
			0x03, // Length
			0x01, // MsgType SEARCHGW
			0x00, // Radius: broadcast to all
		}, Packet: &sn.SearchGW{Radius: 0}},
		{Name: "SEARCHGW/radius 3", Raw: []byte{
			0x03, 0x01, // Length, SEARCHGW
			0x03, // Radius
		}, Packet: &sn.SearchGW{Radius: 3}},
		{Name: "GWINFO/from gateway", Raw: []byte{
			0x03, // Length
			0x02, // MsgType GWINFO
			0x01, // GwId
		}, Packet: &sn.GWInfo{GatewayID: 1}},
		{Name: "GWINFO/from client", Raw: []byte{
			0x05,       // Length
			0x02,       // MsgType GWINFO
			0x01,       // GwId
			0xAB, 0xCD, // GwAdd
		}, Packet: &sn.GWInfo{GatewayID: 1, GatewayAddr: []byte{0xAB, 0xCD}}},

		// ---- connection (spec 5.4.4-5.4.9) ----
		// AUTH is the MQTT-SN v2.0 draft's (MsgType 0x03, reserved in
		// v1.2), as bisquitt-pub --user/--password sends it right after
		// CONNECT.
		{Name: "AUTH/PLAIN user pw", Raw: []byte{
			0x11,                         // Length 17
			0x03,                         // MsgType AUTH
			0x00,                         // Reason Code: success (unused)
			0x05,                         // Auth Method Length
			0x50, 0x4C, 0x41, 0x49, 0x4E, // Auth Method "PLAIN"
			0x00,             // PLAIN: empty authorization identity, NUL
			0x75, 0x73, 0x65, // "use"
			0x72, 0x00, // "r", NUL
			0x70, 0x77, // password "pw"
		}, Packet: &sn.Auth{Method: "PLAIN", Data: []byte("\x00user\x00pw")}},
		{Name: "AUTH/empty method no data", Raw: []byte{
			0x04, // Length
			0x03, // MsgType AUTH
			0x18, // Reason Code: continue authentication
			0x00, // Auth Method Length 0
		}, Packet: &sn.Auth{ReasonCode: 0x18}},
		{Name: "CONNECT/clean keepalive 30 c1", Raw: []byte{
			0x08,       // Length
			0x04,       // MsgType CONNECT
			0x04,       // Flags: CleanSession
			0x01,       // ProtocolId
			0x00, 0x1E, // Duration 30 s
			0x63, 0x31, // ClientId "c1"
		}, Packet: &sn.Connect{CleanSession: true, ProtocolID: 1, Duration: 30, ClientID: "c1"}},
		{Name: "CONNECT/3-octet length", Raw: []byte{
			0x01, 0x00, 0x0A, // Length: 3-octet form, 10
			0x04,       // MsgType CONNECT
			0x04,       // Flags: CleanSession
			0x01,       // ProtocolId
			0x00, 0x1E, // Duration 30 s
			0x63, 0x31, // ClientId "c1"
		}, Packet: &sn.Connect{CleanSession: true, ProtocolID: 1, Duration: 30, ClientID: "c1"},
			Canonical: []byte{0x08, 0x04, 0x04, 0x01, 0x00, 0x1E, 0x63, 0x31}},
		{Name: "CONNECT/will clean keepalive 2", Raw: []byte{
			0x08,       // Length
			0x04,       // MsgType CONNECT
			0x0C,       // Flags: Will | CleanSession
			0x01,       // ProtocolId
			0x00, 0x02, // Duration 2 s
			0x63, 0x31, // ClientId "c1"
		}, Packet: &sn.Connect{Will: true, CleanSession: true, ProtocolID: 1, Duration: 2, ClientID: "c1"}},
		{Name: "CONNECT/persistent session", Raw: []byte{
			0x0B, 0x04, // Length, CONNECT
			0x00,       // Flags: none
			0x01,       // ProtocolId
			0x0E, 0x10, // Duration 3600 s
			0x6E, 0x6F, 0x64, 0x65, 0x31, // ClientId "node1"
		}, Packet: &sn.Connect{ProtocolID: 1, Duration: 3600, ClientID: "node1"}},
		{Name: "CONNECT/unused flag bits ignored", Raw: []byte{
			0x08, 0x04, // Length, CONNECT
			0xF7,       // Flags: DUP, QoS -1, Retain, Clean, TopicIdType 3 (only Clean is used)
			0x01,       // ProtocolId
			0x00, 0x1E, // Duration 30 s
			0x63, 0x31, // ClientId "c1"
		}, Packet: &sn.Connect{CleanSession: true, ProtocolID: 1, Duration: 30, ClientID: "c1"},
			Canonical: []byte{0x08, 0x04, 0x04, 0x01, 0x00, 0x1E, 0x63, 0x31}},
		{Name: "CONNACK/accepted", Raw: []byte{
			0x03, // Length
			0x05, // MsgType CONNACK
			0x00, // ReturnCode accepted
		}, Packet: &sn.Connack{ReturnCode: sn.Accepted}},
		{Name: "CONNACK/not supported", Raw: []byte{
			0x03, 0x05, // Length, CONNACK
			0x03, // ReturnCode rejected: not supported
		}, Packet: &sn.Connack{ReturnCode: sn.RejectedNotSupported}},
		{Name: "CONNACK/congestion", Raw: []byte{
			0x03, 0x05, // Length, CONNACK
			0x01, // ReturnCode rejected: congestion
		}, Packet: &sn.Connack{ReturnCode: sn.RejectedCongestion}},
		{Name: "WILLTOPICREQ", Raw: []byte{
			0x02, // Length
			0x06, // MsgType WILLTOPICREQ
		}, Packet: &sn.WillTopicReq{}},
		{Name: "WILLTOPIC/qos1 retain w/a", Raw: []byte{
			0x06,             // Length
			0x07,             // MsgType WILLTOPIC
			0x30,             // Flags: QoS1 | Retain
			0x77, 0x2F, 0x61, // WillTopic "w/a"
		}, Packet: &sn.WillTopic{QoS: sn.QoS1, Retain: true, WillTopic: "w/a"}},
		{Name: "WILLTOPIC/qos2", Raw: []byte{
			0x04, 0x07, // Length, WILLTOPIC
			0x40, // Flags: QoS2
			0x77, // WillTopic "w"
		}, Packet: &sn.WillTopic{QoS: sn.QoS2, WillTopic: "w"}},
		{Name: "WILLTOPIC/empty", Raw: []byte{
			0x02, // Length
			0x07, // MsgType WILLTOPIC (no Flags, no WillTopic: delete)
		}, Packet: &sn.WillTopic{}},
		{Name: "WILLTOPIC/flags without topic", Raw: []byte{
			0x03, 0x07, // Length, WILLTOPIC
			0x30, // Flags: QoS1 | Retain, but no WillTopic: treated as empty
		}, Packet: &sn.WillTopic{}, Canonical: []byte{0x02, 0x07}},
		{Name: "WILLMSGREQ", Raw: []byte{
			0x02, // Length
			0x08, // MsgType WILLMSGREQ
		}, Packet: &sn.WillMsgReq{}},
		{Name: "WILLMSG/bye", Raw: []byte{
			0x05,             // Length
			0x09,             // MsgType WILLMSG
			0x62, 0x79, 0x65, // WillMsg "bye"
		}, Packet: &sn.WillMsg{WillMsg: []byte("bye")}},
		{Name: "WILLMSG/empty", Raw: []byte{
			0x02, 0x09, // Length, WILLMSG; empty WillMsg
		}, Packet: &sn.WillMsg{}},

		// ---- topic registration (spec 5.4.10-5.4.11) ----
		{Name: "REGISTER/from client a/b", Raw: []byte{
			0x09,       // Length
			0x0A,       // MsgType REGISTER
			0x00, 0x00, // TopicId 0 (client)
			0x00, 0x01, // MsgId 1
			0x61, 0x2F, 0x62, // TopicName "a/b"
		}, Packet: &sn.Register{MsgID: 1, TopicName: "a/b"}},
		{Name: "REGISTER/from gateway", Raw: []byte{
			0x0C, 0x0A, // Length, REGISTER
			0x00, 0x05, // TopicId 5
			0x12, 0x34, // MsgId 0x1234
			0x73, 0x2F, 0x74, 0x2F, 0x31, 0x32, // TopicName "s/t/12"
		}, Packet: &sn.Register{TopicID: 5, MsgID: 0x1234, TopicName: "s/t/12"}},
		{Name: "REGACK/accepted", Raw: []byte{
			0x07,       // Length
			0x0B,       // MsgType REGACK
			0x00, 0x01, // TopicId 1
			0x00, 0x01, // MsgId 1
			0x00, // ReturnCode accepted
		}, Packet: &sn.Regack{TopicID: 1, MsgID: 1, ReturnCode: sn.Accepted}},
		{Name: "REGACK/invalid topic", Raw: []byte{
			0x07, 0x0B, // Length, REGACK
			0x00, 0x00, // TopicId 0
			0xFF, 0xFE, // MsgId 65534
			0x02, // ReturnCode rejected: invalid topic ID
		}, Packet: &sn.Regack{MsgID: 0xFFFE, ReturnCode: sn.RejectedInvalidTopicID}},

		// ---- publish (spec 5.4.12-5.4.14) ----
		{Name: "PUBLISH/qos1 tid1 hi", Raw: []byte{
			0x09,       // Length
			0x0C,       // MsgType PUBLISH
			0x20,       // Flags: QoS1, normal topic ID
			0x00, 0x01, // TopicId 1
			0x00, 0x02, // MsgId 2
			0x68, 0x69, // Data "hi"
		}, Packet: &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 2, Data: []byte("hi")}},
		{Name: "PUBLISH/qos-1 short ab", Raw: []byte{
			0x08,       // Length
			0x0C,       // MsgType PUBLISH
			0x62,       // Flags: QoS -1, short topic name
			0x61, 0x62, // TopicId "ab"
			0x00, 0x00, // MsgId 0
			0x78, // Data "x"
		}, Packet: &sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicShort, TopicID: 0x6162, Data: []byte("x")}},
		{Name: "PUBLISH/qos-1 predefined 1", Raw: []byte{
			0x08,       // Length
			0x0C,       // MsgType PUBLISH
			0x61,       // Flags: QoS -1, predefined topic ID
			0x00, 0x01, // TopicId 1
			0x00, 0x00, // MsgId 0
			0x78, // Data "x"
		}, Packet: &sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicPredefined, TopicID: 1, Data: []byte("x")}},
		{Name: "PUBLISH/qos2 dup retain", Raw: []byte{
			0x0A, 0x0C, // Length, PUBLISH
			0xD0,       // Flags: DUP | QoS2 | Retain, normal topic ID
			0x00, 0x07, // TopicId 7
			0xAB, 0xCD, // MsgId 0xABCD
			0x01, 0x02, 0x03, // Data
		}, Packet: &sn.Publish{DUP: true, QoS: sn.QoS2, Retain: true, TopicID: 7, MsgID: 0xABCD, Data: []byte{1, 2, 3}}},
		{Name: "PUBLISH/qos0 empty payload", Raw: []byte{
			0x07, 0x0C, // Length, PUBLISH
			0x00,       // Flags: QoS0, normal topic ID
			0x00, 0x01, // TopicId 1
			0x00, 0x00, // MsgId 0; no Data
		}, Packet: &sn.Publish{TopicID: 1}},
		{Name: "PUBLISH/unused flag bits ignored", Raw: []byte{
			0x08, 0x0C, // Length, PUBLISH
			0x2C,       // Flags: QoS1 | Will | Clean (Will and Clean unused)
			0x00, 0x01, // TopicId 1
			0x00, 0x02, // MsgId 2
			0x68, // Data "h"
		}, Packet: &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 2, Data: []byte("h")},
			Canonical: []byte{0x08, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02, 0x68}},
		{Name: "PUBLISH/300-byte payload", Raw: cat(
			[]byte{0x01, 0x01, 0x35}, // Length: 3-octet form, 309
			[]byte{0x0C},             // MsgType PUBLISH
			[]byte{0x20},             // Flags: QoS1
			[]byte{0x00, 0x01},       // TopicId 1
			[]byte{0x00, 0x02},       // MsgId 2
			payload(300),             // Data
		), Packet: &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 2, Data: payload(300)}},
		{Name: "PUBLISH/254-octet total uses 3-octet form at 256", Raw: cat(
			[]byte{0x01, 0x01, 0x02}, // Length: 3-octet form, 258 (2+254 would be 256)
			[]byte{0x0C, 0x00},       // PUBLISH, Flags QoS0
			[]byte{0x00, 0x01},       // TopicId 1
			[]byte{0x00, 0x00},       // MsgId 0
			payload(249),             // Data
		), Packet: &sn.Publish{TopicID: 1, Data: payload(249)}},
		{Name: "PUBLISH/255-octet total uses 1-octet form", Raw: cat(
			[]byte{0xFF},       // Length 255
			[]byte{0x0C, 0x00}, // PUBLISH, Flags QoS0
			[]byte{0x00, 0x01}, // TopicId 1
			[]byte{0x00, 0x00}, // MsgId 0
			payload(248),       // Data
		), Packet: &sn.Publish{TopicID: 1, Data: payload(248)}},
		{Name: "PUBACK/accepted", Raw: []byte{
			0x07,       // Length
			0x0D,       // MsgType PUBACK
			0x00, 0x01, // TopicId 1
			0x00, 0x02, // MsgId 2
			0x00, // ReturnCode accepted
		}, Packet: &sn.Puback{TopicID: 1, MsgID: 2, ReturnCode: sn.Accepted}},
		{Name: "PUBACK/invalid topic", Raw: []byte{
			0x07, 0x0D, // Length, PUBACK
			0x00, 0x09, // TopicId 9
			0x00, 0x03, // MsgId 3
			0x02, // ReturnCode rejected: invalid topic ID
		}, Packet: &sn.Puback{TopicID: 9, MsgID: 3, ReturnCode: sn.RejectedInvalidTopicID}},
		{Name: "PUBACK/reserved return code", Raw: []byte{
			0x07, 0x0D, // Length, PUBACK
			0x00, 0x01, // TopicId 1
			0x00, 0x02, // MsgId 2
			0x80, // ReturnCode 0x80 (reserved; carried unchanged)
		}, Packet: &sn.Puback{TopicID: 1, MsgID: 2, ReturnCode: 0x80}},
		{Name: "PUBREC", Raw: []byte{
			0x04,       // Length
			0x0F,       // MsgType PUBREC
			0x00, 0x02, // MsgId 2
		}, Packet: &sn.Pubrec{MsgID: 2}},
		{Name: "PUBREL", Raw: []byte{
			0x04,       // Length
			0x10,       // MsgType PUBREL
			0x00, 0x02, // MsgId 2
		}, Packet: &sn.Pubrel{MsgID: 2}},
		{Name: "PUBCOMP", Raw: []byte{
			0x04,       // Length
			0x0E,       // MsgType PUBCOMP
			0x00, 0x02, // MsgId 2
		}, Packet: &sn.Pubcomp{MsgID: 2}},

		// ---- subscribe (spec 5.4.15-5.4.18) ----
		{Name: "SUBSCRIBE/qos1 name w/+", Raw: []byte{
			0x08,       // Length
			0x12,       // MsgType SUBSCRIBE
			0x20,       // Flags: QoS1, topic name
			0x00, 0x03, // MsgId 3
			0x77, 0x2F, 0x2B, // TopicName "w/+"
		}, Packet: &sn.Subscribe{QoS: sn.QoS1, MsgID: 3, TopicName: "w/+"}},
		{Name: "SUBSCRIBE/predefined 1", Raw: []byte{
			0x07,       // Length
			0x12,       // MsgType SUBSCRIBE
			0x21,       // Flags: QoS1, predefined topic ID
			0x00, 0x05, // MsgId 5
			0x00, 0x01, // TopicId 1
		}, Packet: &sn.Subscribe{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, MsgID: 5, TopicID: 1}},
		{Name: "SUBSCRIBE/short ab", Raw: []byte{
			0x07,       // Length
			0x12,       // MsgType SUBSCRIBE
			0x22,       // Flags: QoS1, short topic name
			0x00, 0x06, // MsgId 6
			0x61, 0x62, // TopicId "ab"
		}, Packet: &sn.Subscribe{QoS: sn.QoS1, TopicIDType: sn.TopicShort, MsgID: 6, TopicID: 0x6162}},
		{Name: "SUBSCRIBE/dup qos2 multi-level", Raw: []byte{
			0x08, 0x12, // Length, SUBSCRIBE
			0xC0,       // Flags: DUP | QoS2, topic name
			0x00, 0x07, // MsgId 7
			0x61, 0x2F, 0x23, // TopicName "a/#"
		}, Packet: &sn.Subscribe{DUP: true, QoS: sn.QoS2, MsgID: 7, TopicName: "a/#"}},
		{Name: "SUBACK/granted qos1", Raw: []byte{
			0x08,       // Length
			0x13,       // MsgType SUBACK
			0x20,       // Flags: granted QoS1
			0x00, 0x01, // TopicId 1
			0x00, 0x03, // MsgId 3
			0x00, // ReturnCode accepted
		}, Packet: &sn.Suback{QoS: sn.QoS1, TopicID: 1, MsgID: 3, ReturnCode: sn.Accepted}},
		{Name: "SUBACK/rejected", Raw: []byte{
			0x08, 0x13, // Length, SUBACK
			0x00,       // Flags: QoS0
			0x00, 0x00, // TopicId 0
			0x00, 0x04, // MsgId 4
			0x02, // ReturnCode rejected: invalid topic ID
		}, Packet: &sn.Suback{MsgID: 4, ReturnCode: sn.RejectedInvalidTopicID}},
		{Name: "UNSUBSCRIBE/name w/+", Raw: []byte{
			0x08,       // Length
			0x14,       // MsgType UNSUBSCRIBE
			0x00,       // Flags: topic name
			0x00, 0x04, // MsgId 4
			0x77, 0x2F, 0x2B, // TopicName "w/+"
		}, Packet: &sn.Unsubscribe{MsgID: 4, TopicName: "w/+"}},
		{Name: "UNSUBSCRIBE/predefined 1", Raw: []byte{
			0x07, 0x14, // Length, UNSUBSCRIBE
			0x01,       // Flags: predefined topic ID
			0x00, 0x08, // MsgId 8
			0x00, 0x01, // TopicId 1
		}, Packet: &sn.Unsubscribe{TopicIDType: sn.TopicPredefined, MsgID: 8, TopicID: 1}},
		{Name: "UNSUBSCRIBE/short ab", Raw: []byte{
			0x07, 0x14, // Length, UNSUBSCRIBE
			0x02,       // Flags: short topic name
			0x00, 0x09, // MsgId 9
			0x61, 0x62, // TopicId "ab"
		}, Packet: &sn.Unsubscribe{TopicIDType: sn.TopicShort, MsgID: 9, TopicID: 0x6162}},
		{Name: "UNSUBACK", Raw: []byte{
			0x04,       // Length
			0x15,       // MsgType UNSUBACK
			0x00, 0x04, // MsgId 4
		}, Packet: &sn.Unsuback{MsgID: 4}},

		// ---- keep-alive and sleep (spec 5.4.19-5.4.21) ----
		{Name: "PINGREQ", Raw: []byte{
			0x02, // Length
			0x16, // MsgType PINGREQ
		}, Packet: &sn.PingReq{}},
		{Name: "PINGREQ/awake sleeper c1", Raw: []byte{
			0x04,       // Length
			0x16,       // MsgType PINGREQ
			0x63, 0x31, // ClientId "c1"
		}, Packet: &sn.PingReq{ClientID: "c1"}},
		{Name: "PINGRESP", Raw: []byte{
			0x02, // Length
			0x17, // MsgType PINGRESP
		}, Packet: &sn.PingResp{}},
		{Name: "DISCONNECT", Raw: []byte{
			0x02, // Length
			0x18, // MsgType DISCONNECT
		}, Packet: &sn.Disconnect{}},
		{Name: "DISCONNECT/sleep 10s", Raw: []byte{
			0x04,       // Length
			0x18,       // MsgType DISCONNECT
			0x00, 0x0A, // Duration 10 s
		}, Packet: &sn.Disconnect{Duration: 10, HasDuration: true}},
		{Name: "DISCONNECT/sleep 0s", Raw: []byte{
			0x04, 0x18, // Length, DISCONNECT
			0x00, 0x00, // Duration 0 s (present)
		}, Packet: &sn.Disconnect{HasDuration: true}},

		// ---- will update (spec 5.4.22-5.4.25) ----
		{Name: "WILLTOPICUPD/qos1 retain w/a", Raw: []byte{
			0x06,             // Length
			0x1A,             // MsgType WILLTOPICUPD
			0x30,             // Flags: QoS1 | Retain
			0x77, 0x2F, 0x61, // WillTopic "w/a"
		}, Packet: &sn.WillTopicUpd{QoS: sn.QoS1, Retain: true, WillTopic: "w/a"}},
		{Name: "WILLTOPICUPD/empty", Raw: []byte{
			0x02, // Length
			0x1A, // MsgType WILLTOPICUPD (delete topic and message)
		}, Packet: &sn.WillTopicUpd{}},
		{Name: "WILLTOPICRESP", Raw: []byte{
			0x03, // Length
			0x1B, // MsgType WILLTOPICRESP
			0x00, // ReturnCode accepted
		}, Packet: &sn.WillTopicResp{ReturnCode: sn.Accepted}},
		{Name: "WILLMSGUPD", Raw: []byte{
			0x05,             // Length
			0x1C,             // MsgType WILLMSGUPD
			0x62, 0x79, 0x65, // WillMsg "bye"
		}, Packet: &sn.WillMsgUpd{WillMsg: []byte("bye")}},
		{Name: "WILLMSGRESP", Raw: []byte{
			0x03, // Length
			0x1D, // MsgType WILLMSGRESP
			0x01, // ReturnCode rejected: congestion
		}, Packet: &sn.WillMsgResp{ReturnCode: sn.RejectedCongestion}},

		// ---- forwarder encapsulation (spec 5.5) ----
		{Name: "ENCAPSULATED/PINGREQ node ABCD", Raw: []byte{
			0x05,       // Le: up to the end of NodeId
			0xFE,       // MsgType Encapsulated
			0x00,       // Ctrl: radius 0
			0xAB, 0xCD, // Wireless Node Id
			0x02, 0x16, // inner PINGREQ
		}, Packet: &sn.Encapsulated{NodeID: []byte{0xAB, 0xCD}, Message: &sn.PingReq{}}},
		{Name: "ENCAPSULATED/CONNECT radius 1", Raw: []byte{
			0x04,                                           // Le
			0xFE,                                           // MsgType Encapsulated
			0x01,                                           // Ctrl: radius 1
			0x09,                                           // Wireless Node Id
			0x08, 0x04, 0x04, 0x01, 0x00, 0x1E, 0x63, 0x31, // inner CONNECT clean 30 "c1"
		}, Packet: &sn.Encapsulated{Radius: 1, NodeID: []byte{0x09},
			Message: &sn.Connect{CleanSession: true, ProtocolID: 1, Duration: 30, ClientID: "c1"}}},
		{Name: "ENCAPSULATED/PUBLISH inner 3-octet length", Raw: []byte{
			0x05, 0xFE, 0x02, // Le, Encapsulated, Ctrl: radius 2
			0x00, 0x01, // Wireless Node Id
			0x01, 0x00, 0x0B, 0x0C, // inner Length (3-octet form, 11), PUBLISH
			0x20, 0x00, 0x01, 0x00, 0x02, 0x68, 0x69, // Flags QoS1, TopicId 1, MsgId 2, "hi"
		}, Packet: &sn.Encapsulated{Radius: 2, NodeID: []byte{0x00, 0x01},
			Message: &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 2, Data: []byte("hi")}},
			Canonical: []byte{0x05, 0xFE, 0x02, 0x00, 0x01, 0x09, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02, 0x68, 0x69}},
		{Name: "ENCAPSULATED/empty node ID", Raw: []byte{
			0x03, 0xFE, 0x00, // Le 3 (no NodeId), Encapsulated, Ctrl
			0x03, 0x05, 0x00, // inner CONNACK accepted
		}, Packet: &sn.Encapsulated{Message: &sn.Connack{}}},
		{Name: "ENCAPSULATED/reserved ctrl bits ignored", Raw: []byte{
			0x04, 0xFE, // Le, Encapsulated
			0xFD,       // Ctrl: reserved bits set, radius 1
			0x07,       // Wireless Node Id
			0x02, 0x17, // inner PINGRESP
		}, Packet: &sn.Encapsulated{Radius: 1, NodeID: []byte{0x07}, Message: &sn.PingResp{}},
			Canonical: []byte{0x04, 0xFE, 0x01, 0x07, 0x02, 0x17}},

		// ---- strings run to the end of the message ----
		{Name: "REGISTER/long topic name 3-octet form", Raw: cat(
			[]byte{0x01, 0x01, 0x0E},       // Length: 3-octet form, 270
			[]byte{0x0A},                   // MsgType REGISTER
			[]byte{0x00, 0x00, 0x00, 0x0A}, // TopicId 0, MsgId 10
			[]byte(strings.Repeat("t", 262)),
		), Packet: &sn.Register{MsgID: 10, TopicName: strings.Repeat("t", 262)}},
	}
}
