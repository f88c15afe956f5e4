package test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream/aggregate"
)

// runAggregating starts a gateway in aggregating mode with two shared
// connections named after the test.
func runAggregating(t *testing.T, tg testbroker.Target) (*Env, *aggregate.Upstream) {
	t.Helper()
	g, agg := testgw.StartAggregating(t, tg, gateway.Config{}, aggregate.Config{Connections: 2, ClientID: clientID("agg-" + t.Name())})
	return &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String()}, agg
}

// Nodes share the gateway's broker connections: the broker sees none of
// their ClientIds; a message fans out to each subscriber at the lower of
// its QoS and the node's; uplink QoS 1 and 2 are acknowledged after the
// broker's acknowledgement and reach it once.
func TestAggregatingFanOutAndUplink(t *testing.T) {
	ForEachBrokerIn(t, testbroker.Aggregating, func(t *testing.T, tg testbroker.Target) {
		e, agg := runAggregating(t, tg)
		qos := []sn.QoS{sn.QoS1, sn.QoS2, sn.QoS0}
		nodes := make([]*Node, len(qos))
		for i, q := range qos {
			nodes[i] = e.Node(t)
			nodes[i].Connect("agg-node-"+string(rune('a'+i)), true, 60)
			nodes[i].Subscribe(1, "agg/fan", q)
		}
		if b := tg.Broker(); b != nil {
			ids := b.ClientIDs()
			if slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(id, "agg-node-") }) {
				t.Fatalf("a node's ClientId reached the broker: %v", ids)
			}
		}
		if st := agg.Stats(); st.Filters != 1 || st.Nodes != 3 {
			t.Fatalf("stats %+v", st)
		}

		e.Publish(t, "agg/fan", "hello", 2, false)
		for i, n := range nodes {
			p, ok := n.Next().(*sn.Publish)
			want := min(qos[i], sn.QoS2)
			if !ok || string(p.Data) != "hello" || p.QoS != want {
				t.Fatalf("node %d: got %+v, want QoS %d", i, p, want)
			}
			switch p.QoS {
			case sn.QoS1:
				n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
			case sn.QoS2:
				n.Send(&sn.Pubrec{MsgID: p.MsgID})
				n.Expect(&sn.Pubrel{MsgID: p.MsgID})
				n.Send(&sn.Pubcomp{MsgID: p.MsgID})
			default:
			}
		}

		w := e.Watch(t, "agg/up/#")
		n := nodes[0]
		id := n.Register(2, "agg/up/1")
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: 3, Data: []byte("one")})
		n.Expect(&sn.Puback{TopicID: id, MsgID: 3, ReturnCode: sn.Accepted})
		n.Send(&sn.Publish{QoS: sn.QoS2, TopicID: id, MsgID: 4, Data: []byte("two")})
		n.Expect(&sn.Pubrec{MsgID: 4})
		n.Send(&sn.Pubrel{MsgID: 4})
		n.Expect(&sn.Pubcomp{MsgID: 4})
		for _, want := range []string{"one", "two"} {
			if r := w.Next(); r.Payload != want {
				t.Fatalf("broker got %+v, want %q", r, want)
			}
		}
		w.ExpectNothing(200 * time.Millisecond)
	})
}

// A node that subscribes to a filter other nodes hold gets its retained
// message, as in transparent mode; the nodes already subscribed do not get
// it again.
func TestAggregatingRetainedOnSubscribe(t *testing.T) {
	ForEachBrokerIn(t, testbroker.Aggregating, func(t *testing.T, tg testbroker.Target) {
		e, _ := runAggregating(t, tg)
		topic := "agg/ret/" + tg.Name // the mosquitto targets share one broker
		e.Publish(t, topic, "kept", 1, true)
		t.Cleanup(func() { e.Publish(t, topic, "", 1, true) })
		// The broker acknowledges a publish before it has handed it to
		// every subscriber (mochi): wait until it serves it as retained,
		// so that no live copy of it can still reach a node subscribing
		// now.
		if r := e.Watch(t, topic).Next(); r.Payload != "kept" || !r.Retain {
			t.Fatalf("watcher: %+v", r)
		}
		a := e.Node(t)
		a.Connect("agg-ret-a", true, 60)
		a.Subscribe(1, topic, sn.QoS1)
		p := a.Next().(*sn.Publish)
		if string(p.Data) != "kept" || !p.Retain {
			t.Fatalf("a: %+v", p)
		}
		a.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})

		b := e.Node(t)
		b.Connect("agg-ret-b", true, 60)
		b.Subscribe(1, topic, sn.QoS1)
		p = b.Next().(*sn.Publish)
		if string(p.Data) != "kept" || !p.Retain {
			t.Fatalf("b: %+v", p)
		}
		b.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		a.ExpectNothing(300 * time.Millisecond)
	})
}

// Overlapping filters of different nodes: each node gets one copy, whether
// the broker sends one copy per subscription (mosquitto) or one for all
// (the embedded broker).
func TestAggregatingOverlappingFilters(t *testing.T) {
	ForEachBrokerIn(t, testbroker.Aggregating, func(t *testing.T, tg testbroker.Target) {
		e, agg := runAggregating(t, tg)
		a := e.Node(t)
		a.Connect("agg-ov-a", true, 60)
		a.Subscribe(1, "agg/ov/#", sn.QoS1)
		b := e.Node(t)
		b.Connect("agg-ov-b", true, 60)
		b.Subscribe(1, "agg/ov/x", sn.QoS1)
		e.Publish(t, "agg/ov/x", "once", 1, false)
		for _, n := range []*Node{a, b} {
			p := nextPublish(n)
			if string(p.Data) != "once" {
				t.Fatalf("got %+v", p)
			}
			n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		}
		a.ExpectNothing(300 * time.Millisecond)
		b.ExpectNothing(0)
		if st := agg.Stats(); st.Filters != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// nextPublish returns the next PUBLISH, accepting the REGISTER that comes
// first for a topic of a wildcard subscription.
func nextPublish(n *Node) *sn.Publish {
	n.t.Helper()
	for {
		switch p := n.Next().(type) {
		case *sn.Register:
			n.Send(&sn.Regack{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		case *sn.Publish:
			return p
		default:
			n.t.Fatalf("got %T %+v, want PUBLISH", p, p)
		}
	}
}
