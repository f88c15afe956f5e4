package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// When another connection takes the session over (the node moved to
// another gateway), the session ends: no reconnect that would take it back,
// Done closed, Ended called once with ErrTakenOver.
func TestTakenOverEndsSession(t *testing.T) {
	checkLeaks(t)
	forEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		a, b := testUpstream(t, tg.URL), testUpstream(t, tg.URL)
		id := uniqueID("moved")
		ended := make(chan error, 2)
		opts := gateway.SessionOptions{ClientID: id, SessionExpiry: time.Minute, Ended: func(err error) { ended <- err }}
		first := opener(a)(t, opts, nil)
		opts.Ended = nil
		second := opener(b)(t, opts, nil)

		select {
		case err := <-ended:
			if !errors.Is(err, gateway.ErrTakenOver) {
				t.Fatalf("Ended(%v), want ErrTakenOver", err)
			}
		case <-time.After(waitFor):
			t.Fatal("Ended not called after the takeover")
		}
		select {
		case <-first.Done():
		case <-time.After(waitFor):
			t.Fatal("Done not closed after the takeover")
		}
		if n := a.TakenOver(); n != 1 {
			t.Fatalf("TakenOver() = %d, want 1", n)
		}
		// The first stopped: at once on DISCONNECT 0x8E (embedded);
		// after takeoverDrops short-lived reconnects where the broker only
		// closes the old connection (mosquitto 2.0.11).
		st := a.Stats()
		if st.Connects != 1+st.Reconnects || st.Reconnects > takeoverDrops || st.Connected != 0 ||
			tg.Name == "embedded" && st.Reconnects != 0 {
			t.Fatalf("first upstream on %s: %+v", tg.Name, st)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := first.Publish(ctx, gateway.Message{Topic: "x", QoS: 1}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Publish after takeover: %v, want ErrClosed", err)
		}
		eventually(t, "second connected", func() error {
			if b.Stats().Connected != 1 {
				return errNotYet
			}
			return nil
		})
		publish(t, second, topicOf(t, "still"), "up", 1, false)
		if n := b.TakenOver(); n != 0 {
			t.Fatalf("the second gave up too (%d)", n)
		}
		select {
		case err := <-ended:
			t.Fatalf("Ended called twice (%v)", err)
		default:
		}
	})
}

func TestDropRun(t *testing.T) {
	t.Parallel()
	var d dropRun
	for i := range takeoverDrops {
		d.reconnected(time.Hour)
		if got := d.lost(io.EOF); got != (i == takeoverDrops-1) {
			t.Fatalf("drop %d: %v", i+1, got)
		}
	}
	// A connection made by Open, an old one, or one we closed ourselves
	// breaks the run.
	for _, tc := range []struct {
		window time.Duration
		err    error
		reconn bool
	}{
		{time.Hour, io.EOF, false},
		{-time.Second, io.EOF, true},
		{time.Hour, net.ErrClosed, true},
		{time.Hour, &ReasonCodeError{Packet: "DISCONNECT", Code: 0x8B}, true},
	} {
		d = dropRun{}
		for range takeoverDrops - 1 {
			d.reconnected(time.Hour)
			d.lost(io.EOF)
		}
		if tc.reconn {
			d.reconnected(tc.window)
		}
		if d.lost(tc.err) || d.n != 0 {
			t.Fatalf("%+v: counted (n=%d)", tc, d.n)
		}
	}
}
