package gateway

import (
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// ReconnectPacer is implemented by an Upstream that paces reconnects
// gateway-wide (package upstream does, with broker.reconnect_backoff_min,
// broker.reconnect_backoff_max and broker.reconnect_rate). The gateway's
// own QoS -1 connection and an Upstream built over another (the
// aggregating one) retry through it, so that every reconnect of the
// gateway shares one backoff policy and one limiter.
type ReconnectPacer interface {
	// ReconnectBackoff is the jittered wait before a reconnect attempt
	// after failures failed ones (0: the connection was just lost).
	ReconnectBackoff(failures int) time.Duration
	// ReconnectSlot takes the next slot on the shared reconnect limiter
	// and returns how long from now until it; dial no earlier.
	ReconnectSlot() time.Duration
}

// Fallback backoff of the QoS -1 connection when the Upstream is not a
// ReconnectPacer (upstream's defaults).
const (
	qm1BackoffMin = time.Second
	qm1BackoffMax = 30 * time.Second
)

// qm1Link is the state of the gateway's own QoS -1 connection as its
// loop (runQoSMinusOne) sees it. While the broker is down, publishes are
// dropped and counted without an Open each: the next Open waits for the
// backoff and a slot on the limiter, like every reconnect. An outage is
// logged twice: a warning when the connection goes down, an info line
// with what it cost when it is back.
type qm1Link struct {
	log   *zap.Logger
	pacer ReconnectPacer // nil: the fallback backoff, no limiter

	down     bool
	since    time.Time // when it went down
	failures int       // failed Opens in a row
	retryAt  time.Time // no Open before this
	slotted  bool      // retryAt is a slot taken on the limiter
	dropped  int       // publishes dropped during this outage
}

func newQM1Link(log *zap.Logger, up Upstream) *qm1Link {
	l := &qm1Link{log: log}
	l.pacer, _ = up.(ReconnectPacer)
	return l
}

// mayOpen reports whether an Open may be tried now: always while the link
// is up; during an outage once the backoff passed and, after it, the slot
// on the limiter came.
func (l *qm1Link) mayOpen(now time.Time) bool {
	if !l.down {
		return true
	}
	if now.Before(l.retryAt) {
		return false
	}
	if !l.slotted && l.pacer != nil {
		l.slotted = true
		if d := l.pacer.ReconnectSlot(); d > 0 {
			l.retryAt = now.Add(d)
			return false
		}
	}
	l.slotted = false
	return true
}

// failed notes a failed Open (opening) or Publish, and a dropped publish.
func (l *qm1Link) failed(now time.Time, err error, opening bool) {
	l.dropped++
	if !l.down {
		l.down, l.since, l.failures = true, now, 0
		l.log.Warn("QoS -1 broker connection down: QoS -1 publishes are dropped and counted until it is back",
			zap.Error(err))
	} else {
		l.log.Debug("QoS -1 publish dropped: broker connection down", zap.Error(err))
	}
	if opening {
		l.failures++
		l.retryAt = now.Add(l.backoff())
		l.slotted = false
	}
}

// skipped notes a publish dropped without an Open (the backoff runs).
func (l *qm1Link) skipped() { l.dropped++ }

// ok notes a publish the broker took.
func (l *qm1Link) ok(now time.Time) {
	if !l.down {
		return
	}
	l.log.Info("QoS -1 broker connection back", zap.Duration("down_for", now.Sub(l.since)),
		zap.Int("dropped", l.dropped), zap.Int("failed_opens", l.failures))
	*l = qm1Link{log: l.log, pacer: l.pacer}
}

func (l *qm1Link) backoff() time.Duration {
	if l.pacer != nil {
		return l.pacer.ReconnectBackoff(l.failures)
	}
	d := qm1BackoffMin
	for i := 1; i < l.failures && d < qm1BackoffMax; i++ {
		d *= 2
	}
	d = min(d, qm1BackoffMax)
	return d/2 + rand.N(d/2+1)
}
