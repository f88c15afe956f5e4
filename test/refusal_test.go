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
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// runWith starts a gateway on tg through an upstream made from ucfg (URL
// filled in), whose warn and info lines are also captured in the returned
// logs.
func runWith(t *testing.T, tg testbroker.Target, ucfg upstream.Config, cfg gateway.Config) (*Env, *upstream.Upstream, *observer.ObservedLogs) {
	t.Helper()
	if ucfg.URL == "" {
		ucfg.URL = tg.URL
	}
	if ucfg.ReconnectBackoffMin == 0 {
		ucfg.ReconnectBackoffMin, ucfg.ReconnectBackoffMax = 50*time.Millisecond, 500*time.Millisecond
	}
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
	e, _, logs := runWith(t, tg, upstream.Config{Username: "gw", Password: "wrong"}, gateway.Config{})
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
}
