package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/config"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// broker.mode: aggregating carries the nodes over broker.connections shared
// connections: the upstream opens those, and none named after a node, and
// a node's QoS 1 publish comes back to its own subscription.
func TestServeAggregatingMode(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader("broker:\n  mode: aggregating\n  connections: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen.UDP = config.StringList{"127.0.0.1:0"}
	cfg.EmbeddedBroker.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	core, logs := observer.New(zap.DebugLevel)
	stop := startServe(t, cfg, zap.New(core), zap.NewAtomicLevelAt(zap.DebugLevel))

	var addr string
	poll(t, "gateway serving", func() bool {
		for _, e := range logs.FilterMessage("gateway serving").All() {
			if a, ok := e.ContextMap()["addrs"].([]interface{}); ok && len(a) > 0 {
				addr, _ = a[0].(string)
			}
		}
		return addr != ""
	})
	poll(t, "3 shared connections open", func() bool {
		return logs.FilterMessage("shared broker connection open").Len() == 3
	})
	if l := logs.FilterMessage("mqttsn-gateway starting").All(); len(l) != 1 || l[0].ContextMap()["mode"] != "aggregating" {
		t.Errorf("start line does not say the mode: %+v", l)
	}

	c, err := snclient.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange := func(p snpacket.Packet, want snpacket.MsgType) snpacket.Packet {
		t.Helper()
		if err := c.Send(p); err != nil {
			t.Fatal(err)
		}
		for {
			got, err := c.Receive(20 * time.Second)
			if err != nil {
				t.Fatalf("waiting for %v: %v", want, err)
			}
			if got.Type() == want {
				return got
			}
		}
	}
	if ca := exchange(&snpacket.Connect{CleanSession: true, Duration: 60, ClientID: "agg-cmd-node"}, snpacket.TypeConnack).(*snpacket.Connack); ca.ReturnCode != snpacket.Accepted {
		t.Fatalf("CONNACK %v", ca.ReturnCode)
	}
	sa := exchange(&snpacket.Subscribe{MsgID: 1, QoS: snpacket.QoS1, TopicIDType: snpacket.TopicNormal, TopicName: "cmd/agg"}, snpacket.TypeSuback).(*snpacket.Suback)
	if sa.ReturnCode != snpacket.Accepted {
		t.Fatalf("SUBACK %v", sa.ReturnCode)
	}
	if err := c.Send(&snpacket.Publish{QoS: snpacket.QoS1, TopicIDType: snpacket.TopicNormal, TopicID: sa.TopicID, MsgID: 2, Data: []byte("round trip")}); err != nil {
		t.Fatal(err)
	}
	var acked, echoed bool
	for !acked || !echoed {
		got, err := c.Receive(20 * time.Second)
		if err != nil {
			t.Fatalf("puback %v, echo %v: %v", acked, echoed, err)
		}
		switch p := got.(type) {
		case *snpacket.Puback:
			acked = p.MsgID == 2 && p.ReturnCode == snpacket.Accepted
		case *snpacket.Publish:
			echoed = string(p.Data) == "round trip"
			_ = c.Send(&snpacket.Puback{TopicID: p.TopicID, MsgID: p.MsgID})
		}
	}
	var base string
	for _, e := range logs.FilterMessageSnippet("admin listener:").All() {
		base = strings.TrimSuffix(e.ContextMap()["url"].(string), "/")
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`mqttsn_aggregate_connections{state="open"} 3`, "mqttsn_aggregate_filters 1", `mqttsn_aggregate_sessions{state="attached"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, e := range logs.All() {
		if id, _ := e.ContextMap()["client_id"].(string); strings.Contains(id, "agg-cmd-node") && strings.HasPrefix(e.LoggerName, "upstream") {
			t.Fatalf("the node's ClientId reached the broker: %s %v", e.Message, e.ContextMap())
		}
	}

	stop()
}
