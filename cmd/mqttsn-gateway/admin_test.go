package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/config"
)

// With admin.listen set, serve starts the admin listener with the broker
// check, the upstream counters and the run-time log level, and stops it
// with the gateway.
func TestServeStartsAdmin(t *testing.T) {
	cfg := config.Default()
	cfg.Listen.UDP = config.StringList{"127.0.0.1:0"}
	cfg.EmbeddedBroker.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	core, logs := observer.New(zap.InfoLevel)
	lvl := zap.NewAtomicLevelAt(zap.InfoLevel)
	stop := startServe(t, cfg, zap.New(core), lvl)

	// The listener logs its URL; no other event says it is up.
	var base string
	poll(t, "admin listener started", func() bool {
		for _, e := range logs.FilterMessageSnippet("admin listener:").All() {
			base = strings.TrimSuffix(e.ContextMap()["url"].(string), "/")
		}
		return base != ""
	})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll(t, "/readyz 200", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "mqttsn_upstream_connected_sessions 0") {
		t.Errorf("/metrics: %d, upstream gauge missing", code)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/loglevel", strings.NewReader(`{"level":"debug"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || lvl.Level() != zap.DebugLevel {
		t.Errorf("PUT /loglevel: %d, level %v", resp.StatusCode, lvl.Level())
	}

	stop()
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("admin listener still up after the gateway stopped")
	}
}

// startServe runs serve in the background; stop cancels it and fails the
// test unless it returns cleanly within 20 s. stop may be called twice.
func startServe(t *testing.T, cfg *config.File, log *zap.Logger, lvl zap.AtomicLevel) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, lvl, nil) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("serve did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// poll checks cond every 10ms until it holds, failing after 20s. Only for
// conditions with no event to wait on.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		<-tick.C
	}
}
