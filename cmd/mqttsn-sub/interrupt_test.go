package main

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Ctrl-C with the gateway gone silent returns within 2 s, with exit 0,
// after sending DISCONNECT (its answer is waited for only briefly).
func TestInterruptWithGatewayGone(t *testing.T) {
	gw, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	subscribed, disconnect := make(chan struct{}, 1), make(chan struct{}, 1)
	go func() { // a gateway that accepts CONNECT and SUBSCRIBE, then says nothing
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
			var answer snpacket.Packet
			switch p := p.(type) {
			case *snpacket.Connect:
				answer = &snpacket.Connack{ReturnCode: snpacket.Accepted}
			case *snpacket.Subscribe:
				answer = &snpacket.Suback{MsgID: p.MsgID, ReturnCode: snpacket.Accepted}
				subscribed <- struct{}{}
			case *snpacket.Disconnect:
				disconnect <- struct{}{}
			}
			if answer != nil {
				b, _ := snpacket.Marshal(answer)
				_, _ = gw.WriteTo(b, from)
			}
		}
	}()
	ctx, cancel := context.WithCancel(testgw.Context(t))
	defer cancel()
	done := make(chan int, 1)
	port := strconv.Itoa(gw.LocalAddr().(*net.UDPAddr).Port)
	var errOut syncBuf
	go func() { done <- run(ctx, []string{"-p", port, "-t", "a/b"}, io.Discard, &errOut) }()
	select {
	case <-subscribed:
	case <-time.After(testgw.Wait):
		t.Fatal("no SUBSCRIBE")
	}
	start := time.Now()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after Ctrl-C, want 0: %s", code, errOut.String())
		}
	case <-time.After(testgw.Wait):
		t.Fatal("no return after Ctrl-C")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Ctrl-C took %v, want at most 2s", el)
	}
	select {
	case <-disconnect:
	case <-time.After(testgw.Wait):
		t.Error("no DISCONNECT after Ctrl-C")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
