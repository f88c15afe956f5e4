package test

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Issue 15: real clients that forget, that read one packet, and that
// cannot take big messages.

// nextExcept returns the next datagram that skip does not match (stale
// retransmissions from before a step, say).
func (n *Node) nextExcept(skip func(sn.Packet) bool) sn.Packet {
	n.t.Helper()
	for {
		if p := n.Next(); !skip(p) {
			return p
		}
	}
}

// expectRegister expects a REGISTER of name and acknowledges it.
func (n *Node) expectRegister(p sn.Packet, name string) uint16 {
	n.t.Helper()
	r, ok := p.(*sn.Register)
	if !ok || r.TopicName != name || r.TopicID == 0 {
		n.t.Fatalf("want REGISTER %q, got %T %+v", name, p, p)
	}
	n.Send(&sn.Regack{TopicID: r.TopicID, MsgID: r.MsgID, ReturnCode: sn.Accepted})
	return r.TopicID
}

// expectPublish expects a PUBLISH with topic id and payload.
func (n *Node) expectPublish(p sn.Packet, topicID uint16, payload string) *sn.Publish {
	n.t.Helper()
	pub, ok := p.(*sn.Publish)
	if !ok || pub.TopicID != topicID || string(pub.Data) != payload {
		n.t.Fatalf("want PUBLISH id %d %q, got %T %+v", topicID, payload, p, p)
	}
	return pub
}

func isConnack(p sn.Packet) bool {
	c, ok := p.(*sn.Connack)
	return ok && c.ReturnCode == sn.Accepted
}

// A new client process with CleanSession=0 reusing a ClientId: the gateway
// REGISTERs each topic id again before the first PUBLISH on it (spec
// §6.10), both for a message queued while the node was away and for one
// that was in flight to the old process.
func TestCleanSessionZeroNewProcessReregisters(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})

		// Process 1 subscribes and goes away cleanly; a message is
		// published meanwhile.
		p1 := e.Node(t)
		p1.Connect("forgetful", false, 60)
		tid := p1.Subscribe(1, "forget/t", sn.QoS1).TopicID
		p1.Send(&sn.Disconnect{})
		p1.Expect(&sn.Disconnect{})
		e.Publish(t, "forget/t", "queued", 1, false)

		// Process 2, a new socket: REGISTER first, then the message.
		p2 := e.Node(t)
		p2.Connect("forgetful", false, 60)
		if id := p2.expectRegister(p2.Next(), "forget/t"); id != tid {
			t.Fatalf("REGISTER with id %d, want the subscription's %d", id, tid)
		}
		pub := p2.expectPublish(p2.Next(), tid, "queued")
		p2.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.Accepted})
		// As mqtt-sn-sub -c does, it subscribes again: the same id. A
		// second copy of "queued" may come first (QoS 1 is at least once:
		// the old upstream session can still have had it in flight).
		p2.Send(&sn.Subscribe{QoS: sn.QoS1, MsgID: 2, TopicName: "forget/t"})
		for {
			p := p2.Next()
			if dup, ok := p.(*sn.Publish); ok && string(dup.Data) == "queued" {
				p2.Send(&sn.Puback{TopicID: tid, MsgID: dup.MsgID, ReturnCode: sn.Accepted})
				continue
			}
			if sa, ok := p.(*sn.Suback); !ok || sa.MsgID != 2 || sa.ReturnCode != sn.Accepted || sa.TopicID != tid {
				t.Fatalf("SUBSCRIBE again: got %T %+v, want SUBACK with id %d", p, p, tid)
			}
			break
		}
		// Known again: the next message needs no REGISTER.
		e.Publish(t, "forget/t", "next", 1, false)
		pub = p2.expectPublish(p2.Next(), tid, "next")
		p2.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.Accepted})

		// Process 3 takes over while a message is in flight to process 2
		// (which never acknowledges it).
		e.Publish(t, "forget/t", "in flight", 1, false)
		p2.expectPublish(p2.Next(), tid, "in flight")
		p3 := e.Node(t)
		p3.Connect("forgetful", false, 60)
		p3.expectRegister(p3.Next(), "forget/t")
		pub = p3.expectPublish(p3.Next(), tid, "in flight")
		p3.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.Accepted})
		p3.ExpectNothing(100 * time.Millisecond)
	})
}

