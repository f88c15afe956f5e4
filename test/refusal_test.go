package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// runWith starts a gateway on tg through an upstream made from ucfg (URL
// filled in), whose warn and info lines are also captured in the returned
// logs.
func runWith(t *testing.T, tg testbroker.Target, ucfg upstream.Config, cfg gateway.Config) (*Env, *upstream.Upstream, *observer.ObservedLogs) {
	t.Helper()
	ucfg = testgw.UpstreamConfig(tg, ucfg)
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(zapcore.NewTee(testgw.Logger(t).Core(), core))
	up, err := upstream.New(ucfg, log.Named("upstream"))
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	g := testgw.StartUpstream(t, up, cfg, gateway.WithLogger(log.Named("gateway")))
	return &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String(), Cfg: cfg}, up, logs
}

// warnLines returns the captured warn lines whose fields mention s.
func warnLines(logs *observer.ObservedLogs, s string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
		for _, v := range e.ContextMap() {
			if str, ok := v.(string); ok && strings.Contains(str, s) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// A wrong broker password: the node gets CONNACK "not supported" (it
// would never get in by retrying), and the operator a warn line that names
// the reason and the keys to fix, once however many nodes try.
func TestWrongBrokerPassword(t *testing.T) {
	tg := testbroker.MosquittoWithUsers(t, map[string]string{"gw": "right"})
	e, up, logs := runWith(t, tg, upstream.Config{Username: "gw", Password: "wrong"}, gateway.Config{})
	for _, id := range []string{"pw1", "pw2", "pw3"} {
		n := e.Node(t)
		n.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: id})
		n.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	}
	lines := warnLines(logs, "broker.password")
	if len(lines) != 1 {
		t.Fatalf("%d warn lines naming broker.password, want 1 (rate-limited): %v", len(lines), logs.All())
	}
	if f := lines[0].ContextMap(); f["reason"] != "not authorized" && f["reason"] != "bad user name or password" {
		t.Fatalf("warn line %v", f)
	}
	// Readiness says so too.
	p := upstream.NewProber(up, upstream.ProbeClientID(1), nil)
	if err := p.Check(testgw.Context(t)); err == nil {
		t.Fatal("probe succeeded with a wrong password")
	}
	if st := p.Status(); st.Up || !strings.Contains(st.LastError, "broker.username / broker.password") {
		t.Fatalf("probe status %+v", st)
	}
}

// Two gateways on one broker: a CleanSession=0 node moves from the first
// to the second. The first stops reconnecting its upstream session (which
// would take the broker session back), the node receives every QoS 1
// message published afterwards through the second, and its old address
// gets DISCONNECT from the first.
//
// Transparent mode only: in aggregating mode the broker never sees the
// node's ClientId, so there is no broker session to move.
func TestNodeMovesBetweenGateways(t *testing.T) {
	ForEachBrokerIn(t, "", func(t *testing.T, tg testbroker.Target) {
		a, upA, logsA := runWith(t, tg, upstream.Config{}, gateway.Config{GatewayID: 1})
		b, upB, _ := runWith(t, tg, upstream.Config{}, gateway.Config{GatewayID: 2})
		const topic = "roam/t"

		old := a.Node(t)
		old.Connect("roamer", false, 60)
		old.Subscribe(1, topic, sn.QoS1)

		n := b.Node(t)
		n.Connect("roamer", false, 60)
		// On MQTT 3.1.1 the broker gives no reason when it closes the first
		// gateway's session, so that gateway may take it back a few times
		// before it stands down: a SUBSCRIBE meanwhile gets congestion,
		// and the node retries, as a node does.
		var sa *sn.Suback
		for deadline := time.Now().Add(Wait); ; {
			n.Send(&sn.Subscribe{MsgID: 1, QoS: sn.QoS1, TopicIDType: sn.TopicNormal, TopicName: topic})
			got, ok := n.Next().(*sn.Suback)
			if ok && got.ReturnCode == sn.Accepted {
				sa = got
				break
			}
			if !ok || got.ReturnCode != sn.RejectedCongestion || time.Now().After(deadline) {
				t.Fatalf("SUBSCRIBE %q: got %+v", topic, got)
			}
		}

		Eventually(t, "the first gateway gives the session up", func() bool {
			return upA.TakenOver() == 1 && len(logsA.FilterMessage("node moved to another connection").All()) > 0
		})
		if len(logsA.FilterMessage("node moved to another connection").All()) != 1 {
			t.Fatalf("want one 'node moved' line from the first gateway: %v", logsA.All())
		}
		connects := upA.Stats().Connects

		pub := b.mqttClient(t, "roam-publisher", nil)
		const count = 25
		for i := range count {
			ctx, cancel := context.WithTimeout(context.Background(), Wait)
			_, err := pub.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(fmt.Sprint(i)), QoS: 1})
			cancel()
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		for i := range count {
			p, ok := n.Next().(*sn.Publish)
			if !ok || p.TopicID != sa.TopicID || string(p.Data) != fmt.Sprint(i) {
				t.Fatalf("message %d: got %+v", i, p)
			}
			n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		}
		if got := upA.Stats().Connects; got != connects {
			t.Fatalf("the first gateway connected again: %d connects, was %d", got, connects)
		}
		if upB.TakenOver() != 0 {
			t.Fatal("the second gateway gave the session up too")
		}
		// The first gateway tells the node's old address to connect again.
		old.Send(&sn.PingReq{})
		old.Expect(&sn.Disconnect{})
	})
}

