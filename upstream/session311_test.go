package upstream

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// The MQTT 3.1.1 session against the real brokers: the same behaviour as
// the MQTT 5 session's tests (session_test.go, will_test.go) check.

func testUpstream311(t *testing.T, url string, mod ...func(*Config)) *Upstream {
	t.Helper()
	cfg := Config{
		URL:                 url,
		ProtocolVersion:     Protocol311,
		ClientIDPrefix:      "test-",
		ConnectTimeout:      5 * time.Second,
		AckTimeout:          5 * time.Second,
		ReconnectBackoffMin: 20 * time.Millisecond,
		ReconnectBackoffMax: 200 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	u, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func openAny(t *testing.T, u *Upstream, opts gateway.SessionOptions, deliver func(gateway.Message)) gateway.Session {
	t.Helper()
	if deliver == nil {
		deliver = func(gateway.Message) {}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := u.Open(ctx, opts, deliver)
	if err != nil {
		t.Fatalf("Open %s: %v", opts.ClientID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close %s: %v", opts.ClientID, err)
		}
	})
	return s
}

func open311(t *testing.T, u *Upstream, opts gateway.SessionOptions, deliver func(gateway.Message)) *session311 {
	t.Helper()
	s, ok := openAny(t, u, opts, deliver).(*session311)
	if !ok {
		t.Fatalf("Open gave a %T, want an MQTT 3.1.1 session", s)
	}
	return s
}

func sub(t *testing.T, s gateway.Session, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	g, err := s.Subscribe(ctx, filter, qos)
	if err != nil {
		t.Fatalf("Subscribe %q: %v", filter, err)
	}
	return g
}

func pub(t *testing.T, s gateway.Session, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := s.Publish(ctx, gateway.Message{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		t.Fatalf("Publish %q: %v", topic, err)
	}
}

// drop311 closes the session's network connection without DISCONNECT.
func drop311(t *testing.T, s *session311) {
	t.Helper()
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c == nil {
		t.Fatal("drop311: not connected")
	}
	_ = c.nc.Close()
}

func waitDown311(t *testing.T, s *session311) {
	t.Helper()
	eventually(t, "connection loss noticed", func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cur != nil {
			return errNotYet
		}
		return nil
	})
}

func TestV311PublishDeliverQoS(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		u := testUpstream311(t, tg.URL)
		in := make(inbox, 16)
		s := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("sub"), CleanStart: true}, in.deliver)
		p := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("pub"), CleanStart: true}, nil)
		if g := sub(t, s, topicOf(t, "#"), 2); g != 2 {
			t.Fatalf("granted QoS %d, want 2", g)
		}
		for _, qos := range []byte{0, 1, 2} {
			topic := topicOf(t, "q", string('0'+qos))
			pub(t, p, topic, "payload", qos, false)
			if m := in.expect(t, topic, "payload", qos); m.Retain {
				t.Fatal("retain set")
			}
		}
		topic := topicOf(t, "retained")
		pub(t, p, topic, "kept", 1, true)
		in2 := make(inbox, 4)
		late := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("late"), CleanStart: true}, in2.deliver)
		sub(t, late, topic, 1)
		if m := in2.expect(t, topic, "kept", 1); !m.Retain {
			t.Fatal("retained message delivered without Retain")
		}
		pub(t, p, topic, "", 1, true)
		if u.ProtocolVersion() != Protocol311 {
			t.Fatalf("ProtocolVersion %q", u.ProtocolVersion())
		}

		// Downgrade by the subscription, and Unsubscribe.
		if g := sub(t, s, topicOf(t, "one"), 1); g != 1 {
			t.Fatalf("granted %d, want 1", g)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := s.Unsubscribe(ctx, topicOf(t, "#")); err != nil {
			t.Fatal(err)
		}
		pub(t, p, topicOf(t, "one"), "a", 2, false)
		in.expect(t, topicOf(t, "one"), "a", 1)
		if err := s.Unsubscribe(ctx, topicOf(t, "one")); err != nil {
			t.Fatal(err)
		}
		pub(t, p, topicOf(t, "one"), "gone", 1, false)
		in.expectNothing(t, 50*time.Millisecond)
	})
}

