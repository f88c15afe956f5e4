package upstream

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// The probe follows the broker down and up, logging each change once.
func TestProberFollowsBroker(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	core, logs := observer.New(zapcore.InfoLevel)
	u, err := New(Config{URL: tg.URL, ProbeInterval: 20 * time.Millisecond, ConnectTimeout: 2 * time.Second}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	p := NewProber(u, ProbeClientID(7), zap.New(core))
	if st := p.Status(); st.Up || !st.Checked.IsZero() {
		t.Fatalf("before the first probe: %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitStatus := func(what string, ok func(LinkStatus) bool) LinkStatus {
		t.Helper()
		var st LinkStatus
		eventually(t, what, func() error {
			if st = p.Status(); !ok(st) {
				return errNotYet
			}
			return nil
		})
		return st
	}
	up := waitStatus("up", func(st LinkStatus) bool { return st.Up })
	if up.Protocol != "5" || up.LastError != "" || up.Since.IsZero() || up.Since.After(up.Checked) {
		t.Fatalf("up: %+v", up)
	}
	tg.Stop(t)
	// (The first probe may meet the broker shutting down, EOF.)
	down := waitStatus("down", func(st LinkStatus) bool { return !st.Up && strings.Contains(st.LastError, "connection refused") })
	if !strings.Contains(down.LastError, "broker.url") || !down.Since.After(up.Since) {
		t.Fatalf("down: %+v", down)
	}
	// Still down at the next probes: Since stays.
	waitStatus("probed again", func(st LinkStatus) bool { return st.Checked.After(down.Checked) })
	if st := p.Status(); st.Since != down.Since {
		t.Fatalf("Since moved while down: %+v", st)
	}
	tg.Start(t)
	waitStatus("up again", func(st LinkStatus) bool { return st.Up })

	if n := logs.FilterMessage("broker link down").Len(); n != 1 {
		t.Errorf("%d 'down' lines, want 1", n)
	}
	if n := logs.FilterMessage("broker link up").Len(); n != 2 {
		t.Errorf("%d 'up' lines, want 2", n)
	}
	if e := logs.FilterMessage("broker link down").All(); len(e) == 1 && (e[0].Level != zapcore.WarnLevel || e[0].ContextMap()["reason"] == nil) {
		t.Errorf("down line %v", e[0])
	}
}

// A wrong password: the probe says so, and names the keys to fix.
func TestProberWrongPassword(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.MosquittoWithUsers(t, map[string]string{"gw": "right"})
	u, err := New(Config{URL: tg.URL, Username: "gw", Password: "wrong"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProber(u, ProbeClientID(1), nil)
	if err := p.Check(context.Background()); !gateway.IsPermanent(err) {
		t.Fatalf("Check: %v", err)
	}
	if st := p.Status(); st.Up || !strings.Contains(st.LastError, "broker.username / broker.password") || st.Checked.IsZero() {
		t.Fatalf("status %+v", st)
	}
}

// With node credentials required and none of the gateway's own, the
// broker asking for credentials is a working link.
func TestProberNodeAuth(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.MosquittoWithUsers(t, map[string]string{"node1": "pw"})
	u, err := New(Config{URL: tg.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProber(u, ProbeClientID(1), nil)
	if err := p.Check(context.Background()); err == nil || p.Status().Up {
		t.Fatalf("without node auth: %v, %+v", err, p.Status())
	}
	p.SetNodeAuth(true)
	_ = p.Check(context.Background())
	if st := p.Status(); !st.Up || !strings.Contains(st.LastError, "broker.username") {
		t.Fatalf("with node auth: %+v", st)
	}
}
