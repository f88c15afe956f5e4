package broker_test

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
)

func TestInlinePublishSubscribe(t *testing.T) {
	defer goleak.VerifyNone(t)

	b, err := broker.Start("127.0.0.1:0", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Addr() == "127.0.0.1:0" || b.URL() != "mqtt://"+b.Addr() {
		t.Fatalf("Addr %q URL %q", b.Addr(), b.URL())
	}

	type msg struct {
		topic   string
		payload string
		qos     byte
		retain  bool
	}
	got := make(chan msg, 1)
	if err := b.Subscribe("a/+", func(topic string, payload []byte, qos byte, retain bool) {
		got <- msg{topic, string(payload), qos, retain}
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish("a/b", []byte("hi"), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != (msg{"a/b", "hi", 1, false}) {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// The port is free again: a broker can start on the same address.
	b2, err := broker.Start(b.Addr(), nil)
	if err != nil {
		t.Fatalf("restart on %s: %v", b.Addr(), err)
	}
	_ = b2.Close()
}

func TestStartBadAddr(t *testing.T) {
	if _, err := broker.Start("256.0.0.1:1", nil); err == nil {
		t.Fatal("want error")
	}
}

// A connection that never sent CONNECT does not hold up Close, and a client
// connecting while the broker stops is not a data race (mochi's own TCP
// listener races there).
func TestCloseWithPendingConnections(t *testing.T) {
	defer goleak.VerifyNone(t)
	for range 20 {
		b, err := broker.Start("127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
}
