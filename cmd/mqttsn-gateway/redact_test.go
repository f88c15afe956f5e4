package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/config"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// The password of a broker URL is used, never shown: not in the log, not
// in an error.
func TestBrokerURLPasswordMasked(t *testing.T) {
	if code, _, errOut := runArgs("--broker", "mqtt://alice:s3cret@127.0.0.1:notaport"); code != 1 || strings.Contains(errOut, "s3cret") || !strings.Contains(errOut, "broker.url") {
		t.Errorf("bad URL: exit %d, %q", code, errOut)
	}

	b := testbroker.Embedded(t)
	cfg := config.Default()
	cfg.Listen.UDP = config.StringList{"127.0.0.1:0"}
	cfg.Broker.URL = "mqtt://alice:s3cret@" + b.Addr()
	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, zap.New(core), zap.NewAtomicLevel(), nil) }()
	// Polled: a log line is no event to wait on.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for logs.FilterMessage("gateway serving").Len() == 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Error("the gateway did not log that it is serving")
			cancel()
			<-done
			return
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	start := logs.FilterMessage("mqttsn-gateway starting").All()
	if len(start) != 1 || start[0].ContextMap()["broker"] != "mqtt://alice:xxxxx@"+b.Addr() {
		t.Fatalf("start line %v", start)
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "s3cret") {
				t.Fatalf("%q logs the password in %s=%q", e.Message, k, s)
			}
		}
	}
}
