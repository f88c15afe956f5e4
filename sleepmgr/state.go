// Package sleepmgr holds the pure state behind MQTT-SN client supervision and
// sleeping clients (MQTT-SN v1.2 §6.14 and §7.2): the client state machine,
// keep-alive and sleep deadlines with the spec's tolerance, and the bounded
// per-node buffer of downlink messages held while a node sleeps.
//
// The package starts no goroutines, opens no sockets, does not log and never
// reads the clock: callers pass the current time in. Buffer and the state
// functions are meant to be used by the single owner of a client's state;
// only Budget is safe for concurrent use.
package sleepmgr

import (
	"errors"
	"strconv"
)

// State is a client's state as seen by the gateway (§6.14, Figure 4).
type State uint8

// Client states.
const (
	// Disconnected: the client sent DISCONNECT without a duration, or never
	// connected. Not time-supervised.
	Disconnected State = iota
	// Active: connected and supervised by the keep-alive timer.
	Active
	// Asleep: the client sent DISCONNECT with a duration; messages for it are
	// buffered and the sleep timer supervises it.
	Asleep
	// Awake: the client sent PINGREQ with its ClientId; the gateway is
	// flushing its buffer and will end with PINGRESP.
	Awake
	// Lost: keep-alive or sleep supervision expired, or retransmissions to
	// the client were exhausted. The will is published on entry.
	Lost

	numStates = iota
)

// String returns the lower-case state name, e.g. "asleep".
func (s State) String() string {
	switch s {
	case Disconnected:
		return "disconnected"
	case Active:
		return "active"
	case Asleep:
		return "asleep"
	case Awake:
		return "awake"
	case Lost:
		return "lost"
	default:
		return "State(" + strconv.Itoa(int(s)) + ")"
	}
}

// Event is something that moves a client between states.
type Event uint8

// Events driving the state machine.
const (
	// EvConnect: CONNECT received (also a repeated CONNECT while active).
	EvConnect Event = iota
	// EvDisconnect: DISCONNECT without a duration, or with duration 0.
	EvDisconnect
	// EvSleep: DISCONNECT with a duration greater than zero.
	EvSleep
	// EvWake: PINGREQ carrying the ClientId.
	EvWake
	// EvWakeDone: the buffer was flushed and PINGRESP sent.
	EvWakeDone
	// EvExpire: keep-alive or sleep timer expired, or retransmissions to the
	// client were exhausted.
	EvExpire

	numEvents = iota
)

// String returns the event name, e.g. "wake-done".
func (e Event) String() string {
	switch e {
	case EvConnect:
		return "connect"
	case EvDisconnect:
		return "disconnect"
	case EvSleep:
		return "sleep"
	case EvWake:
		return "wake"
	case EvWakeDone:
		return "wake-done"
	case EvExpire:
		return "expire"
	}
	return "Event(" + strconv.Itoa(int(e)) + ")"
}

// ErrInvalidTransition is returned (wrapped in a TransitionError) by Next for
// an event that is not allowed in the current state.
var ErrInvalidTransition = errors.New("sleepmgr: invalid transition")

// TransitionError describes a rejected transition. It wraps
// ErrInvalidTransition, so errors.Is(err, ErrInvalidTransition) holds.
type TransitionError struct {
	From  State
	Event Event
}

func (e TransitionError) Error() string {
	return ErrInvalidTransition.Error() + ": " + e.Event.String() + " in state " + e.From.String()
}

// Unwrap returns ErrInvalidTransition.
func (e TransitionError) Unwrap() error { return ErrInvalidTransition }

// invalid marks a forbidden cell in the transition table.
const invalid State = 0xFF

// Next returns the state a client in state s moves to on ev, or a
// TransitionError wrapping ErrInvalidTransition (and s unchanged) if ev is
// not allowed in s. The table below is the only place transitions live.
func Next(s State, ev Event) (State, error) {
	const x = invalid
	table := [numStates][numEvents]State{
		//             EvConnect EvDisconnect  EvSleep EvWake EvWakeDone EvExpire
		Disconnected: {Active, x, x, x, x, x},
		Active:       {Active, Disconnected, Asleep, x, x, Lost},
		Asleep:       {Active, Disconnected, Asleep, Awake, x, Lost},
		Awake:        {Active, Disconnected, Asleep, Awake, Asleep, Lost},
		Lost:         {Active, x, x, x, x, x},
	}
	if s < numStates && ev < numEvents {
		if n := table[s][ev]; n != invalid {
			return n, nil
		}
	}
	return s, TransitionError{From: s, Event: ev}
}