// Interoperability: an MQTT 3.1.1 session and an MQTT 5 session on one
// broker see each other's messages at every QoS.
func TestV311MeetsV5(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		in5, in3 := make(inbox, 8), make(inbox, 8)
		s5 := openAny(t, testUpstream(t, tg.URL), gateway.SessionOptions{ClientID: uniqueID("v5"), CleanStart: true}, in5.deliver)
		s3 := open311(t, testUpstream311(t, tg.URL), gateway.SessionOptions{ClientID: uniqueID("v3"), CleanStart: true}, in3.deliver)
		sub(t, s5, topicOf(t, "to5"), 2)
		sub(t, s3, topicOf(t, "to3"), 2)
		for _, q := range []byte{0, 1, 2} {
			pub(t, s3, topicOf(t, "to5"), "x", q, false)
			in5.expect(t, topicOf(t, "to5"), "x", q)
			pub(t, s5, topicOf(t, "to3"), "y", q, false)
			in3.expect(t, topicOf(t, "to3"), "y", q)
		}
	})
}

// A CleanSession=0 session: PUBACK only after deliver (redelivered after a
// drop), the broker session resumed, subscriptions restored after a broker
// restart that lost it, and QoS 1/2 publishes in flight resent after a
// reconnect with their packet identifiers.
func TestV311PersistentSession(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		u := testUpstream311(t, tg.URL)
		got := make(chan gateway.Message, 16)
		release := make(chan struct{})
		var first atomic.Bool
		first.Store(true)
		deliver := func(m gateway.Message) {
			got <- m
			if first.Swap(false) {
				<-release
			}
		}
		s := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("sub"), SessionExpiry: time.Hour}, deliver)
		p := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("pub"), SessionExpiry: time.Hour}, nil)
		in := inbox(got)
		topic := topicOf(t, "m")
		sub(t, s, topic, 2)
		pub(t, p, topic, "once", 1, false)
		in.expect(t, topic, "once", 1)
		drop311(t, s)
		close(release)
		in.expect(t, topic, "once", 1) // not acknowledged: sent again

		// QoS 2 inbound across a drop: delivered once.
		pub(t, p, topic, "two", 2, false)
		in.expect(t, topic, "two", 2)

		// In flight when the connection drops: resent on the resumed
		// session, and the waiter completes.
		waiters := make([]chan error, 0, 2)
		for _, q := range []byte{1, 2} {
			p.mu.Lock()
			id, err := p.allocIDLocked()
			if err != nil {
				t.Fatal(err)
			}
			p.seq++
			of := &outFlight{pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: q},
				TopicName: topic, Payload: []byte{'f', '0' + q}, PacketID: id}, seq: p.seq, done: make(chan error, 1)}
			p.out[id] = of
			p.mu.Unlock()
			waiters = append(waiters, of.done)
		}
		drop311(t, p)
		for _, w := range waiters {
			select {
			case err := <-w:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(waitFor):
				t.Fatal("resent publish not acknowledged")
			}
		}
		in.expect(t, topic, "f1", 1)
		in.expect(t, topic, "f2", 2)

		// The broker loses every session: subscriptions are restored.
		tg.Restart(t)
		eventually(t, "delivery after restart", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := p.Publish(ctx, gateway.Message{Topic: topic, Payload: []byte("after"), QoS: 1}); err != nil {
				return err
			}
			wait := time.NewTimer(100 * time.Millisecond)
			defer wait.Stop()
			for {
				select {
				case m := <-in:
					if string(m.Payload) == "after" {
						return nil
					}
				case <-wait.C:
					return errNotYet
				}
			}
		})
	})
}

// A clean session whose connection drops: the waiting QoS 1 publish of a
// lost connection fails with ErrConnectionLost, new ones fail fast with
// ErrNotConnected while down, and the session comes back.
func TestV311CleanReconnect(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	u := testUpstream311(t, tg.URL)
	in := make(inbox, 8)
	s := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("c"), CleanStart: true}, in.deliver)
	sub(t, s, topicOf(t, "x"), 1)
	tg.Stop(t)
	waitDown311(t, s)
	err := s.Publish(context.Background(), gateway.Message{Topic: topicOf(t, "x"), QoS: 1})
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Publish while down: %v", err)
	}
	if _, err := s.Subscribe(context.Background(), "y", 1); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Subscribe while down: %v", err)
	}
	tg.Start(t)
	eventually(t, "publish after restart", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return s.Publish(ctx, gateway.Message{Topic: topicOf(t, "x"), Payload: []byte("back"), QoS: 1})
	})
	in.expect(t, topicOf(t, "x"), "back", 1) // resubscribed on the new clean session
}

