package test

import (
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// SUBSCRIBE by name returns the topic id in SUBACK; the gateway then
// publishes with it at the lower of the two QoS levels (spec §6.9, §6.10).
func TestSubscribeByNameAndDowngrade(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("sub-name", true, 60)
		sa := n.Subscribe(1, "down/a", sn.QoS1)
		if sa.TopicID == 0 || sa.QoS != sn.QoS1 {
			t.Fatalf("SUBACK %+v", sa)
		}
		// QoS 2 publication, QoS 1 subscription: delivered at QoS 1.
		e.Publish(t, "down/a", "hello", 2, false)
		p := n.Next().(*sn.Publish)
		if p.QoS != sn.QoS1 || p.TopicIDType != sn.TopicNormal || p.TopicID != sa.TopicID || string(p.Data) != "hello" || p.MsgID == 0 {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		// QoS 0 publication stays QoS 0.
		e.Publish(t, "down/a", "zero", 0, false)
		p = n.Next().(*sn.Publish)
		if p.QoS != sn.QoS0 || string(p.Data) != "zero" {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.ExpectNothing(200 * time.Millisecond)
	})
}

// Downlink QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP, delivered once.
func TestDownlinkQoS2(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("sub-q2", true, 60)
		sa := n.Subscribe(1, "q2/a", sn.QoS2)
		e.Publish(t, "q2/a", "once", 2, false)
		p := n.Next().(*sn.Publish)
		if p.QoS != sn.QoS2 || p.TopicID != sa.TopicID || string(p.Data) != "once" {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Pubrec{MsgID: p.MsgID})
		n.Expect(&sn.Pubrel{MsgID: p.MsgID})
		n.Send(&sn.Pubcomp{MsgID: p.MsgID})
		n.ExpectNothing(200 * time.Millisecond)
	})
}

// A wildcard subscription gets topic id 0; before the first PUBLISH of each
// concrete topic the gateway REGISTERs it and waits for REGACK (§6.10).
func TestSubscribeWildcardRegisters(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("sub-wild", true, 60)
		sa := n.Subscribe(1, "w/+", sn.QoS1)
		if sa.TopicID != 0 {
			t.Fatalf("wildcard SUBACK topic id %d, want 0", sa.TopicID)
		}
		e.Publish(t, "w/x", "1", 1, false)
		reg, ok := n.Next().(*sn.Register)
		if !ok || reg.TopicName != "w/x" || reg.TopicID == 0 {
			t.Fatalf("want REGISTER w/x, got %+v", reg)
		}
		n.ExpectNothing(100 * time.Millisecond) // PUBLISH waits for REGACK
		n.Send(&sn.Regack{TopicID: reg.TopicID, MsgID: reg.MsgID, ReturnCode: sn.Accepted})
		p := n.Next().(*sn.Publish)
		if p.TopicID != reg.TopicID || string(p.Data) != "1" || p.QoS != sn.QoS1 {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID})
		// Second message on the same topic: no second REGISTER.
		e.Publish(t, "w/x", "2", 1, false)
		p = n.Next().(*sn.Publish)
		if p.TopicID != reg.TopicID || string(p.Data) != "2" {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID})
		// A REGISTER the node refuses drops that message (§6.10).
		e.Publish(t, "w/y", "3", 1, false)
		reg = n.Next().(*sn.Register)
		n.Send(&sn.Regack{TopicID: reg.TopicID, MsgID: reg.MsgID, ReturnCode: sn.RejectedNotSupported})
		n.ExpectNothing(200 * time.Millisecond)
	})
}

