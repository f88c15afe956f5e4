package main

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
)

// wait bounds every wait for an event.
const wait = 10 * time.Second

// startGateway runs a gateway on 127.0.0.1:0 against a fresh embedded
// broker and returns its UDP port and the broker; both stop in t.Cleanup.
func startGateway(t *testing.T, cfg gateway.Config) (port string, b *broker.Broker) {
	t.Helper()
	tg := testbroker.EmbeddedTarget(t)
	g := testgw.Start(t, tg, cfg)
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
