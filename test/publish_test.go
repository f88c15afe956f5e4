package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Uplink PUBLISH at QoS 0, 1 and 2 with a registered topic id (spec §6.5,
// §6.6): each reaches the broker at the node's QoS, and QoS 1 and 2 are
// acknowledged only after the broker took them.
func TestPublishUplink(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "up/#")
		n := e.Node(t)
		n.Connect("pub-up", true, 60)
		id := n.Register(1, "up/a")

		n.Send(&sn.Publish{QoS: sn.QoS0, TopicID: id, Data: []byte("q0")})
		if got := w.Next(); got != (Received{Topic: "up/a", Payload: "q0", QoS: 0}) {
			t.Fatalf("broker got %+v", got)
		}

		n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: 7, Data: []byte("q1")})
		n.Expect(&sn.Puback{TopicID: id, MsgID: 7, ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "up/a", Payload: "q1", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}

		n.Send(&sn.Publish{QoS: sn.QoS2, TopicID: id, MsgID: 8, Data: []byte("q2"), Retain: false})
		n.Expect(&sn.Pubrec{MsgID: 8})
		// A retransmitted PUBLISH before PUBREL is a duplicate: PUBREC
		// again, nothing forwarded.
		n.Send(&sn.Publish{DUP: true, QoS: sn.QoS2, TopicID: id, MsgID: 8, Data: []byte("q2")})
		n.Expect(&sn.Pubrec{MsgID: 8})
		n.Send(&sn.Pubrel{MsgID: 8})
		n.Expect(&sn.Pubcomp{MsgID: 8})
		// A retransmitted PUBREL is answered again.
		n.Send(&sn.Pubrel{MsgID: 8})
		n.Expect(&sn.Pubcomp{MsgID: 8})
		if got := w.Next(); got != (Received{Topic: "up/a", Payload: "q2", QoS: 2}) {
			t.Fatalf("broker got %+v", got)
		}
		w.ExpectNothing(200 * time.Millisecond)
	})
}

// Unknown topic ids get PUBACK "invalid topic id" at any QoS (behaviour.md).
func TestPublishUnknownTopicID(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{Predefined: map[uint16]string{1: "pre/one"}})
		n := e.Node(t)
		n.Connect("pub-unknown", true, 60)
		for _, q := range []sn.QoS{sn.QoS0, sn.QoS1, sn.QoS2} {
			n.Send(&sn.Publish{QoS: q, TopicID: 99, MsgID: 3, Data: []byte("x")})
			n.Expect(&sn.Puback{TopicID: 99, MsgID: 3, ReturnCode: sn.RejectedInvalidTopicID})
		}
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 2, MsgID: 4, Data: []byte("x")})
		n.Expect(&sn.Puback{TopicID: 2, MsgID: 4, ReturnCode: sn.RejectedInvalidTopicID})
	})
}

// Predefined ids and short names need no REGISTER (spec §6.7).
func TestPublishPredefinedAndShort(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{Predefined: map[uint16]string{1: "sensors/temperature"}})
		w := e.Watch(t, "#")
		n := e.Node(t)
		n.Connect("pub-pre", true, 60)
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 1, Data: []byte("21.5")})
		n.Expect(&sn.Puback{TopicID: 1, MsgID: 1, ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "sensors/temperature", Payload: "21.5", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}
		short, _ := sn.ShortTopicID("ab")
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicShort, TopicID: short, MsgID: 2, Data: []byte("s"), Retain: true})
		n.Expect(&sn.Puback{TopicID: short, MsgID: 2, ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "ab", Payload: "s", QoS: 1, Retain: false}) && got != (Received{Topic: "ab", Payload: "s", QoS: 1, Retain: true}) {
			t.Fatalf("broker got %+v", got)
		}
	})
}

// QoS -1 needs no connection (spec §6.8, §7.1): predefined ids and short
// names from an unknown address reach the broker at QoS 0.
func TestPublishQoSMinusOne(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{Predefined: map[uint16]string{1: "sensors/temperature"}})
		w := e.Watch(t, "#")
		n := e.Node(t)
		// Worked bytes from the wire-format notes.
		n.SendRaw([]byte{0x08, 0x0C, 0x61, 0x00, 0x01, 0x00, 0x00, 0x78})
		if got := w.Next(); got != (Received{Topic: "sensors/temperature", Payload: "x", QoS: 0}) {
			t.Fatalf("broker got %+v", got)
		}
		n.SendRaw([]byte{0x08, 0x0C, 0x62, 0x61, 0x62, 0x00, 0x00, 0x78})
		if got := w.Next(); got != (Received{Topic: "ab", Payload: "x", QoS: 0}) {
			t.Fatalf("broker got %+v", got)
		}
		// Unknown predefined id: dropped, nothing answered.
		n.Send(&sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicPredefined, TopicID: 9, Data: []byte("y")})
		n.ExpectNothing(200 * time.Millisecond)
		w.ExpectNothing(100 * time.Millisecond)
	})
}

// QoS -1 can be turned off.
func TestPublishQoSMinusOneDisabled(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{DisableQoSMinusOne: true})
	w := e.Watch(t, "#")
	n := e.Node(t)
	n.SendRaw([]byte{0x08, 0x0C, 0x62, 0x61, 0x62, 0x00, 0x00, 0x78})
	w.ExpectNothing(300 * time.Millisecond)
	if e.GW.Stats().QoSMinusOneDrop.Load() != 1 {
		t.Fatalf("drop not counted")
	}
}

// Messages from one node reach the broker in the order sent.
func TestPublishOrder(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "order/#")
		n := e.Node(t)
		n.Connect("pub-order", true, 60)
		id := n.Register(1, "order/x")
		for i := range 50 {
			n.Send(&sn.Publish{QoS: sn.QoS0, TopicID: id, Data: fmt.Appendf(nil, "%d", i)})
		}
		for i := range 50 {
			if got := w.Next(); got.Payload != fmt.Sprint(i) {
				t.Fatalf("message %d: got %q", i, got.Payload)
			}
		}
	})
}