// Subscriptions by predefined id and short name deliver with that id type.
func TestSubscribePredefinedAndShort(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{Predefined: map[uint16]string{5: "cmd/all"}})
		n := e.Node(t)
		n.Connect("sub-pre", true, 60)
		n.Send(&sn.Subscribe{QoS: sn.QoS0, TopicIDType: sn.TopicPredefined, TopicID: 5, MsgID: 1})
		n.Expect(&sn.Suback{QoS: sn.QoS0, TopicID: 5, MsgID: 1})
		short, _ := sn.ShortTopicID("zz")
		n.Send(&sn.Subscribe{QoS: sn.QoS0, TopicIDType: sn.TopicShort, TopicID: short, MsgID: 2})
		n.Expect(&sn.Suback{QoS: sn.QoS0, TopicID: short, MsgID: 2})
		n.Send(&sn.Subscribe{QoS: sn.QoS0, TopicIDType: sn.TopicPredefined, TopicID: 6, MsgID: 3})
		n.Expect(&sn.Suback{MsgID: 3, ReturnCode: sn.RejectedInvalidTopicID})

		e.Publish(t, "cmd/all", "p", 0, false)
		n.Expect(&sn.Publish{TopicIDType: sn.TopicPredefined, TopicID: 5, Data: []byte("p")})
		e.Publish(t, "zz", "s", 0, false)
		n.Expect(&sn.Publish{TopicIDType: sn.TopicShort, TopicID: short, Data: []byte("s")})

		n.Send(&sn.Unsubscribe{TopicIDType: sn.TopicShort, TopicID: short, MsgID: 4})
		n.Expect(&sn.Unsuback{MsgID: 4})
		e.Publish(t, "zz", "gone", 0, false)
		e.Publish(t, "cmd/all", "still", 0, false)
		n.Expect(&sn.Publish{TopicIDType: sn.TopicPredefined, TopicID: 5, Data: []byte("still")})
	})
}

// Retained messages reach a new subscriber after its SUBACK.
func TestSubscribeRetained(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		e.Publish(t, "ret/a", "kept", 1, true)
		n := e.Node(t)
		n.Connect("sub-ret", true, 60)
		sa := n.Subscribe(1, "ret/a", sn.QoS1)
		p := n.Next().(*sn.Publish)
		if !p.Retain || string(p.Data) != "kept" || p.TopicID != sa.TopicID {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID})
		e.Publish(t, "ret/a", "", 1, true) // clear it for other tests
	})
}

// A REGISTERed topic id is usable for publishing and is the same for the
// same name; wildcards cannot be registered (behaviour.md).
func TestRegister(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("reg", true, 60)
		a := n.Register(1, "r/a")
		if again := n.Register(2, "r/a"); again != a {
			t.Fatalf("same name got ids %d and %d", a, again)
		}
		if b := n.Register(3, "r/b"); b == a {
			t.Fatalf("different names got the same id %d", a)
		}
		n.Send(&sn.Register{MsgID: 4, TopicName: "r/+"})
		n.Expect(&sn.Regack{MsgID: 4, ReturnCode: sn.RejectedNotSupported})
	})
}

// Downlink retransmission: an unacknowledged PUBLISH is resent with DUP
// after Tretry, and after Nretry retransmissions the node is lost.
func TestDownlinkRetransmission(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{RetryInterval: 100 * time.Millisecond, RetryCount: 2})
	n := e.Node(t)
	n.Connect("retx", true, 60)
	n.Subscribe(1, "rx/a", sn.QoS1)
	e.Publish(t, "rx/a", "m", 1, false)
	first := n.Next().(*sn.Publish)
	if first.DUP {
		t.Fatal("first transmission has DUP set")
	}
	for range 2 {
		p := n.Next().(*sn.Publish)
		if !p.DUP || p.MsgID != first.MsgID || string(p.Data) != "m" {
			t.Fatalf("retransmission %+v", p)
		}
	}
	// Retries exhausted: the node is lost; its traffic now gets DISCONNECT.
	Eventually(t, "node declared lost", func() bool { return e.GW.Stats().Lost.Load() == 1 })
	n.Send(&sn.PingReq{})
	n.Expect(&sn.Disconnect{})
}
