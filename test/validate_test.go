package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// Issue 18: nothing MQTT forbids reaches the broker, and reserved values
// are answered instead of ignored.

// runGatewayUpstream is RunGateway with the upstream at hand, so that a
// test can show that no upstream connection was dropped.
func runGatewayUpstream(t *testing.T, tg testbroker.Target, cfg gateway.Config) (*Env, *upstream.Upstream) {
	t.Helper()
	ucfg := testgw.UpstreamConfig(tg, upstream.Config{})
	up, err := upstream.New(ucfg, testgw.Logger(t).Named("upstream"))
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	g := testgw.StartUpstream(t, testgw.ForMode(t, tg, up), cfg)
	return &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String(), Cfg: cfg}, up
}

// rejected sums the gateway's Rejected counters.
func rejected(e *Env) map[gateway.RejectReason]uint64 {
	out := map[gateway.RejectReason]uint64{}
	for _, r := range gateway.RejectReasons() {
		if v := e.GW.Stats().Rejected[r].Load(); v > 0 {
			out[r] = v
		}
	}
	return out
}

// expectUpstreamIntact fails if any upstream connection was lost.
func expectUpstreamIntact(t *testing.T, up *upstream.Upstream) {
	t.Helper()
	if st := up.Stats(); st.Lost != 0 || st.Reconnects != 0 {
		t.Fatalf("upstream connections lost: %+v", st)
	}
}

