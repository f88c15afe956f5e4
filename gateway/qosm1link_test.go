package gateway

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakePacer hands out fixed backoffs and slots, and counts slots taken.
type fakePacer struct {
	backoff, slot time.Duration
	slots         int
}

func (p *fakePacer) ReconnectBackoff(int) time.Duration { return p.backoff }
func (p *fakePacer) ReconnectSlot() time.Duration       { p.slots++; return p.slot }

type pacedUpstream struct {
	Upstream
	*fakePacer
}

// While the broker is down the QoS -1 connection is opened again only
// after the backoff and then its slot on the limiter; every publish in
// between is dropped without an Open; the outage is logged once when it
// starts and once when it ends.
func TestQM1LinkBackoffAndLogsOnce(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	p := &fakePacer{backoff: time.Second, slot: 100 * time.Millisecond}
	l := newQM1Link(zap.New(core), pacedUpstream{fakePacer: p})
	if l.pacer == nil {
		t.Fatal("the upstream's ReconnectPacer not found")
	}
	t0 := time.Unix(1000, 0)
	if !l.mayOpen(t0) {
		t.Fatal("first Open refused")
	}
	down := errors.New("connection refused")
	l.failed(t0, down, true)
	for _, ms := range []int{1, 500, 999} {
		if l.mayOpen(t0.Add(time.Duration(ms) * time.Millisecond)) {
			t.Fatalf("Open allowed %d ms after a failure, before the 1 s backoff", ms)
		}
		l.skipped()
	}
	// The backoff is over: a slot is taken, 100 ms away.
	t1 := t0.Add(time.Second)
	if l.mayOpen(t1) || p.slots != 1 {
		t.Fatalf("Open allowed before its slot (slots %d)", p.slots)
	}
	if l.mayOpen(t1.Add(50*time.Millisecond)) || p.slots != 1 {
		t.Fatalf("Open allowed before its slot, or a second slot taken (slots %d)", p.slots)
	}
	if !l.mayOpen(t1.Add(100*time.Millisecond)) || p.slots != 1 {
		t.Fatalf("Open refused at its slot (slots %d)", p.slots)
	}
	l.failed(t1.Add(100*time.Millisecond), down, true)
	l.failed(t1.Add(200*time.Millisecond), down, false) // a Publish on a session that is reconnecting
	if l.failures != 2 || l.dropped != 6 {
		t.Fatalf("failures %d dropped %d, want 2 and 6", l.failures, l.dropped)
	}
	l.ok(t0.Add(5 * time.Second))
	l.ok(t0.Add(6 * time.Second))
	if !l.mayOpen(t0.Add(6*time.Second)) || l.down {
		t.Fatal("still down after a publish went through")
	}

	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings for one outage, want 1: %v", n, logs.All())
	}
	back := logs.FilterMessage("QoS -1 broker connection back").All()
	if len(back) != 1 || back[0].Level != zapcore.InfoLevel {
		t.Fatalf("back lines %v", back)
	}
	if f := back[0].ContextMap(); f["dropped"] != int64(6) || f["failed_opens"] != int64(2) || f["down_for"] != 5*time.Second {
		t.Fatalf("back line fields %v", f)
	}
}

// Without a ReconnectPacer the fallback backoff still holds Opens back.
func TestQM1LinkFallbackBackoff(t *testing.T) {
	l := newQM1Link(zap.NewNop(), nil)
	t0 := time.Unix(1000, 0)
	l.failed(t0, errors.New("down"), true)
	if l.mayOpen(t0.Add(qm1BackoffMin/2 - time.Millisecond)) {
		t.Fatal("Open allowed before half the fallback backoff")
	}
	if !l.mayOpen(t0.Add(qm1BackoffMin + time.Millisecond)) {
		t.Fatal("Open refused after the fallback backoff")
	}
}
