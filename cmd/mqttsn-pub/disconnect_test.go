package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func startGateway(t *testing.T) (*gateway.Gateway, string) {
	t.Helper()
	g := testgw.Start(t, testbroker.EmbeddedTarget(t), gateway.Config{})
	return g, strconv.Itoa(g.Addrs()[0].(*net.UDPAddr).Port)
}

// state is a node's state at the gateway, "" when it is unknown.
func state(t *testing.T, g *gateway.Gateway, id string) string {
	t.Helper()
	ci, ok, err := g.Client(testgw.Context(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return ""
	}
	return ci.State
}

// connackSent reports whether the node is active and the gateway sent it a
// datagram (its CONNACK).
func connackSent(t *testing.T, g *gateway.Gateway, id string) bool {
	t.Helper()
	ci, ok, err := g.Client(testgw.Context(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return ok && ci.State == "active" && ci.Traffic.DatagramsOut > 0
}

// A rejected publish still ends with DISCONNECT: the gateway has the node
// disconnected, not active until its keep-alive runs out.
func TestDisconnectAfterRejectedPublish(t *testing.T) {
	g, port := startGateway(t)
	code, _, errOut := runArgs(t, "", "-p", port, "-i", "rejected", "--clean=false", "--topic-id", "9", "-m", "x", "-q", "1")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (invalid topic id): %s", code, errOut)
	}
	if !strings.Contains(errOut, "predefined topic id 9") || strings.Contains(errOut, "\\x00") || strings.Contains(errOut, "\x00") {
		t.Errorf("error does not name the topic id plainly: %q", errOut)
	}
	if st := state(t, g, "rejected"); st != "disconnected" {
		t.Errorf("node is %q at the gateway, want disconnected", st)
	}
}

// Ctrl-C while -l waits for input: exit 0 at once, after DISCONNECT.
func TestLinesInterruptedDisconnects(t *testing.T) {
	g, port := startGateway(t)
	stdin, w := io.Pipe() // input that never comes
	defer w.Close()
	ctx, cancel := context.WithCancel(testgw.Context(t))
	defer cancel()
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-p", port, "-i", "lines", "--clean=false", "-t", "a/b", "-l", "-q", "1"}, stdin, io.Discard, &errOut)
	}()
	// Wait for the connection (polling is the only way to see it here).
	deadline := time.Now().Add(testgw.Wait)
	// Active, and the CONNACK sent (the client takes it a moment later).
	for !connackSent(t, g, "lines") {
		if time.Now().After(deadline) {
			t.Fatal("mqttsn-pub did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // Ctrl-C
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after Ctrl-C: %s", code, errOut.String())
		}
	case <-time.After(testgw.Wait):
		t.Fatal("mqttsn-pub did not return after Ctrl-C")
	}
	if st := state(t, g, "lines"); st != "disconnected" {
		t.Errorf("node is %q at the gateway after Ctrl-C, want disconnected", st)
	}
}

// Ctrl-C while a publish waits for a gateway that went silent returns
// within 2 s (the DISCONNECT is sent, its answer waited for briefly), not
// after every retransmission.
func TestInterruptWithGatewayGone(t *testing.T) {
	gw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	seen := make(chan snpacket.MsgType, 16)
	go func() { // a gateway that accepts the CONNECT, then says nothing
		buf := make([]byte, 1500)
		for {
			n, from, err := gw.ReadFrom(buf)
			if err != nil {
				return
			}
			p, err := snpacket.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			if p.Type() == snpacket.TypeConnect {
				b, _ := snpacket.Marshal(&snpacket.Connack{ReturnCode: snpacket.Accepted})
				_, _ = gw.WriteTo(b, from)
			}
			select {
			case seen <- p.Type():
			default:
			}
		}
	}()
	ctx, cancel := context.WithCancel(testgw.Context(t))
	defer cancel()
	done := make(chan int, 1)
	port := strconv.Itoa(gw.LocalAddr().(*net.UDPAddr).Port)
	go func() {
		done <- run(ctx, []string{"-p", port, "-t", "a/b", "-l", "-q", "1"}, bytes.NewReader([]byte("21.5\n")), io.Discard, io.Discard)
	}()
	for typ := range seen { // until the publish is under way
		if typ == snpacket.TypeRegister {
			break
		}
	}
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(testgw.Wait):
		t.Fatal("no return after Ctrl-C")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Ctrl-C took %v, want at most 2s", el)
	}
	for {
		select {
		case typ := <-seen:
			if typ == snpacket.TypeDisconnect {
				return
			}
		case <-time.After(testgw.Wait):
			t.Fatal("no DISCONNECT after Ctrl-C")
		}
	}
}
