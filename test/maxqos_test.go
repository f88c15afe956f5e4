package test

import (
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// broker.max_qos 1: a node's QoS 2 PUBLISH stays exactly-once with the
// node (PUBREC, PUBREL, PUBCOMP; a duplicate is not forwarded) and reaches
// the broker at QoS 1; a QoS 2 subscription is made, and granted, at QoS 1.
func TestMaxQoSCapsTheBrokerLeg(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		one := byte(1)
		tg.MaxQoS = &one
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "cap/up")
		n := e.Node(t)
		n.Connect("cap-pub", true, 60)
		id := n.Register(1, "cap/up")
		n.Send(&sn.Publish{QoS: sn.QoS2, TopicID: id, MsgID: 5, Data: []byte("two")})
		n.Expect(&sn.Pubrec{MsgID: 5})
		n.Send(&sn.Publish{DUP: true, QoS: sn.QoS2, TopicID: id, MsgID: 5, Data: []byte("two")})
		n.Expect(&sn.Pubrec{MsgID: 5})
		n.Send(&sn.Pubrel{MsgID: 5})
		n.Expect(&sn.Pubcomp{MsgID: 5})
		if got := w.Next(); got != (Received{Topic: "cap/up", Payload: "two", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}

		sa := n.Subscribe(2, "cap/down", sn.QoS2)
		if sa.QoS != sn.QoS1 {
			t.Fatalf("SUBACK %+v, want QoS 1", sa)
		}
		e.Publish(t, "cap/down", "d", 2, false)
		p := n.Next().(*sn.Publish)
		if p.QoS != sn.QoS1 || string(p.Data) != "d" {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		w.ExpectNothing(100 * time.Millisecond)
	})
}