// Will: published by the broker when the connection drops (MQTT 3.1.1 has
// no will delay), never after Close.
func TestV311Will(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		u := testUpstream311(t, tg.URL)
		in := make(inbox, 8)
		obs := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("obs"), CleanStart: true}, in.deliver)
		sub(t, obs, topicOf(t, "#"), 1)
		willTopic := topicOf(t, "will")
		opts := gateway.SessionOptions{ClientID: uniqueID("w"), CleanStart: true,
			Will: &gateway.Message{Topic: willTopic, Payload: []byte("gone"), QoS: 1}}
		w := open311(t, u, opts, nil)
		drop311(t, w)
		in.expectOnly(t, willTopic, "gone")

		opts.ClientID = uniqueID("w2")
		w2 := open311(t, u, opts, nil)
		closeCtx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := w2.Close(closeCtx); err != nil {
			t.Fatal(err)
		}
		pub(t, obs, topicOf(t, "marker"), "m", 1, false)
		in.expectOnly(t, topicOf(t, "marker"), "m")
	})
}

// Two gateways with one ClientID: the session that keeps being taken over
// right after each reconnect gives up and says so through Ended; the other
// keeps the broker session. Clean sessions with subscriptions are taken
// over while they restore them, which counts too.
//
// mosquitto only: mochi handles two CONNECTs with one ClientID at the same
// moment without taking either over (inheritClientSession looks the
// ClientID up and adds the new client in two steps), so on the embedded
// broker both sessions may stay connected and no fight starts at all.
func TestV311TakenOver(t *testing.T) {
	checkLeaks(t)
	url, _ := testbroker.Mosquitto(t)
	tg := testbroker.Target{Name: "mosquitto", URL: url}
	for _, tc := range []struct {
		name string
		opts gateway.SessionOptions
	}{
		{"persistent", gateway.SessionOptions{SessionExpiry: time.Hour}},
		{"clean", gateway.SessionOptions{CleanStart: true}},
	} {
		t.Run(tc.name, func(t *testing.T) { takenOver311(t, tg, tc.opts) })
	}
}

func takenOver311(t *testing.T, tg testbroker.Target, opts gateway.SessionOptions) {
	t.Helper()
	ended := make(chan error, 2)
	opts.ClientID = uniqueID("moved")
	opts.Ended = func(err error) { ended <- err }
	a := open311(t, testUpstream311(t, tg.URL), opts, nil)
	sub(t, a, topicOf(t, "a"), 1)
	in := make(inbox, 8)
	b := open311(t, testUpstream311(t, tg.URL), opts, in.deliver)
	select {
	case err := <-ended:
		if !errors.Is(err, gateway.ErrTakenOver) {
			t.Fatalf("Ended(%v), want ErrTakenOver", err)
		}
	case <-time.After(waitFor):
		t.Fatal("neither session gave up")
	}
	select {
	case <-a.Done():
	case <-time.After(waitFor):
		t.Fatal("the first session did not end")
	}
	if err := a.Publish(context.Background(), gateway.Message{Topic: "x"}); !errors.Is(err, ErrNotConnected) || !errors.Is(err, gateway.ErrTakenOver) {
		t.Fatalf("Publish after takeover: %v", err)
	}
	// The second keeps (or gets back) its connection and session.
	eventually(t, "second session usable", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := b.Subscribe(ctx, topicOf(t, "t"), 1)
		return err
	})
	pub(t, b, topicOf(t, "t"), "here", 1, false)
	in.expect(t, topicOf(t, "t"), "here", 1)
	select {
	case err := <-ended:
		t.Fatalf("second session ended too: %v", err)
	default:
	}
}

// broker.max_qos caps what goes upstream on both versions; the granted QoS
// of a capped subscription is no failure.
func TestMaxQoS(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		for _, proto := range []string{Protocol5, Protocol311} {
			t.Run(proto, func(t *testing.T) {
				one := byte(1)
				u := testUpstream311(t, tg.URL, func(c *Config) { c.ProtocolVersion, c.MaxQoS = proto, &one })
				in := make(inbox, 8)
				s := openAny(t, u, gateway.SessionOptions{ClientID: uniqueID("s"), CleanStart: true}, in.deliver)
				if g := sub(t, s, topicOf(t, "t"), 2); g != 1 {
					t.Fatalf("granted %d, want 1", g)
				}
				obs := openAny(t, testUpstream(t, tg.URL), gateway.SessionOptions{ClientID: uniqueID("o"), CleanStart: true}, in.deliver)
				sub(t, obs, topicOf(t, "up"), 2)
				pub(t, s, topicOf(t, "up"), "capped", 2, false)
				in.expect(t, topicOf(t, "up"), "capped", 1)
				pub(t, obs, topicOf(t, "t"), "down", 2, false)
				in.expect(t, topicOf(t, "t"), "down", 1)
			})
		}
	})
}