// A node that answers PUBLISH with "invalid topic id" gets a REGISTER and
// the message once more; refused again, the message is dropped, not
// retried.
func TestInvalidTopicIDReregistersOnce(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("invalid-id", true, 60)
		tid := n.Subscribe(1, "invalid/t", sn.QoS1).TopicID

		e.Publish(t, "invalid/t", "m1", 1, false)
		pub := n.expectPublish(n.Next(), tid, "m1")
		n.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.RejectedInvalidTopicID})
		if id := n.expectRegister(n.Next(), "invalid/t"); id != tid {
			t.Fatalf("REGISTER id %d, want %d", id, tid)
		}
		pub2 := n.expectPublish(n.Next(), tid, "m1")
		if pub2.DUP || pub2.MsgID == pub.MsgID {
			t.Fatalf("resent as %+v after %+v: want a new transmission", pub2, pub)
		}
		// Refused again: dropped, and the next message goes out at once.
		n.Send(&sn.Puback{TopicID: tid, MsgID: pub2.MsgID, ReturnCode: sn.RejectedInvalidTopicID})
		e.Publish(t, "invalid/t", "m2", 1, false)
		pub = n.expectPublish(n.Next(), tid, "m2")
		n.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.Accepted})
		n.ExpectNothing(100 * time.Millisecond)
	})
}

// A client that reads exactly one datagram after its QoS 1/2 PUBLISH (the
// Paho pub0sub1 sample) while subscribed to its own topic: the broker's
// copy of its message is held until the PUBACK/PUBREC went out.
func TestOwnPublishAnsweredBeforeDownlink(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("pub0sub1", true, 60)
		tid := n.Subscribe(1, "pub0sub1/t", sn.QoS1).TopicID
		for i := range 5 {
			msgID := uint16(10 + i)
			n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: tid, MsgID: msgID, Data: []byte("own")})
			n.Expect(&sn.Puback{TopicID: tid, MsgID: msgID, ReturnCode: sn.Accepted}) // the one datagram read
			pub := n.expectPublish(n.Next(), tid, "own")
			n.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.Accepted})
		}
		n.Send(&sn.Publish{QoS: sn.QoS2, TopicID: tid, MsgID: 20, Data: []byte("own2")})
		n.Expect(&sn.Pubrec{MsgID: 20})
		n.Send(&sn.Pubrel{MsgID: 20})
		// PUBCOMP and the broker's copy, in either order.
		gotComp, gotPub := false, false
		for !gotComp || !gotPub {
			switch p := n.Next().(type) {
			case *sn.Pubcomp:
				gotComp = p.MsgID == 20
			case *sn.Publish:
				n.expectPublish(p, tid, "own2")
				n.Send(&sn.Puback{TopicID: tid, MsgID: p.MsgID, ReturnCode: sn.Accepted})
				gotPub = true
			default:
				t.Fatalf("got %T %+v", p, p)
			}
		}
	})
}

