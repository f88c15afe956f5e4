package upstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// inProcess returns an Upstream on b's in-process connections.
func inProcess(t testing.TB, b *broker.Broker, proto string, log *zap.Logger) *Upstream {
	t.Helper()
	u, err := New(Config{
		Dial:                b.Dial,
		ProtocolVersion:     proto,
		ConnectTimeout:      5 * time.Second,
		AckTimeout:          5 * time.Second,
		ReconnectBackoffMin: 20 * time.Millisecond,
		ReconnectBackoffMax: 200 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Sessions over the embedded broker's in-process connection publish and
// subscribe at every QoS, on both protocol versions, and a TCP client of
// the same broker sees their messages.
func TestInProcessPublishSubscribe(t *testing.T) {
	checkLeaks(t)
	b := testbroker.Embedded(t)
	tcp := testUpstream(t, b.URL()) // an outside client, over TCP
	for _, proto := range []string{Protocol5, Protocol311} {
		t.Run(proto, func(t *testing.T) {
			u := inProcess(t, b, proto, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
			in := make(inbox, 16)
			sub := openAny(t, u, gateway.SessionOptions{ClientID: uniqueID("sub"), CleanStart: true}, in.deliver)
			pub := openAny(t, u, gateway.SessionOptions{ClientID: uniqueID("pub"), CleanStart: true}, nil)
			outside := make(inbox, 16)
			watch := openAny(t, tcp, gateway.SessionOptions{ClientID: uniqueID("watch"), CleanStart: true}, outside.deliver)
			filter := topicOf(t, "#")
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			for _, s := range []gateway.Session{sub, watch} {
				if g, err := s.Subscribe(ctx, filter, 2); err != nil || g != 2 {
					t.Fatalf("Subscribe: granted %d, %v", g, err)
				}
			}
			for _, qos := range []byte{0, 1, 2} {
				topic := topicOf(t, "q", string('0'+qos))
				if err := pub.Publish(ctx, gateway.Message{Topic: topic, Payload: []byte("p"), QoS: qos}); err != nil {
					t.Fatalf("Publish QoS %d: %v", qos, err)
				}
				in.expect(t, topic, "p", qos)
				outside.expect(t, topic, "p", qos)
			}
			if got := u.ProtocolVersion(); got != proto {
				t.Fatalf("ProtocolVersion %q, want %q", got, proto)
			}
		})
	}
}

// The in-process connection does what a TCP one does when the broker
// goes: sessions see the loss, a new Open is refused as a TCP dial to a
// stopped broker is (connection refused: congestion for the node), and
// the errors name the in-process broker.
func TestInProcessBrokerClosed(t *testing.T) {
	checkLeaks(t)
	b, err := broker.Start("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	u := inProcess(t, b, ProtocolAuto, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)))
	s := openAny(t, u, gateway.SessionOptions{ClientID: uniqueID("gone"), CleanStart: true}, nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "session notices the broker closed", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		err := s.Publish(ctx, gateway.Message{Topic: "t", QoS: 1})
		if errors.Is(err, ErrNotConnected) {
			return nil
		}
		return fmt.Errorf("%w: %w", errNotYet, err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err = u.Open(ctx, gateway.SessionOptions{ClientID: uniqueID("late"), CleanStart: true}, func(gateway.Message) {})
	if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "in-process") {
		t.Fatalf("Open after broker close: %v; want connection refused naming the in-process broker", err)
	}
	if d := Diagnose(err); d.Reason != "connection refused" {
		t.Fatalf("Diagnose: %+v", d)
	}
	if err := u.Ping(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Ping after broker close: %v", err)
	}
}

func TestInProcessConfig(t *testing.T) {
	dial := testbroker.Embedded(t).Dial
	if _, err := New(Config{}, nil); err == nil {
		t.Fatal("no URL and no Dial accepted")
	}
	if _, err := New(Config{Dial: dial, CAFile: "ca.pem"}, nil); err == nil || !strings.Contains(err.Error(), "in-process") {
		t.Fatalf("TLS settings with Dial: %v", err)
	}
	if _, err := New(Config{Dial: dial, URL: "mqtts://h"}, nil); err == nil {
		t.Fatal("mqtts URL with Dial accepted")
	}
	u, err := New(Config{Dial: dial, URL: "mqtt://alice:pw@127.0.0.1:1883"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.ep.hostPort != "127.0.0.1:1883 (in-process)" || u.ep.username != "alice" || u.ep.password != "pw" {
		t.Fatalf("endpoint %+v", u.ep)
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

// Thousands of sessions to the embedded broker in-process take no file
// descriptor: 20,000 nodes no longer need 40,000 of them (two per node
// over loopback TCP), which a 20,000 open-file limit refused.
func TestInProcessNoFileDescriptors(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of sessions")
	}
	checkLeaks(t)
	b := testbroker.Embedded(t)
	for _, proto := range []string{Protocol5, Protocol311} {
		t.Run(proto, func(t *testing.T) {
			const n = 3000
			u := inProcess(t, b, proto, zap.NewNop())
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			before := openFDs(t)
			sessions := make([]gateway.Session, 0, n)
			defer func() {
				for _, s := range sessions {
					_ = s.Close(ctx)
				}
			}()
			for i := range n {
				s, err := u.Open(ctx, gateway.SessionOptions{ClientID: fmt.Sprintf("fd-%s-%d", proto, i), CleanStart: true}, func(gateway.Message) {})
				if err != nil {
					t.Fatalf("Open %d: %v", i, err)
				}
				sessions = append(sessions, s)
			}
			if _, err := sessions[n-1].Subscribe(ctx, "fd/#", 1); err != nil { // the last one works
				t.Fatal(err)
			}
			after := openFDs(t)
			t.Logf("MQTT %s: %d sessions open, file descriptors %d before, %d after", proto, n, before, after)
			// A few for the runtime (an epoll or timer descriptor, say); a
			// socket per session would be thousands.
			if after-before > 10 {
				t.Fatalf("%d sessions took %d file descriptors", n, after-before)
			}
		})
	}
}