// auto picks MQTT 5 on brokers that speak it, and a broker that is not
// there decides nothing.
func TestProtocolAuto(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	tg.Stop(t)
	u := testUpstream311(t, tg.URL, func(c *Config) { c.ProtocolVersion = ProtocolAuto })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := u.Open(ctx, gateway.SessionOptions{ClientID: "x", CleanStart: true}, func(gateway.Message) {}); err == nil {
		t.Fatal("Open succeeded with no broker")
	}
	if v := u.ProtocolVersion(); v != "" {
		t.Fatalf("a refused dial decided protocol %q", v)
	}
	tg.Start(t)

	// A broker that closes connections before CONNACK for a while (here
	// a proxy that accepts and closes) decides nothing either, although
	// that is what a 3.1.1-only broker does to MQTT 5: the 3.1.1 attempt
	// got no answer.
	proxy := newLinkProxy(t, tg.Addr())
	proxy.Cut()
	viaProxy := testUpstream311(t, proxy.URL(), func(c *Config) { c.ProtocolVersion = ProtocolAuto })
	if _, err := viaProxy.Open(ctx, gateway.SessionOptions{ClientID: "x", CleanStart: true}, func(gateway.Message) {}); err == nil {
		t.Fatal("Open succeeded through a closed proxy")
	} else if v := viaProxy.ProtocolVersion(); v != "" {
		t.Fatalf("connections closed without CONNACK (%v) decided protocol %q", err, v)
	}
	proxy.Allow()
	if s := openAny(t, viaProxy, gateway.SessionOptions{ClientID: uniqueID("p"), CleanStart: true}, nil); viaProxy.ProtocolVersion() != Protocol5 {
		t.Fatalf("auto chose %T through the proxy", s)
	}

	s := openAny(t, u, gateway.SessionOptions{ClientID: uniqueID("a"), CleanStart: true}, nil)
	if _, ok := s.(*session); !ok || u.ProtocolVersion() != Protocol5 {
		t.Fatalf("auto chose %T, ProtocolVersion %q", s, u.ProtocolVersion())
	}
}

func TestV5Mismatch(t *testing.T) {
	for _, tc := range []struct {
		err      error
		mismatch bool
	}{
		{&ReasonCodeError{Packet: "CONNACK", Code: 0x84}, true},
		{&ReasonCodeError{Packet: "CONNACK", Code: 0x01}, true},
		{&ReasonCodeError{Packet: "CONNACK", Code: 0x86}, false},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := v5Mismatch(tc.err); got != tc.mismatch {
			t.Errorf("v5Mismatch(%v) = %v", tc.err, got)
		}
	}
}

// TLS: the 3.1.1 session dials through the same TLS configuration.
func TestV311TLS(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	addr := startTLSBroker(t, pki.serverTLS)
	_, port, _ := net.SplitHostPort(addr)
	u := testUpstream311(t, "mqtts://127.0.0.1:"+port, func(c *Config) {
		c.CAFile, c.CertFile, c.KeyFile, c.ServerName = pki.caFile, pki.clientCert, pki.client, "broker.test"
	})
	in := make(inbox, 4)
	s := open311(t, u, gateway.SessionOptions{ClientID: "tls311", CleanStart: true}, in.deliver)
	sub(t, s, "tls311/#", 2)
	pub(t, s, "tls311/x", "secret", 2, false)
	in.expect(t, "tls311/x", "secret", 2)

	bad := testUpstream311(t, "mqtts://127.0.0.1:"+port, func(c *Config) { c.CAFile = pki.caFile })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if s, err := bad.Open(ctx, gateway.SessionOptions{ClientID: "bad", CleanStart: true}, func(gateway.Message) {}); err == nil {
		_ = s.Close(ctx)
		t.Fatal("Open succeeded with the wrong server name")
	}
}
