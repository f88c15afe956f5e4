package test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// The broker goes away during QoS 1 traffic and comes back (issue 3): no
// message that a node got PUBACK 0x00 for is lost, and none is acknowledged
// 0x00 that the broker cannot have received.
//
// Neither test broker persists sessions, so a watcher sees only what is
// published while it is subscribed. The test therefore checks two windows:
// before the outage (a watcher subscribed from the start must see a
// gap-free prefix of the messages) and after it (a new watcher, subscribed
// once the broker is back and a publish went through again, must see every
// message first sent after its subscription and acknowledged 0x00).
func TestBrokerRestartQoS1(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w1 := newBrokerClient(t, tg.Addr(), "watch-before")
		w1.subscribe("restart/#", 1)
		n := e.Node(t)
		n.Connect("restart-pub", true, 600)
		id := n.Register(1, "restart/a")

		pub := startRetryPublisher(t, n.Conn, id)
		var before []int // seqs the first watcher got, in order
		for len(before) < 10 {
			before = append(before, payloadSeq(t, w1.next().Payload))
		}
		pub.waitFor(t, "20 messages acknowledged before the outage", func(ev pubEvent) bool { return ev.acked() && ev.seq >= 19 })

		stopBegin := time.Now()
		tg.Stop(t)
		stopDone := time.Now()
		pub.waitFor(t, "10 messages refused or unanswered during the outage", func() func(pubEvent) bool {
			refused := 0
			return func(ev pubEvent) bool {
				if !ev.acked() && ev.at.After(stopDone) {
					refused++
				}
				return refused >= 10
			}
		}())
		// A node connecting now is told to come back later.
		m := e.Node(t)
		m.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "restart-late"})
		m.Expect(&sn.Connack{ReturnCode: sn.RejectedCongestion})

		startBegin := time.Now()
		tg.Start(t)
		startDone := time.Now()
		pub.waitFor(t, "a message acknowledged after the restart", func(ev pubEvent) bool { return ev.acked() && ev.at.After(startDone) })
		w2 := newBrokerClient(t, tg.Addr(), "watch-after")
		w2.subscribe("restart/#", 1)
		subscribed := time.Now()
		pub.waitFor(t, "20 messages sent after the new subscription acknowledged", func() func(pubEvent) bool {
			acked := 0
			return func(ev pubEvent) bool {
				if ev.acked() && ev.firstSent.After(subscribed) {
					acked++
				}
				return acked >= 20
			}
		}())
		events := pub.stop()

		// What the node was told.
		var mustArrive []int
		refusedSeq := -1
		ackedSeqs := map[int]bool{}
		for _, ev := range events {
			switch {
			case ev.timeout:
			case ev.rc != sn.Accepted && ev.rc != sn.RejectedCongestion:
				t.Errorf("message %d: PUBACK %v; only 0x00 or 0x01 (congestion) make sense here", ev.seq, ev.rc)
			case ev.rc == sn.Accepted && ev.firstSent.After(stopDone) && ev.at.Before(startBegin):
				t.Errorf("message %d: PUBACK 0x00 at +%v for a message first sent at +%v, after the broker stopped (+%v) and before it started again (+%v)",
					ev.seq, ev.at.Sub(stopBegin), ev.firstSent.Sub(stopBegin), stopDone.Sub(stopBegin), startBegin.Sub(stopBegin))
			}
			if !ev.acked() && ev.at.After(stopDone) && refusedSeq < 0 {
				refusedSeq = ev.seq
			}
			if ev.acked() {
				ackedSeqs[ev.seq] = true
				if ev.firstSent.After(subscribed) {
					mustArrive = append(mustArrive, ev.seq)
				}
			}
		}
		if refusedSeq < 0 || !ackedSeqs[refusedSeq] {
			t.Errorf("message %d refused during the outage was never acknowledged later", refusedSeq)
		}
		t.Logf("%d events; message %d first refused during the outage; %d messages to check after the restart", len(events), refusedSeq, len(mustArrive))

		// Before the outage: a gap-free prefix, duplicates allowed.
	drain:
		for {
			select {
			case r := <-w1.C:
				before = append(before, payloadSeq(t, r.Payload))
			default:
				break drain
			}
		}
		next := 0
		for _, s := range before {
			switch {
			case s == next:
				next++
			case s < next: // a duplicate
			default:
				t.Fatalf("first watcher: message %d arrived before %d: %v", s, next, before)
			}
		}

		// After the outage: every message acknowledged 0x00 arrives, in
		// order of first arrival.
		want := map[int]bool{}
		for _, s := range mustArrive {
			want[s] = true
		}
		var order []int
		seen := map[int]bool{}
		for len(want) > 0 {
			r := w2.next()
			s := payloadSeq(t, r.Payload)
			if seen[s] {
				continue
			}
			seen[s] = true
			order = append(order, s)
			delete(want, s)
		}
		for i := 1; i < len(order); i++ {
			if order[i] < order[i-1] {
				t.Fatalf("second watcher: out of order: %v", order)
			}
		}
	})
}