func TestRejectInvalidTopics(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e, up := runGatewayUpstream(t, tg, gateway.Config{Predefined: map[uint16]string{1: "pre/one"}})
		w := e.Watch(t, "#")
		n := e.Node(t)
		n.Connect("reject-topics", false, 60)
		id := n.Register(1, "valid/topic")

		// Answered: QoS 1 and 2 PUBLISH with a short name that is a
		// wildcard (raw, as the black-box check sent them).
		for _, c := range []struct {
			name string
			raw  []byte
			want sn.Packet
		}{
			{"QoS1 short /#", []byte{0x08, 0x0C, 0x22, 0x2F, 0x23, 0x00, 0x52, 0x78}, &sn.Puback{TopicID: 0x2F23, MsgID: 0x52, ReturnCode: sn.RejectedNotSupported}},
			{"QoS1 short /+", []byte{0x08, 0x0C, 0x22, 0x2F, 0x2B, 0x00, 0x53, 0x78}, &sn.Puback{TopicID: 0x2F2B, MsgID: 0x53, ReturnCode: sn.RejectedNotSupported}},
			{"QoS2 short /#", []byte{0x08, 0x0C, 0x42, 0x2F, 0x23, 0x00, 0x54, 0x78}, &sn.Puback{TopicID: 0x2F23, MsgID: 0x54, ReturnCode: sn.RejectedNotSupported}},
			{"QoS1 short NUL", []byte{0x08, 0x0C, 0x22, 0x61, 0x00, 0x00, 0x55, 0x78}, &sn.Puback{TopicID: 0x6100, MsgID: 0x55, ReturnCode: sn.RejectedNotSupported}},
			{"QoS1 short invalid UTF-8", []byte{0x08, 0x0C, 0x22, 0x61, 0xFF, 0x00, 0x56, 0x78}, &sn.Puback{TopicID: 0x61FF, MsgID: 0x56, ReturnCode: sn.RejectedNotSupported}},
			{"SUBSCRIBE a/#/b", []byte{0x0A, 0x12, 0x20, 0x00, 0x10, 'a', '/', '#', '/', 'b'}, &sn.Suback{MsgID: 0x10, ReturnCode: sn.RejectedNotSupported}},
			{"SUBSCRIBE a+", []byte{0x07, 0x12, 0x20, 0x00, 0x11, 'a', '+'}, &sn.Suback{MsgID: 0x11, ReturnCode: sn.RejectedNotSupported}},
			{"SUBSCRIBE NUL", []byte{0x07, 0x12, 0x20, 0x00, 0x12, 'a', 0x00}, &sn.Suback{MsgID: 0x12, ReturnCode: sn.RejectedNotSupported}},
			{"SUBSCRIBE invalid UTF-8", []byte{0x07, 0x12, 0x20, 0x00, 0x13, 'a', 0xC3}, &sn.Suback{MsgID: 0x13, ReturnCode: sn.RejectedNotSupported}},
			{"SUBSCRIBE empty", []byte{0x05, 0x12, 0x20, 0x00, 0x14}, &sn.Suback{MsgID: 0x14, ReturnCode: sn.RejectedNotSupported}},
			{"SUBSCRIBE short a#", []byte{0x07, 0x12, 0x22, 0x00, 0x15, 'a', '#'}, &sn.Suback{MsgID: 0x15, ReturnCode: sn.RejectedNotSupported}},
			{"UNSUBSCRIBE a/#/b", []byte{0x0A, 0x14, 0x00, 0x00, 0x16, 'a', '/', '#', '/', 'b'}, &sn.Unsuback{MsgID: 0x16}},
			{"REGISTER a/+", []byte{0x09, 0x0A, 0x00, 0x00, 0x00, 0x17, 'a', '/', '+'}, &sn.Regack{MsgID: 0x17, ReturnCode: sn.RejectedNotSupported}},
			{"WILLTOPICUPD w/#", []byte{0x06, 0x1A, 0x20, 'w', '/', '#'}, &sn.WillTopicResp{ReturnCode: sn.RejectedNotSupported}},
			{"WILLTOPICUPD NUL", []byte{0x05, 0x1A, 0x20, 'w', 0x00}, &sn.WillTopicResp{ReturnCode: sn.RejectedNotSupported}},
			{"WILLMSGUPD without will", []byte{0x04, 0x1C, 'b', 'y'}, &sn.WillMsgResp{ReturnCode: sn.RejectedNotSupported}},
		} {
			n.SendRaw(c.raw)
			n.Expect(c.want)
		}
		// Dropped and counted: QoS 0 and QoS -1 with a wildcard short name.
		n.SendRaw([]byte{0x08, 0x0C, 0x02, 0x2F, 0x23, 0x00, 0x00, 0x78}) // QoS 0 "/#"
		n.SendRaw([]byte{0x08, 0x0C, 0x62, 0x2F, 0x2B, 0x00, 0x00, 0x78}) // QoS -1 "/+"
		stranger := e.Node(t)
		stranger.SendRaw([]byte{0x08, 0x0C, 0x62, 0x2F, 0x23, 0x00, 0x00, 0x78}) // QoS -1 "/#", no session
		want := map[gateway.RejectReason]uint64{
			gateway.RejectWildcardInName:  8, // 3 PUBLISH, REGISTER, WILLTOPICUPD, QoS 0, 2 QoS -1
			gateway.RejectNullChar:        3,
			gateway.RejectInvalidUTF8:     2,
			gateway.RejectMalformedFilter: 4,
			gateway.RejectEmptyTopic:      1,
		}
		Eventually(t, "every refusal counted", func() bool { return fmt.Sprint(rejected(e)) == fmt.Sprint(want) })
		n.ExpectNothing(100 * time.Millisecond)
		stranger.ExpectNothing(10 * time.Millisecond)

		// The node's session and its upstream connection work: no
		// congestion, and the broker got only the valid messages.
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: 0x60, Data: []byte("after")})
		n.Expect(&sn.Puback{TopicID: id, MsgID: 0x60, ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "valid/topic", Payload: "after", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}
		short, _ := sn.ShortTopicID("ok")
		stranger.Send(&sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicShort, TopicID: short, Data: []byte("qm1")})
		if got := w.Next(); got != (Received{Topic: "ok", Payload: "qm1", QoS: 0}) {
			t.Fatalf("broker got %+v", got)
		}
		n.Subscribe(0x61, "valid/#", sn.QoS1)
		w.ExpectNothing(100 * time.Millisecond)
		expectUpstreamIntact(t, up)
		if v := e.GW.Stats().UpstreamFailures.Load(); v != 0 {
			t.Fatalf("UpstreamFailures = %d", v)
		}
	})
}

