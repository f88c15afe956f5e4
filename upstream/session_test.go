package upstream

import (
	"context"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

func TestPublishDeliverQoS(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		open := opener(testUpstream(t, tg.URL))
		in := make(inbox, 16)
		sub := open(t, gateway.SessionOptions{ClientID: uniqueID("sub"), CleanStart: true}, in.deliver)
		pub := open(t, gateway.SessionOptions{ClientID: uniqueID("pub"), CleanStart: true}, nil)
		filter := topicOf(t, "#")
		if g := subscribe(t, sub, filter, 2); g != 2 {
			t.Fatalf("granted QoS %d, want 2", g)
		}
		for _, qos := range []byte{0, 1, 2} {
			topic := topicOf(t, "q", string('0'+qos))
			publish(t, pub, topic, "payload", qos, false)
			m := in.expect(t, topic, "payload", qos)
			if m.Retain {
				t.Fatal("retain set")
			}
		}

		// Retained message: delivered with Retain to a new subscriber.
		topic := topicOf(t, "retained")
		publish(t, pub, topic, "kept", 1, true)
		in2 := make(inbox, 4)
		late := open(t, gateway.SessionOptions{ClientID: uniqueID("late"), CleanStart: true}, in2.deliver)
		subscribe(t, late, topic, 1)
		if m := in2.expect(t, topic, "kept", 1); !m.Retain {
			t.Fatal("retained message delivered without Retain")
		}
		publish(t, pub, topic, "", 1, true) // clear it
	})
}

func TestSubscribeDowngrade(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		open := opener(testUpstream(t, tg.URL))
		in := make(inbox, 16)
		sub := open(t, gateway.SessionOptions{ClientID: uniqueID("sub"), CleanStart: true}, in.deliver)
		pub := open(t, gateway.SessionOptions{ClientID: uniqueID("pub"), CleanStart: true}, nil)
		if g := subscribe(t, sub, topicOf(t, "one"), 1); g != 1 {
			t.Fatalf("granted %d, want 1", g)
		}
		if g := subscribe(t, sub, topicOf(t, "zero"), 0); g != 0 {
			t.Fatalf("granted %d, want 0", g)
		}
		publish(t, pub, topicOf(t, "one"), "a", 2, false)
		in.expect(t, topicOf(t, "one"), "a", 1)
		publish(t, pub, topicOf(t, "zero"), "b", 2, false)
		in.expect(t, topicOf(t, "zero"), "b", 0)

		// Unsubscribe stops delivery.
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := sub.Unsubscribe(ctx, topicOf(t, "one")); err != nil {
			t.Fatal(err)
		}
		publish(t, pub, topicOf(t, "one"), "gone", 1, false)
		publish(t, pub, topicOf(t, "zero"), "marker", 1, false)
		in.expect(t, topicOf(t, "zero"), "marker", 0)
		in.expectNothing(t, 50*time.Millisecond)
	})
}

func TestSubscribeRefused(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		open := opener(testUpstream(t, tg.URL))
		s := open(t, gateway.SessionOptions{ClientID: uniqueID("bad"), CleanStart: true}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		// An invalid filter: brokers either refuse it in SUBACK or drop the
		// connection; either way Subscribe must fail.
		if _, err := s.Subscribe(ctx, "a/#/b", 1); err == nil {
			t.Fatal("Subscribe to an invalid filter succeeded")
		} else {
			t.Logf("Subscribe: %v", err)
		}
	})
}

// The broker's PUBACK is sent only after deliver returned: a message whose
// deliver was interrupted by a connection loss is delivered again after the
// reconnect (the broker kept the session).
func TestAckAfterDeliver(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		open := opener(testUpstream(t, tg.URL))
		got := make(chan gateway.Message, 4)
		release := make(chan struct{})
		first := true
		deliver := func(m gateway.Message) {
			got <- m
			if first {
				first = false
				<-release
			}
		}
		sub := open(t, gateway.SessionOptions{ClientID: uniqueID("sub"), CleanStart: true, SessionExpiry: time.Minute}, deliver)
		pub := open(t, gateway.SessionOptions{ClientID: uniqueID("pub"), CleanStart: true}, nil)
		topic := topicOf(t, "m")
		subscribe(t, sub, topic, 1)
		publish(t, pub, topic, "once", 1, false)

		in := inbox(got)
		in.expect(t, topic, "once", 1)
		dropConn(t, sub)
		close(release)
		// Redelivered after the reconnect, with the same content.
		in.expect(t, topic, "once", 1)
	})
}

func TestReconnectAfterBrokerRestart(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		open := opener(testUpstream(t, tg.URL))
		in := make(inbox, 64)
		sub := open(t, gateway.SessionOptions{ClientID: uniqueID("sub"), CleanStart: true, SessionExpiry: time.Hour}, in.deliver)
		pub := open(t, gateway.SessionOptions{ClientID: uniqueID("pub"), CleanStart: true}, nil)
		subscribe(t, sub, topicOf(t, "a", "+"), 1)
		subscribe(t, sub, topicOf(t, "b"), 2)
		publish(t, pub, topicOf(t, "a", "1"), "before", 1, false)
		in.expect(t, topicOf(t, "a", "1"), "before", 1)

		tg.Stop(t)

		// While down, Publish and Subscribe fail fast with ErrNotConnected.
		eventually(t, "Publish fails while down", func() error {
			start := time.Now()
			err := pub.Publish(context.Background(), gateway.Message{Topic: topicOf(t, "x"), QoS: 1})
			if !isNotConnected(err) {
				return errNotYet
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Fatalf("Publish took %v while down", d)
			}
			return nil
		})
		eventually(t, "Subscribe fails while down", func() error {
			if _, err := sub.Subscribe(context.Background(), topicOf(t, "c"), 1); !isNotConnected(err) {
				return errNotYet
			}
			return nil
		})

		tg.Start(t)

		// Both sessions come back and sub's subscriptions are restored (the
		// restarted broker has no session for it).
		eventually(t, "delivery after restart", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := pub.Publish(ctx, gateway.Message{Topic: topicOf(t, "a", "2"), Payload: []byte("after"), QoS: 1}); err != nil {
				return err
			}
			wait := time.NewTimer(100 * time.Millisecond)
			defer wait.Stop()
			select {
			case m := <-in:
				if m.Topic == topicOf(t, "a", "2") {
					return nil
				}
			case <-wait.C:
			}
			return errNotYet
		})
		publish(t, pub, topicOf(t, "b"), "two", 2, false)
		in.expect(t, topicOf(t, "b"), "two", 2)
	})
}

func TestOpenFails(t *testing.T) {
	checkLeaks(t)
	b := testbroker.EmbeddedTarget(t)
	b.Stop(t) // nothing listens on the address any more
	u := testUpstream(t, b.URL)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := u.Open(ctx, gateway.SessionOptions{ClientID: "x", CleanStart: true}, func(gateway.Message) {}); err == nil {
		t.Fatal("Open succeeded with no broker")
	} else {
		t.Logf("Open: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	open := opener(testUpstream(t, tg.URL))
	s := open(t, gateway.SessionOptions{ClientID: uniqueID("c"), CleanStart: true}, nil)
	closeSession(t, s)
	closeSession(t, s)

	// Close while reconnecting stops the loop.
	s2 := open(t, gateway.SessionOptions{ClientID: uniqueID("c2"), CleanStart: true}, nil)
	tg.Stop(t)
	eventually(t, "noticed broker down", func() error {
		if _, err := s2.current(); !isNotConnected(err) {
			return errNotYet
		}
		return nil
	})
	closeSession(t, s2)
}
