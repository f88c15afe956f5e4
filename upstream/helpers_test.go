package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

const waitFor = 10 * time.Second

// checkLeaks must be called first in a test: the check runs after every
// other cleanup (brokers included).
func checkLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

var idSeq atomic.Int64 //nolint:gochecknoglobals // test-only unique ids

func uniqueID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e6, idSeq.Add(1))
}

func testUpstream(t *testing.T, url string) *Upstream {
	t.Helper()
	u, err := New(Config{
		URL:                 url,
		ClientIDPrefix:      "test-",
		ConnectTimeout:      5 * time.Second,
		AckTimeout:          5 * time.Second,
		ReconnectBackoffMin: 20 * time.Millisecond,
		ReconnectBackoffMax: 200 * time.Millisecond,
	}, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// inbox collects delivered messages.
type inbox chan gateway.Message

func (in inbox) deliver(m gateway.Message) { in <- m }

func (in inbox) expect(t *testing.T, topic, payload string, qos byte) gateway.Message {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	for {
		select {
		case m := <-in:
			if m.Topic != topic || string(m.Payload) != payload {
				t.Logf("skipping %q %q", m.Topic, m.Payload)
				continue
			}
			if m.QoS != qos {
				t.Fatalf("%s: QoS %d, want %d", topic, m.QoS, qos)
			}
			return m
		case <-timer.C:
			t.Fatalf("no message %q %q within %v", topic, payload, waitFor)
			return gateway.Message{}
		}
	}
}

// expectNothing asserts that no message arrives within d.
func (in inbox) expectNothing(t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case m := <-in:
		t.Fatalf("unexpected message %q %q", m.Topic, m.Payload)
	case <-timer.C:
	}
}

type openFn func(t *testing.T, opts gateway.SessionOptions, deliver func(gateway.Message)) *session

func opener(u *Upstream) openFn {
	return func(t *testing.T, opts gateway.SessionOptions, deliver func(gateway.Message)) *session {
		t.Helper()
		if deliver == nil {
			deliver = func(gateway.Message) {}
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		gs, err := u.Open(ctx, opts, deliver)
		if err != nil {
			t.Fatalf("Open %s: %v", opts.ClientID, err)
		}
		s := gs.(*session)
		t.Cleanup(func() { closeSession(t, s) })
		return s
	}
}

func closeSession(t *testing.T, s *session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close %s: %v", s.clientID, err)
	}
	select {
	case <-s.Done():
	default:
		t.Errorf("Done not closed after Close")
	}
}

func subscribe(t *testing.T, s *session, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	g, err := s.Subscribe(ctx, filter, qos)
	if err != nil {
		t.Fatalf("Subscribe %q: %v", filter, err)
	}
	return g
}

func publish(t *testing.T, s *session, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Publish(ctx, gateway.Message{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		t.Fatalf("Publish %q: %v", topic, err)
	}
}

// dropConn closes the session's network connection without DISCONNECT, as
// a crash or network failure would.
func dropConn(t *testing.T, s *session) {
	t.Helper()
	s.mu.Lock()
	cli := s.cur
	s.mu.Unlock()
	if cli == nil {
		t.Fatal("dropConn: not connected")
	}
	cli.TerminateConnectionForTest()
}

// eventually calls f every 20ms until it returns nil or waitFor passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: still failing after %v: %v", what, waitFor, err)
		case <-tick.C:
		}
	}
}

func forEachBroker(t *testing.T, f func(t *testing.T, tg testbroker.Target)) {
	t.Helper()
	for _, tg := range testbroker.All(t) {
		t.Run(tg.Name, func(t *testing.T) { f(t, tg) })
	}
}

var errNotYet = errors.New("not yet")

func isNotConnected(err error) bool { return errors.Is(err, ErrNotConnected) }

func topicOf(t *testing.T, parts ...string) string {
	t.Helper()
	return strings.Join(append([]string{strings.ReplaceAll(t.Name(), "/", "_")}, parts...), "/")
}

// drain discards what arrives within d.
func (in inbox) drain(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-in:
		case <-timer.C:
			return
		}
	}
}