// A will topic MQTT forbids: CONNACK 0x03 during CONNECT, and the node can
// connect again at once.
func TestRejectInvalidWill(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e, up := runGatewayUpstream(t, tg, gateway.Config{})
		w := e.Watch(t, "#")
		n := e.Node(t)
		for i, topic := range []string{"will/#", "will/+/x", "will/\x00"} {
			n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 60, ClientID: "reject-will"})
			n.Expect(&sn.WillTopicReq{})
			n.SendRaw(append([]byte{byte(3 + len(topic)), 0x07, 0x20}, topic...))
			n.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
			if got := e.GW.Stats().Rejected[gateway.RejectWildcardInName].Load() + e.GW.Stats().Rejected[gateway.RejectNullChar].Load(); got != uint64(i+1) {
				t.Fatalf("Rejected = %d after %d wills", got, i+1)
			}
		}
		n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 60, ClientID: "reject-will"})
		n.Expect(&sn.WillTopicReq{})
		n.Send(&sn.WillTopic{QoS: sn.QoS1, WillTopic: "will/ok"})
		n.Expect(&sn.WillMsgReq{})
		n.Send(&sn.WillMsg{WillMsg: []byte("bye")})
		n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
		n.Send(&sn.WillTopicUpd{QoS: sn.QoS1, WillTopic: "will/+"})
		n.Expect(&sn.WillTopicResp{ReturnCode: sn.RejectedNotSupported})
		// The will is unchanged: an update of its message still works.
		n.Send(&sn.WillMsgUpd{WillMsg: []byte("bye2")})
		n.Expect(&sn.WillMsgResp{ReturnCode: sn.Accepted})
		short, _ := sn.ShortTopicID("ok")
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicShort, TopicID: short, MsgID: 1, Data: []byte("x")})
		n.Expect(&sn.Puback{TopicID: short, MsgID: 1, ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "ok", Payload: "x", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}
		expectUpstreamIntact(t, up)
	})
}

// Reserved TopicIdType and QoS values are answered with the MsgId, not
// ignored (a node would retransmit until it declared the gateway lost).
func TestRejectReserved(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e, up := runGatewayUpstream(t, tg, gateway.Config{})
		w := e.Watch(t, "#")
		n := e.Node(t)
		n.Connect("reject-reserved", true, 60)
		for _, c := range []struct {
			name string
			raw  []byte
			want sn.Packet
		}{
			{"SUBSCRIBE TopicIdType 0b11", []byte{0x07, 0x12, 0x23, 0x00, 0x05, 0x00, 0x01}, &sn.Suback{MsgID: 5, ReturnCode: sn.RejectedNotSupported}},
			{"SUBSCRIBE QoS 0b11", []byte{0x08, 0x12, 0x60, 0x00, 0x03, 0x77, 0x2F, 0x2B}, &sn.Suback{MsgID: 3, ReturnCode: sn.RejectedNotSupported}},
			{"UNSUBSCRIBE TopicIdType 0b11", []byte{0x07, 0x14, 0x03, 0x00, 0x06, 0x00, 0x01}, &sn.Unsuback{MsgID: 6}},
			{"PUBLISH QoS1 TopicIdType 0b11", []byte{0x08, 0x0C, 0x23, 0x00, 0x01, 0x00, 0x07, 0x78}, &sn.Puback{TopicID: 1, MsgID: 7, ReturnCode: sn.RejectedNotSupported}},
			{"PUBLISH QoS2 TopicIdType 0b11", []byte{0x08, 0x0C, 0x43, 0x00, 0x01, 0x00, 0x08, 0x78}, &sn.Puback{TopicID: 1, MsgID: 8, ReturnCode: sn.RejectedNotSupported}},
		} {
			n.SendRaw(c.raw)
			n.Expect(c.want)
		}
		n.SendRaw([]byte{0x08, 0x0C, 0x03, 0x00, 0x01, 0x00, 0x00, 0x78}) // QoS 0: dropped
		n.SendRaw([]byte{0x08, 0x0C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x78}) // QoS -1: dropped
		want := fmt.Sprint(map[gateway.RejectReason]uint64{gateway.RejectReservedTopicIDType: 6, gateway.RejectReservedQoS: 1})
		Eventually(t, "reserved values counted", func() bool { return fmt.Sprint(rejected(e)) == want })
		n.ExpectNothing(100 * time.Millisecond)

		short, _ := sn.ShortTopicID("ok")
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicShort, TopicID: short, MsgID: 9, Data: []byte("x")})
		n.Expect(&sn.Puback{TopicID: short, MsgID: 9, ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "ok", Payload: "x", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}
		w.ExpectNothing(100 * time.Millisecond)
		expectUpstreamIntact(t, up)

		// From an address without a session they stay malformed datagrams:
		// dropped and counted, never answered.
		m := e.Node(t)
		before := e.GW.Stats().Malformed.Load()
		m.SendRaw([]byte{0x07, 0x12, 0x23, 0x00, 0x05, 0x00, 0x01})
		m.SendRaw([]byte{0x08, 0x12, 0x60, 0x00, 0x03, 0x77, 0x2F, 0x2B})
		Eventually(t, "malformed counted", func() bool { return e.GW.Stats().Malformed.Load() == before+2 })
		m.ExpectNothing(100 * time.Millisecond)
	})
}
