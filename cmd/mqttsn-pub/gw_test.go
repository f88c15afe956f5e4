package main

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// wait bounds every wait for an event.
const wait = 10 * time.Second

// startGateway runs a gateway on 127.0.0.1:0 against a fresh embedded
// broker and returns its UDP port and the broker; both stop in t.Cleanup.
func startGateway(t *testing.T, cfg gateway.Config) (port string, b *broker.Broker) {
	t.Helper()
	tg := testbroker.EmbeddedTarget(t)
	// The upstream logs to nowhere: an upstream session closed by a node's
	// DISCONNECT right before Shutdown can outlive the test (a gateway
	// issue, reported) and zaptest panics on a log after the test.
	up, err := upstream.New(upstream.Config{URL: tg.URL}, zap.NewNop())
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	cfg.Listen = []string{"127.0.0.1:0"}
	g, err := gateway.New(cfg, gateway.WithUpstream(up), gateway.WithLogger(zaptest.NewLogger(t).Named("gateway")))
	if err != nil {
		t.Fatalf("gateway: %v", err)
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
	case <-time.After(wait):
		t.Fatal("gateway not ready")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-stopped
	})
	return strconv.Itoa(g.Addrs()[0].(*net.UDPAddr).Port), tg.Broker()
}

// closedPort is a UDP port on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	_ = c.Close()
	return port
}

// testCtx is bounded by wait and canceled at the end of the test.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}
