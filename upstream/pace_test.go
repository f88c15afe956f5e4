package upstream

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// Slots are 1/rate apart whoever asks, and one that comes after a quiet
// spell is free at once. Time is an argument: no clock involved.
func TestPacerSlots(t *testing.T) {
	p := newPacer(100) // 10 ms apart
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		if d, want := p.reserve(t0), time.Duration(i)*10*time.Millisecond; d != want {
			t.Fatalf("reserve %d at t0 = %v, want %v", i, d, want)
		}
	}
	// 25 ms later the next free slot is at t0+50ms: 25 ms to wait.
	if d := p.reserve(t0.Add(25 * time.Millisecond)); d != 25*time.Millisecond {
		t.Fatalf("reserve at t0+25ms = %v, want 25ms", d)
	}
	// After a quiet second: at once, and the next one interval later.
	t1 := t0.Add(time.Second)
	if d := p.reserve(t1); d != 0 {
		t.Fatalf("reserve after a quiet spell = %v, want 0", d)
	}
	if d := p.reserve(t1); d != 10*time.Millisecond {
		t.Fatalf("second reserve = %v, want 10ms", d)
	}
	// A tiny or huge rate still gives a usable interval.
	if p := newPacer(1e12); p.interval <= 0 {
		t.Fatalf("interval %v", p.interval)
	}
	if p := newPacer(0.5); p.interval != 2*time.Second {
		t.Fatalf("interval %v, want 2s", p.interval)
	}
}

// The first wait after a loss is anywhere below reconnect_backoff_min
// (connections lost together spread out); then exponential, jittered,
// capped at reconnect_backoff_max.
func TestReconnectBackoff(t *testing.T) {
	u, err := New(Config{URL: "mqtt://127.0.0.1:1", ReconnectBackoffMin: 100 * time.Millisecond, ReconnectBackoffMax: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		for failures, want := range []struct{ lo, hi time.Duration }{
			{0, 100 * time.Millisecond},
			{50 * time.Millisecond, 100 * time.Millisecond},
			{100 * time.Millisecond, 200 * time.Millisecond},
			{200 * time.Millisecond, 400 * time.Millisecond},
			{400 * time.Millisecond, 800 * time.Millisecond},
			{500 * time.Millisecond, time.Second},
			{500 * time.Millisecond, time.Second},
		} {
			if d := u.ReconnectBackoff(failures); d < want.lo || d >= want.hi {
				t.Fatalf("ReconnectBackoff(%d) = %v, want in [%v, %v)", failures, d, want.lo, want.hi)
			}
		}
	}
	if u.cfg.ReconnectRate != DefaultReconnectRate || u.pacer.interval != 10*time.Millisecond {
		t.Fatalf("default rate %v, interval %v", u.cfg.ReconnectRate, u.pacer.interval)
	}
	if _, err := New(Config{URL: "mqtt://x", ReconnectRate: -1}, nil); err == nil {
		t.Fatal("negative broker.reconnect_rate accepted")
	}
}

// After a broker restart, N sessions of one Upstream (MQTT 5 and 3.1.1)
// all come back, and every reconnect attempt took its own slot on the
// shared limiter: slots are at least 1/rate apart, and there are no more
// attempts than slots. Nothing here depends on how fast the machine is.
func TestReconnectsPacedAfterBrokerRestart(t *testing.T) {
	checkLeaks(t)
	const (
		n    = 8
		rate = 20 // 50 ms apart
	)
	for _, version := range []string{Protocol5, Protocol311} {
		t.Run("v"+version, func(t *testing.T) {
			tg := testbroker.EmbeddedTarget(t)
			u := testUpstream311(t, tg.URL, func(c *Config) {
				c.ProtocolVersion = version
				c.ReconnectRate = rate
				c.ReconnectBackoffMin, c.ReconnectBackoffMax = time.Millisecond, 20*time.Millisecond
			})
			var (
				mu    sync.Mutex
				slots []time.Time
			)
			u.pacer.onReserve = func(at time.Time) {
				mu.Lock()
				slots = append(slots, at)
				mu.Unlock()
			}
			for i := range n {
				openAny(t, u, gateway.SessionOptions{ClientID: uniqueID(fmt.Sprintf("paced%d", i)), CleanStart: true}, nil)
			}
			before := u.Stats()
			if before.Connected != n {
				t.Fatalf("connected %d, want %d", before.Connected, n)
			}

			tg.Stop(t)
			eventually(t, "every session down", func() error {
				if u.Stats().Connected != 0 {
					return errNotYet
				}
				return nil
			})
			tg.Start(t)
			eventually(t, "every session reconnected", func() error {
				if st := u.Stats(); st.Reconnects != n || st.Connected != n {
					return errNotYet
				}
				return nil
			})

			after := u.Stats()
			attempts := (after.Connects + after.ConnectFailures) - (before.Connects + before.ConnectFailures)
			mu.Lock()
			got := slices.Clone(slots)
			mu.Unlock()
			if uint64(len(got)) < attempts || attempts < n {
				t.Fatalf("%d reconnect attempts, %d slots taken: every attempt needs a slot", attempts, len(got))
			}
			slices.SortFunc(got, func(a, b time.Time) int { return a.Compare(b) })
			for i := 1; i < len(got); i++ {
				if gap := got[i].Sub(got[i-1]); gap < time.Second/rate {
					t.Fatalf("slots %d and %d are %v apart, want at least %v", i-1, i, gap, time.Second/rate)
				}
			}
			if span := got[len(got)-1].Sub(got[0]); span < (n-1)*time.Second/rate {
				t.Fatalf("%d sessions reconnected within %v: not paced at %d/s", n, span, rate)
			}
			t.Logf("%d attempts on %d slots over %v", attempts, len(got), got[len(got)-1].Sub(got[0]))
		})
	}
}
