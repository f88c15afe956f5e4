package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Bytes out per byte in for every request an unauthenticated (spoofable)
// address can send, against the embedded broker: each at most 3 (the
// anti-amplification rule). The table is in BENCHMARKS.md:
// go test -run TestAmplificationFigures -v ./test
func TestAmplificationFigures(t *testing.T) {
	tg := testbroker.EmbeddedTarget(t)
	e := RunGateway(t, tg, gateway.Config{})
	big := strings.Repeat("R", 1000)
	for k := range 10 {
		e.Publish(t, fmt.Sprintf("fig/r%d", k), big, 1, true)
	}
	// A sleeping node with 20 messages of 1000 octets buffered.
	sleeper := e.Node(t)
	sleeper.Connect("fig-sleeper", true, 60)
	sleeper.Subscribe(1, "fig/s", sn.QoS1)
	sleeper.Send(&sn.Disconnect{HasDuration: true, Duration: 600})
	sleeper.Expect(&sn.Disconnect{})
	for k := range 20 {
		e.Publish(t, "fig/s", fmt.Sprintf("%d:%s", k, big), 1, false)
	}
	Eventually(t, "20 messages buffered", func() bool {
		c, _, err := e.GW.Client(testgw.Context(t), "fig-sleeper")
		return err == nil && c.Buffered == 20
	})

	subscribes := func(prefix string) []sn.Packet {
		out := []sn.Packet{&sn.Connect{CleanSession: true, Duration: 60, ClientID: prefix}}
		for k := range 10 {
			out = append(out, &sn.Subscribe{QoS: sn.QoS1, MsgID: uint16(k + 1), TopicName: fmt.Sprintf("fig/r%d", k)})
		}
		return out
	}
	cases := []struct {
		name string
		send []sn.Packet
	}{
		{"CONNECT", []sn.Packet{&sn.Connect{CleanSession: true, Duration: 60, ClientID: "fig-c"}}},
		{"CONNECT with will", []sn.Packet{&sn.Connect{Will: true, CleanSession: true, Duration: 60, ClientID: "fig-w"}}},
		{"SEARCHGW", []sn.Packet{&sn.SearchGW{Radius: 1}}},
		{"PUBLISH QoS 1, no session", []sn.Packet{&sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 1, Data: []byte("x")}}},
		{"REGISTER, no session", []sn.Packet{&sn.Register{MsgID: 1, TopicName: "a"}}},
		{"SUBSCRIBE, no session", []sn.Packet{&sn.Subscribe{MsgID: 1, TopicName: "#"}}},
		{"PINGREQ, no session", []sn.Packet{&sn.PingReq{}}},
		{"PINGREQ, unknown ClientId", []sn.Packet{&sn.PingReq{ClientID: "nobody"}}},
		{"CONNECT + 10 SUBSCRIBE, 1000-octet retained", subscribes("fig-s")},
		{"wake-up PINGREQ, 20 x 1000 octets buffered", []sn.Packet{&sn.PingReq{ClientID: "fig-sleeper"}}},
	}
	t.Logf("%-45s %8s %8s %6s", "request (from an unproven address)", "in", "out", "out/in")
	for i, c := range cases {
		victim := e.NodeFrom(t, fmt.Sprintf("127.0.2.%d", i+1))
		in, out := 0, 0
		for j, p := range c.send {
			victim.Send(p)
			in += p.Len()
			if j == 0 && len(c.send) > 1 {
				// The attacker paces the SUBSCRIBEs after the CONNACK
				// (here it waits for it; blind, it would wait a moment).
				b, err := victim.Conn.ReceiveRaw(Wait)
				if err != nil {
					t.Fatalf("%s: no CONNACK: %v", c.name, err)
				}
				out += len(b)
			}
		}
		rest, _ := drainBytes(t, victim, 300*time.Millisecond)
		out += rest
		ratio := float64(out) / float64(in)
		t.Logf("%-45s %8d %8d %6.2f", c.name, in, out, ratio)
		if ratio > 3 {
			t.Errorf("%s: %d octets out for %d in", c.name, out, in)
		}
	}
}
