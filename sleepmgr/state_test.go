package sleepmgr

import (
	"errors"
	"fmt"
	"testing"
)

func TestNextAllowed(t *testing.T) {
	tests := []struct {
		from State
		ev   Event
		want State
	}{
		{Disconnected, EvConnect, Active},
		{Lost, EvConnect, Active},
		{Active, EvConnect, Active},
		{Asleep, EvConnect, Active},
		{Awake, EvConnect, Active},
		{Active, EvDisconnect, Disconnected},
		{Asleep, EvDisconnect, Disconnected},
		{Awake, EvDisconnect, Disconnected},
		{Active, EvSleep, Asleep},
		{Asleep, EvSleep, Asleep},
		{Awake, EvSleep, Asleep},
		{Asleep, EvWake, Awake},
		{Awake, EvWake, Awake},
		{Awake, EvWakeDone, Asleep},
		{Active, EvExpire, Lost},
		{Asleep, EvExpire, Lost},
		{Awake, EvExpire, Lost},
	}
	for _, tt := range tests {
		t.Run(tt.from.String()+"/"+tt.ev.String(), func(t *testing.T) {
			got, err := Next(tt.from, tt.ev)
			if err != nil {
				t.Fatalf("Next(%v, %v) error: %v", tt.from, tt.ev, err)
			}
			if got != tt.want {
				t.Fatalf("Next(%v, %v) = %v, want %v", tt.from, tt.ev, got, tt.want)
			}
		})
	}
}

// TestNextExhaustive checks that exactly the 17 transitions listed in
// TestNextAllowed are accepted, and every other pair is rejected.
func TestNextExhaustive(t *testing.T) {
	allowed := 0
	for s := range State(numStates) {
		for ev := range Event(numEvents) {
			got, err := Next(s, ev)
			if err == nil {
				allowed++
				continue
			}
			if got != s {
				t.Errorf("Next(%v, %v) rejected but returned %v, want unchanged", s, ev, got)
			}
			if !errors.Is(err, ErrInvalidTransition) {
				t.Errorf("Next(%v, %v) error %v is not ErrInvalidTransition", s, ev, err)
			}
		}
	}
	if allowed != 17 {
		t.Errorf("%d transitions allowed, want 17", allowed)
	}
}

func TestNextInvalid(t *testing.T) {
	tests := []struct {
		from    State
		ev      Event
		wantMsg string
	}{
		{Disconnected, EvDisconnect, "sleepmgr: invalid transition: disconnect in state disconnected"},
		{Disconnected, EvSleep, "sleepmgr: invalid transition: sleep in state disconnected"},
		{Disconnected, EvWake, "sleepmgr: invalid transition: wake in state disconnected"},
		{Disconnected, EvExpire, "sleepmgr: invalid transition: expire in state disconnected"},
		{Active, EvWake, "sleepmgr: invalid transition: wake in state active"},
		{Active, EvWakeDone, "sleepmgr: invalid transition: wake-done in state active"},
		{Asleep, EvWakeDone, "sleepmgr: invalid transition: wake-done in state asleep"},
		{Lost, EvWake, "sleepmgr: invalid transition: wake in state lost"},
		{Lost, EvExpire, "sleepmgr: invalid transition: expire in state lost"},
		{Lost, EvDisconnect, "sleepmgr: invalid transition: disconnect in state lost"},
		{State(9), EvConnect, "sleepmgr: invalid transition: connect in state State(9)"},
		{Active, Event(42), "sleepmgr: invalid transition: Event(42) in state active"},
	}
	for _, tt := range tests {
		t.Run(tt.from.String()+"/"+tt.ev.String(), func(t *testing.T) {
			got, err := Next(tt.from, tt.ev)
			if !errors.Is(err, ErrInvalidTransition) {
				t.Fatalf("Next(%v, %v) = %v, %v; want ErrInvalidTransition", tt.from, tt.ev, got, err)
			}
			if got != tt.from {
				t.Errorf("state = %v, want unchanged %v", got, tt.from)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("error = %q, want %q", err, tt.wantMsg)
			}
			var te TransitionError
			if !errors.As(err, &te) || te.From != tt.from || te.Event != tt.ev {
				t.Errorf("errors.As TransitionError = %+v", te)
			}
			// Still recognisable after further wrapping.
			if !errors.Is(fmt.Errorf("client x: %w", err), ErrInvalidTransition) {
				t.Error("wrapped error lost ErrInvalidTransition")
			}
		})
	}
}

func TestStrings(t *testing.T) {
	states := map[State]string{
		Disconnected: "disconnected", Active: "active", Asleep: "asleep",
		Awake: "awake", Lost: "lost", State(200): "State(200)",
	}
	for s, want := range states {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
	events := map[Event]string{
		EvConnect: "connect", EvDisconnect: "disconnect", EvSleep: "sleep",
		EvWake: "wake", EvWakeDone: "wake-done", EvExpire: "expire", Event(7): "Event(7)",
	}
	for e, want := range events {
		if got := e.String(); got != want {
			t.Errorf("Event(%d).String() = %q, want %q", uint8(e), got, want)
		}
	}
	reasons := map[DropReason]string{
		DropQoS0Overflow: "qos0_overflow", DropOverflow: "overflow", DropBudget: "budget",
		DropReason(9): "DropReason(9)",
	}
	for r, want := range reasons {
		if got := r.String(); got != want {
			t.Errorf("DropReason(%d).String() = %q, want %q", uint8(r), got, want)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	b.ReportAllocs()
	s := Asleep
	for b.Loop() {
		s, _ = Next(s, EvWake)
		s, _ = Next(s, EvWakeDone)
	}
	if s != Asleep {
		b.Fatal(s)
	}
}
