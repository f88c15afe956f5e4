package test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// Bounds under abuse (issue 14), end to end.

// stallUpstream is a real upstream whose sessions' publishes wait while it
// is stalled: a broker that accepts connections and then stops answering.
type stallUpstream struct {
	gateway.Upstream
	mu   sync.Mutex
	gate chan struct{} // nil: not stalled
}

func (u *stallUpstream) stall() {
	u.mu.Lock()
	u.gate = make(chan struct{})
	u.mu.Unlock()
}

func (u *stallUpstream) release() {
	u.mu.Lock()
	if u.gate != nil {
		close(u.gate)
		u.gate = nil
	}
	u.mu.Unlock()
}

func (u *stallUpstream) wait(ctx context.Context) error {
	u.mu.Lock()
	gate := u.gate
	u.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *stallUpstream) Open(ctx context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	s, err := u.Upstream.Open(ctx, opts, deliver)
	if err != nil {
		return nil, err
	}
	return &stallSession{Session: s, u: u}, nil
}

type stallSession struct {
	gateway.Session
	u *stallUpstream
}

func (s *stallSession) Publish(ctx context.Context, m gateway.Message) error {
	if err := s.u.wait(ctx); err != nil {
		return err
	}
	return s.Session.Publish(ctx, m)
}

// runStallable starts a gateway on tg whose upstream can be stalled.
func runStallable(t *testing.T, tg testbroker.Target, cfg gateway.Config) (*Env, *stallUpstream) {
	t.Helper()
	up, err := upstream.New(testgw.UpstreamConfig(tg, upstream.Config{}), testgw.Logger(t).Named("upstream"))
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	su := &stallUpstream{Upstream: up}
	g := testgw.StartUpstream(t, su, cfg)
	t.Cleanup(su.release) // runs before the gateway's Shutdown: cleanups run last first
	return &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String(), Cfg: cfg}, su
}

// One node flooding a stalled broker: its waiting publishes stop at
// limits.max_pending_per_node; the rest get PUBACK congestion (QoS 1) or
// are dropped (QoS 0), counted; once the broker answers, exactly the
// admitted ones reach it and the node publishes again.
func TestPendingPerNodeBounded(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		topic := "lim/pending/" + tg.Name
		e, su := runStallable(t, tg, gateway.Config{MaxPendingPerNode: 4, Predefined: map[uint16]string{1: topic}})
		w := e.Watch(t, topic)
		n := e.Node(t)
		n.Connect("flooder", true, 60)
		su.stall()
		for id := uint16(1); id <= 10; id++ {
			n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: id, Data: []byte("q1")})
		}
		for range 5 {
			n.Send(&sn.Publish{QoS: sn.QoS0, TopicIDType: sn.TopicPredefined, TopicID: 1, Data: []byte("q0")})
		}
		for id := uint16(5); id <= 10; id++ {
			n.Expect(&sn.Puback{TopicID: 1, MsgID: id, ReturnCode: sn.RejectedCongestion})
		}
		Eventually(t, "11 refusals counted", func() bool {
			return e.GW.Stats().Limited[gateway.LimitPendingPerNode].Load() == 11
		})
		su.release()
		for id := uint16(1); id <= 4; id++ {
			n.Expect(&sn.Puback{TopicID: 1, MsgID: id, ReturnCode: sn.Accepted})
		}
		for range 4 {
			if r := w.Next(); r.Payload != "q1" {
				t.Fatalf("broker got %+v", r)
			}
		}
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 11, Data: []byte("again")})
		n.Expect(&sn.Puback{TopicID: 1, MsgID: 11, ReturnCode: sn.Accepted})
		if r := w.Next(); r.Payload != "again" {
			t.Fatalf("broker got %+v", r)
		}
		if b := e.GW.PendingBytes(); b != 0 {
			t.Fatalf("%d bytes still held for the uplink", b)
		}
	})
}

// A node's topic-name bytes and subscriptions are bounded: a name that
// alone exceeds limits.max_topic_bytes gets REGACK 0x03 (never fits), one
// that only the node's other names leave no room for gets 0x01, and a
// subscription beyond limits.max_subscriptions SUBACK 0x01; each counted,
// and the node's other traffic goes on.
func TestTopicBytesAndSubscriptionsBounded(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{MaxTopicBytes: 100, MaxSubscriptions: 3})
		n := e.Node(t)
		n.Connect("hoarder", true, 60)
		n.Send(&sn.Register{MsgID: 1, TopicName: strings.Repeat("a", 101)})
		n.Expect(&sn.Regack{MsgID: 1, ReturnCode: sn.RejectedNotSupported})
		n.Register(2, strings.Repeat("b", 60))
		n.Send(&sn.Register{MsgID: 3, TopicName: strings.Repeat("c", 41)})
		n.Expect(&sn.Regack{MsgID: 3, ReturnCode: sn.RejectedCongestion})
		n.Register(4, strings.Repeat("d", 40)) // exactly fills it
		if got := e.GW.Stats().Limited[gateway.LimitTopicBytes].Load(); got != 2 {
			t.Fatalf("limited by topic_bytes %d, want 2", got)
		}
		// Subscriptions: wildcard filters count against the bytes too,
		// so take them from a fresh node.
		s := e.Node(t)
		s.Connect("subscriber", true, 60)
		for i, f := range []string{"x/+", "y/#", "z"} {
			s.Subscribe(uint16(10+i), f, sn.QoS0)
		}
		s.Send(&sn.Subscribe{QoS: sn.QoS0, MsgID: 20, TopicName: "w/#"})
		s.Expect(&sn.Suback{MsgID: 20, ReturnCode: sn.RejectedCongestion})
		s.Subscribe(21, "y/#", sn.QoS1) // the same filter again is no new one
		if got := e.GW.Stats().Limited[gateway.LimitSubscriptions].Load(); got != 1 {
			t.Fatalf("limited by subscriptions %d, want 1", got)
		}
		s.Send(&sn.Unsubscribe{MsgID: 22, TopicName: "x/+"})
		s.Expect(&sn.Unsuback{MsgID: 22})
		s.Subscribe(23, "w/#", sn.QoS0)
	})
}