func payloadSeq(t testing.TB, p string) int {
	t.Helper()
	s, err := strconv.Atoi(strings.TrimPrefix(p, "r"))
	if err != nil {
		t.Fatalf("unexpected payload %q", p)
	}
	return s
}

// pubEvent is one outcome of a publish attempt.
type pubEvent struct {
	seq       int
	rc        sn.ReturnCode
	timeout   bool      // no PUBACK within the node's Tretry
	firstSent time.Time // first transmission of this message
	at        time.Time // when the outcome was seen
}

func (ev pubEvent) acked() bool { return !ev.timeout && ev.rc == sn.Accepted }

// retryPublisher is a node application publishing QoS 1 messages r00000,
// r00001, ... one after the other, as a real client would: resend with DUP
// after Tretry without an answer, retry after a short wait on PUBACK
// congestion, next message only after PUBACK 0x00. It runs in its own
// goroutine and owns the connection until stopped.
type retryPublisher struct {
	events chan pubEvent
	seen   []pubEvent // collected by the test goroutine
	quit   chan struct{}
	done   chan struct{}
}

// Timings of the retrying publisher.
const (
	pubTretry     = time.Second
	pubCongestion = 100 * time.Millisecond
)

func startRetryPublisher(t testing.TB, c *snclient.Conn, topicID uint16) *retryPublisher {
	t.Helper()
	p := &retryPublisher{events: make(chan pubEvent, 1<<16), quit: make(chan struct{}), done: make(chan struct{})}
	go p.run(c, topicID)
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *retryPublisher) run(c *snclient.Conn, topicID uint16) {
	defer close(p.done)
	wait := time.NewTimer(0)
	defer wait.Stop()
	for seq := 0; seq < 65000; seq++ {
		msgID := uint16(seq + 1)
		var first time.Time
		dup := false
		for {
			select {
			case <-p.quit:
				return
			default:
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			if err := c.Send(&sn.Publish{DUP: dup, QoS: sn.QoS1, TopicID: topicID, MsgID: msgID, Data: fmt.Appendf(nil, "r%05d", seq)}); err != nil {
				return
			}
			ev := pubEvent{seq: seq, firstSent: first, timeout: true}
			deadline := time.Now().Add(pubTretry)
			for ev.timeout {
				a, err := c.Receive(time.Until(deadline))
				if errors.Is(err, snclient.ErrTimeout) {
					break
				}
				if err != nil {
					return // closed
				}
				if pa, ok := a.(*sn.Puback); ok && pa.MsgID == msgID {
					ev.timeout, ev.rc = false, pa.ReturnCode
				}
			}
			ev.at = time.Now()
			select {
			case p.events <- ev:
			case <-p.quit:
				return
			}
			if ev.acked() {
				break
			}
			dup = ev.timeout
			if !ev.timeout {
				wait.Reset(pubCongestion)
				select {
				case <-p.quit:
					return
				case <-wait.C:
				}
			}
		}
	}
}

// waitFor collects events until cond holds for one, failing after
// lossyWait.
func (p *retryPublisher) waitFor(t testing.TB, what string, cond func(pubEvent) bool) {
	t.Helper()
	deadline := time.NewTimer(lossyWait)
	defer deadline.Stop()
	for {
		select {
		case ev := <-p.events:
			p.seen = append(p.seen, ev)
			if cond(ev) {
				return
			}
		case <-p.done:
			t.Fatalf("publisher ended while waiting for %s", what)
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; last events %+v", what, p.seen[max(0, len(p.seen)-5):])
		}
	}
}

// stop ends the publisher and returns every event, in order.
func (p *retryPublisher) stop() []pubEvent {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
	for {
		select {
		case ev := <-p.events:
			p.seen = append(p.seen, ev)
		default:
			return p.seen
		}
	}
}
