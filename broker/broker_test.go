package broker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
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

// Dial reaches the broker in-process: an MQTT CONNECT over it gets its
// CONNACK, Close ends the connection (the client reads to EOF), and a Dial
// after Close is refused like a stopped broker's port.
func TestDialInProcess(t *testing.T) {
	defer goleak.VerifyNone(t)
	b, err := broker.Start("127.0.0.1:0", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := b.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, ClientId "mem".
	connect := []byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 3, 'm', 'e', 'm'}
	if _, err := conn.Write(connect); err != nil {
		t.Fatal(err)
	}
	connack := make([]byte, 4)
	if _, err := io.ReadFull(conn, connack); err != nil || !bytes.Equal(connack, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK % x, %v", connack, err)
	}
	if ids := b.ClientIDs(); len(ids) != 1 || ids[0] != "mem" {
		t.Fatalf("ClientIDs %v", ids)
	}
	if n := b.InProcessConns(); n != 1 {
		t.Fatalf("InProcessConns %d, want 1", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// mochi may say DISCONNECT first; then the connection ends.
	if rest, err := io.ReadAll(conn); err != nil || len(rest) > 2 {
		t.Fatalf("read after broker Close: % x, %v; want at most a DISCONNECT, then EOF", rest, err)
	}
	if _, err := b.Dial(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial after Close: %v; want connection refused", err)
	}
}
