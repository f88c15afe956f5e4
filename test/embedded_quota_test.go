package test

import (
	"fmt"
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// The embedded broker delivers every QoS 1 message of a fan-out, in order,
// whatever broker.receive_maximum says. With mochi 2.7.9 as released, a
// Receive Maximum smaller than the backlog stopped delivery for good
// (1,057 of 9,000 messages with receive_maximum 16, no log line). It
// holds over the gateway's in-process connection (no broker.url) and over
// loopback TCP alike.
func TestEmbeddedFanOutAnyReceiveMaximum(t *testing.T) {
	t.Parallel()
	for _, link := range []string{"in-process", "tcp"} {
		for _, recvMax := range []uint16{1, 16} {
			t.Run(fmt.Sprintf("%s/receive_maximum-%d", link, recvMax), func(t *testing.T) {
				t.Parallel()
				embeddedFanOut(t, link, recvMax)
			})
		}
	}
}

func embeddedFanOut(t *testing.T, link string, recvMax uint16) {
	t.Helper()
	tg := testbroker.EmbeddedTarget(t)
	ucfg := upstream.Config{ReceiveMaximum: recvMax}
	if link == "tcp" {
		ucfg.URL = tg.URL // a URL of its own: the harness then dials it
	}
	g := testgw.StartWith(t, tg, gateway.Config{}, ucfg)
	e := &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String()}
	const nodes, messages = 4, 200
	ns := make([]*Node, nodes)
	for i := range ns {
		ns[i] = e.Node(t)
		ns[i].Connect(fmt.Sprintf("fan-%s-%d-%d", link, recvMax, i), true, 60)
		ns[i].Subscribe(1, "fan/q1", sn.QoS1)
	}
	// The link is the one the subtest names: every node's session over
	// in-memory connections, or none of them.
	if n := tg.Broker().InProcessConns(); (link == "in-process") != (n >= nodes) || link == "tcp" && n != 0 {
		t.Fatalf("%s: %d in-process connections for %d nodes", link, n, nodes)
	}
	// The broker's backlog for each node's upstream connection
	// exceeds its Receive Maximum: the gateway holds one message in
	// flight per node until the node acknowledges it.
	for i := range messages {
		if err := tg.Broker().Publish("fan/q1", fmt.Appendf(nil, "%d", i), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range ns {
		for want := range messages {
			p, ok := n.Next().(*sn.Publish)
			if !ok || string(p.Data) != fmt.Sprint(want) || p.QoS != sn.QoS1 {
				t.Fatalf("node %d, message %d: got %+v", i, want, p)
			}
			n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		}
	}
}