// A node's AUTH PLAIN (as bisquitt-pub --user/--password sends it) logs it
// in on the broker as its own user; wrong credentials get "not supported",
// and a malformed AUTH never reaches the broker at all.
func TestNodeAuthPlain(t *testing.T) {
	tg := testbroker.MosquittoWithUsers(t, map[string]string{"node1": "n1-secret"})
	// The gateway has no credentials of its own: only the node's get in.
	e, _, _ := runWith(t, tg, upstream.Config{}, gateway.Config{RequireAuth: true})

	n := e.Node(t)
	n.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "authed"})
	n.Send(sn.NewAuthPlain("node1", []byte("n1-secret")))
	n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
	Eventually(t, "mosquitto logs node1 in as authed", func() bool {
		return strings.Contains(tg.Output(), "as authed (p5, c1, k60, u'node1')")
	})

	bad := e.Node(t)
	bad.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "wrongpw"})
	bad.Send(sn.NewAuthPlain("node1", []byte("guess")))
	bad.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	// The wrong password reached the broker and was refused there.
	// (mosquitto logs the refusal just after sending it.)
	Eventually(t, "mosquitto logs the refusal", func() bool { return strings.Contains(tg.Output(), "not authorised") })
	conns := strings.Count(tg.Output(), "New connection from")

	mal := e.Node(t)
	mal.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "malformed"})
	mal.Send(&sn.Auth{Method: "PLAIN", Data: []byte("node1:n1-secret")})
	mal.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	// The malformed AUTH did not reach it at all.
	if n := strings.Count(tg.Output(), "New connection from"); n != conns {
		t.Fatalf("%d broker connections after the malformed AUTH, %d before", n, conns)
	}
}

// broker.username and broker.password with {client_id}: each node logs in
// as itself, and a node the broker does not know is refused for good.
func TestPerNodeCredentials(t *testing.T) {
	tg := testbroker.MosquittoWithUsers(t, map[string]string{"dev-1": "key-dev-1"})
	e, _, _ := runWith(t, tg, upstream.Config{Username: "{client_id}", Password: "key-{client_id}", ClientIDPrefix: "gw1-"}, gateway.Config{})
	n := e.Node(t)
	n.Connect("dev-1", true, 60)
	Eventually(t, "mosquitto logs dev-1 in as itself", func() bool {
		return strings.Contains(tg.Output(), "as gw1-dev-1 (p5, c1, k60, u'dev-1')")
	})
	stranger := e.Node(t)
	stranger.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "dev-2"})
	stranger.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
}