// A node that ignores PUBLISHes over 255 bytes (mqtt-sn-tools): the big
// message exhausts the retransmissions and the node is lost, and the lost
// line says how big the message was and which setting prevents it; the
// big message is dropped and counted, and the one queued behind it is
// delivered when the node connects again. With limits.max_packet_size
// 255 the big message is never sent.
func TestOversizedMessageDoesNotBlockQueue(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		core, logs := observer.New(zapcore.InfoLevel)
		log := zap.New(zapcore.NewTee(testgw.Logger(t).Core(), core))
		cfg := gateway.Config{RetryInterval: 50 * time.Millisecond, RetryCount: 2}
		e := RunGateway(t, tg, cfg, gateway.WithLogger(log))
		big := strings.Repeat("B", 300)
		isBig := func(p sn.Packet) bool { pub, ok := p.(*sn.Publish); return ok && len(pub.Data) > 255 }

		n := e.Node(t)
		n.Connect("small-buffer", false, 60)
		tid := n.Subscribe(1, "small/t", sn.QoS1).TopicID
		e.Publish(t, "small/t", big, 1, false)
		e.Publish(t, "small/t", "small", 1, false)
		n.expectRegister(n.Next(), "small/t") // the address proves itself (anti-amplification)
		n.expectPublish(n.Next(), tid, big)   // ignored, as are its retransmissions
		// The lost line is written just after the counter: wait for both.
		Eventually(t, "node lost", func() bool {
			return e.GW.Stats().Lost.Load() == 1 && len(logs.FilterMessage("lost").All()) > 0
		})
		if d := e.GW.Stats().BufferDroppedUnacked.Load(); d != 1 {
			t.Fatalf("BufferDroppedUnacked = %d, want 1", d)
		}
		lost := logs.FilterMessage("lost").All()
		if len(lost) != 1 {
			t.Fatalf("%d lost lines", len(lost))
		}
		f := lost[0].ContextMap()
		if size := (&sn.Publish{QoS: sn.QoS1, TopicID: tid, Data: []byte(big)}).Len(); f["unacked_size"] != int64(size) || !strings.Contains(f["hint"].(string), "limits.max_packet_size") {
			t.Fatalf("lost line %v", f)
		}

		n.Send(&sn.Connect{Duration: 60, ClientID: "small-buffer"})
		if p := n.nextExcept(isBig); !isConnack(p) {
			t.Fatalf("want CONNACK, got %T %+v", p, p)
		}
		n.expectRegister(n.nextExcept(isBig), "small/t")
		// A REGISTER may come again (retransmitted at the 50 ms retry
		// interval before the REGACK got in): answer each.
		p := n.nextExcept(isBig)
		for r, ok := p.(*sn.Register); ok && r.TopicName == "small/t"; r, ok = p.(*sn.Register) {
			n.Send(&sn.Regack{TopicID: r.TopicID, MsgID: r.MsgID, ReturnCode: sn.Accepted})
			p = n.nextExcept(isBig)
		}
		pub := n.expectPublish(p, tid, "small")
		n.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.Accepted})

		// With limits.max_packet_size set the big message is dropped,
		// counted, and never sent.
		e2 := RunGateway(t, tg, gateway.Config{MaxPacketSize: 255})
		m := e2.Node(t)
		m.Connect("small-buffer-2", true, 60)
		tid = m.Subscribe(1, "small2/t", sn.QoS1).TopicID
		e2.Publish(t, "small2/t", big, 1, false)
		e2.Publish(t, "small2/t", "small", 1, false)
		pub = m.expectPublish(m.Next(), tid, "small")
		m.Send(&sn.Puback{TopicID: tid, MsgID: pub.MsgID, ReturnCode: sn.Accepted})
		Eventually(t, "the big message dropped and counted", func() bool { return e2.GW.Stats().BufferDroppedTooLarge.Load() == 1 })
		if l := e2.GW.Stats().Lost.Load(); l != 0 {
			t.Fatalf("Lost = %d", l)
		}
	})
}

// QoS -1 publishes the gateway cannot forward are counted under their own
// reason and logged at debug.
func TestQoSMinusOneDropsCounted(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		core, logs := observer.New(zapcore.DebugLevel)
		log := zap.New(zapcore.NewTee(testgw.Logger(t).Core(), core))
		e := RunGateway(t, tg, gateway.Config{Predefined: map[uint16]string{1: "pre/one"}}, gateway.WithLogger(log))
		w := e.Watch(t, "#")
		n := e.Node(t)
		// Long topic name (TopicIdType normal), and an unknown predefined id.
		n.SendRaw(append([]byte{0x0E, 0x0C, 0x60, 0x00, 0x05, 0x00, 0x00}, []byte("long/tx")...))
		n.Send(&sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicPredefined, TopicID: 9, Data: []byte("x")})
		Eventually(t, "drops counted", func() bool {
			st := e.GW.Stats()
			return st.Rejected[gateway.RejectQoSMinusOneLongTopic].Load() == 1 &&
				st.Rejected[gateway.RejectQoSMinusOneUnknownPredefined].Load() == 1
		})
		// The log line may follow the counter: wait for both lines.
		Eventually(t, "a debug line per reason", func() bool {
			reasons := map[string]bool{}
			for _, l := range logs.FilterMessage("QoS -1 publish dropped").All() {
				if l.Level == zapcore.DebugLevel {
					reasons[l.ContextMap()["reason"].(string)] = true
				}
			}
			return reasons["qos_minus_one_long_topic"] && reasons["qos_minus_one_unknown_predefined"]
		})
		// A valid one still goes through.
		n.Send(&sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicPredefined, TopicID: 1, Data: []byte("ok")})
		if got := w.Next(); got != (Received{Topic: "pre/one", Payload: "ok"}) {
			t.Fatalf("broker got %+v", got)
		}
		if d := e.GW.Stats().QoSMinusOneDrop.Load(); d != 2 {
			t.Fatalf("QoSMinusOneDrop = %d, want 2", d)
		}
	})
}
