package upstream

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// DefaultReconnectRate is the gateway-wide limit on reconnect attempts per
// second (broker.reconnect_rate) unless Config.ReconnectRate sets another.
const DefaultReconnectRate = 100

// pacer spaces reconnect attempts gateway-wide: every reconnect loop of an
// Upstream (one per node's connection, MQTT 5 and 3.1.1), the aggregating
// upstream's reopen and the gateway's QoS -1 connection take a slot before
// they dial, and slots are 1/rate apart. After a broker restart 10,000
// sessions then come back at the configured rate instead of all within
// their first backoff. It is safe for concurrent use.
//
// A slot is a time: reserve returns the next free one (at once when the
// last one is more than an interval ago, so one session that reconnects
// alone never waits), and the caller waits until it. A caller that gives up
// before its slot wastes it; nothing else depends on it.
type pacer struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time // the earliest free slot
	// onReserve, for tests, sees every slot handed out.
	onReserve func(at time.Time)
}

func newPacer(perSecond float64) *pacer {
	iv := time.Duration(float64(time.Second) / perSecond)
	return &pacer{interval: max(iv, 1)}
}

// reserve takes the next free slot and returns how long after now it is.
func (p *pacer) reserve(now time.Time) time.Duration {
	p.mu.Lock()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(p.interval)
	hook := p.onReserve
	p.mu.Unlock()
	if hook != nil {
		hook(at)
	}
	return at.Sub(now)
}

// ReconnectBackoff is the jittered wait before a reconnect attempt after
// failures failed ones: for 0 (the connection was just lost) anywhere in
// [0, reconnect_backoff_min), so that connections lost together do not
// come back together; then exponential, in [d/2, d) for d doubling from
// reconnect_backoff_min up to reconnect_backoff_max. It implements
// gateway.ReconnectPacer.
func (u *Upstream) ReconnectBackoff(failures int) time.Duration {
	if failures <= 0 {
		if d := u.cfg.ReconnectBackoffMin; d > 0 {
			return rand.N(d)
		}
		return 0
	}
	d := u.cfg.ReconnectBackoffMin
	for i := 1; i < failures && d < u.cfg.ReconnectBackoffMax; i++ {
		d *= 2
	}
	return jitter(min(d, u.cfg.ReconnectBackoffMax))
}

// ReconnectSlot takes a slot on the gateway-wide reconnect limiter
// (broker.reconnect_rate) and returns how long from now until it: the
// caller dials no earlier. It implements gateway.ReconnectPacer.
func (u *Upstream) ReconnectSlot() time.Duration { return u.pacer.reserve(time.Now()) }

// awaitReconnect waits for the backoff before reconnect attempt number
// failures+1, and then for a slot on the limiter. t is the loop's timer,
// stopped or fired. It reports false when ctx ended first.
func (u *Upstream) awaitReconnect(ctx context.Context, t *time.Timer, failures int) bool {
	if !wait(ctx, t, u.ReconnectBackoff(failures)) {
		return false
	}
	return wait(ctx, t, u.ReconnectSlot())
}

// wait waits d on t, or until ctx ends.
func wait(ctx context.Context, t *time.Timer, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t.Reset(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return false
	case <-t.C:
		return true
	}
}
