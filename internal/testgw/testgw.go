// Package testgw starts a real gateway for tests, bridged to a real broker
// (see internal/testbroker), and stops it when the test ends. The
// end-to-end harness, the client package's tests and the CLI tools' tests
// all use it.
package testgw

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// Wait bounds every wait for an event. It is generous: a test waits on the
// event itself, so a slow machine only makes it slower, never red.
const Wait = 10 * time.Second

// Start runs a gateway bridged to tg, on 127.0.0.1:0 unless cfg.Listen
// says otherwise, waits until it serves, and shuts it down in t.Cleanup.
// opts may add transports (DTLS).
func Start(t testing.TB, tg testbroker.Target, cfg gateway.Config, opts ...gateway.Option) *gateway.Gateway {
	t.Helper()
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	ucfg := upstream.Config{URL: tg.URL, ReconnectBackoffMin: 50 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond}
	if tg.Broker() != nil {
		ucfg.ReceiveMaximum = broker.ClientReceiveMaximum // as the command does
	}
	up, err := upstream.New(ucfg, zaptest.NewLogger(t).Named("upstream"))
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	opts = append([]gateway.Option{gateway.WithUpstream(up), gateway.WithLogger(zaptest.NewLogger(t).Named("gateway"))}, opts...)
	g, err := gateway.New(cfg, opts...)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := g.Serve(context.Background()); !errors.Is(err, gateway.ErrGatewayClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	select {
	case <-g.Ready():
	case <-time.After(Wait):
		t.Fatal("gateway not ready")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-stopped
	})
	return g
}
