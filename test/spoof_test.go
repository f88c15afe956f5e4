package test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// In aggregating mode a CONNECT costs no broker connection (issue 14): a
// thousand node sessions from ten source addresses (each a forwarder for a
// hundred node ids, the cheapest way to many sessions in a test) leave the
// broker with the gateway's shared connections only, and a real node still
// connects and publishes.
func TestAggregatingConnectsCostNoBrokerConnection(t *testing.T) {
	ForEachBrokerIn(t, testbroker.Aggregating, func(t *testing.T, tg testbroker.Target) {
		e, agg := runAggregating(t, tg)
		lanes := agg.Stats().Connections
		gw, err := net.ResolveUDPAddr("udp", e.Addr)
		if err != nil {
			t.Fatal(err)
		}
		const sources, perSource = 10, 100
		for s := range sources {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(s+2))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			for i := range perSource {
				b, err := sn.Marshal(&sn.Encapsulated{NodeID: []byte{byte(i)}, Message: &sn.Connect{CleanSession: true, Duration: 600, ClientID: fmt.Sprintf("spoof-%d-%d", s, i)}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.WriteToUDP(b, gw); err != nil {
					t.Fatal(err)
				}
			}
			// Every CONNECT is answered (a lost datagram would need a
			// resend: read until all CONNACKs are in or Wait passes).
			buf := make([]byte, 256)
			_ = c.SetReadDeadline(time.Now().Add(Wait))
			for got := 0; got < perSource; {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					t.Fatalf("source %d: %d of %d CONNACKs: %v", s, got, perSource, err)
				}
				p, err := sn.Unmarshal(buf[:n])
				enc, ok := p.(*sn.Encapsulated)
				if err != nil || !ok {
					t.Fatalf("source %d: got %v %v", s, p, err)
				}
				if ca, ok := enc.Message.(*sn.Connack); !ok || ca.ReturnCode != sn.Accepted {
					t.Fatalf("source %d node %v: %+v", s, enc.NodeID, enc.Message)
				}
				got++
			}
		}
		if st := agg.Stats(); st.Nodes != sources*perSource || st.Connections != lanes {
			t.Fatalf("aggregator: %d node sessions over %d connections, want %d over %d", st.Nodes, st.Connections, sources*perSource, lanes)
		}
		if b := tg.Broker(); b != nil {
			// The shared connections only (the test's watchers come later).
			if ids := b.ClientIDs(); len(ids) > lanes || slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(id, "spoof") }) {
				t.Fatalf("broker clients after the CONNECTs: %v, want at most the %d shared connections", ids, lanes)
			}
		}
		// A real node is not held up.
		w := e.Watch(t, "spoof/real")
		n := e.Node(t)
		n.Connect("real-node", true, 60)
		id := n.Register(1, "spoof/real")
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicNormal, TopicID: id, MsgID: 2, Data: []byte("hi")})
		n.Expect(&sn.Puback{TopicID: id, MsgID: 2, ReturnCode: sn.Accepted})
		if got := w.Next(); got.Payload != "hi" {
			t.Fatalf("broker got %+v", got)
		}
	})
}
