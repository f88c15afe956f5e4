package test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Lossy-link tests (issue 3): datagrams are dropped and duplicated in both
// directions; QoS 1 still delivers every message, QoS 2 exactly once, in
// order. Both ends retransmit: the gateway after a short RetryInterval, the
// node (a retryNode below) after its own Tretry.

// lossyLink is the damage used by the lossy tests: every 4th datagram of
// each direction dropped, every 3rd duplicated, plus 5% random drops
// (seeded), never more than 2 drops in a row.
func lossyLink() Loss {
	return Loss{DropEvery: 4, DupEvery: 3, DropRate: 0.05, MaxDropRun: 2, Seed: 0x5eed}
}

// lossyGateway is a gateway that retransmits quickly and often enough to
// ride out MaxDropRun consecutive drops many times over.
func lossyGateway() gateway.Config {
	return gateway.Config{RetryInterval: 100 * time.Millisecond, RetryCount: 10}
}

// lossyWait bounds one exchange over the lossy link (many retries), and
// the whole downlink run.
const lossyWait = 12 * Wait

// nodeTretry is the retrying node's retransmission interval.
const nodeTretry = 150 * time.Millisecond

func TestLossyUplinkQoS1(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, lossyGateway())
		relay := NewLossyRelay(t, e.Addr, lossyLink())
		w := newBrokerClient(t, tg.Addr(), "watch")
		w.subscribe("lossy/#", 2)

		n := dialRetryNode(t, relay.Addr)
		n.connect("lossy-up1")
		id := n.register(1, "lossy/q1")

		const count = 50
		for i := range count {
			msgID := uint16(100 + i)
			a := n.exchange(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: msgID, Data: fmt.Appendf(nil, "m%02d", i)},
				func(p sn.Packet) bool { a, ok := p.(*sn.Puback); return ok && a.MsgID == msgID })
			if rc := a.(*sn.Puback).ReturnCode; rc != sn.Accepted {
				t.Fatalf("message %d: PUBACK %v with the broker up", i, rc)
			}
		}

		// Every message at least once, in the order of first arrival.
		seen := map[string]bool{}
		var order []string
		dups := 0
		for len(order) < count {
			r := w.next()
			if r.Topic != "lossy/q1" || r.QoS != 1 {
				t.Fatalf("broker got %+v", r)
			}
			if seen[r.Payload] {
				dups++
				continue
			}
			seen[r.Payload] = true
			order = append(order, r.Payload)
		}
		for i, p := range order {
			if want := fmt.Sprintf("m%02d", i); p != want {
				t.Fatalf("first arrivals out of order: %v", order)
			}
		}
		t.Logf("uplink QoS 1: %d duplicates at the broker; relay up %d dropped %d duplicated, down %d dropped %d duplicated",
			dups, relay.Up.Dropped.Load(), relay.Up.Duplicated.Load(), relay.Down.Dropped.Load(), relay.Down.Duplicated.Load())
		if relay.Up.Dropped.Load() == 0 || relay.Down.Dropped.Load() == 0 || relay.Up.Duplicated.Load() == 0 || relay.Down.Duplicated.Load() == 0 {
			t.Fatal("the relay did not damage both directions")
		}
	})
}

func TestLossyUplinkQoS2(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, lossyGateway())
		relay := NewLossyRelay(t, e.Addr, lossyLink())
		w := newBrokerClient(t, tg.Addr(), "watch")
		w.subscribe("lossy/#", 2)

		n := dialRetryNode(t, relay.Addr)
		n.connect("lossy-up2")
		id := n.register(1, "lossy/q2")

		const count = 50
		for i := range count {
			msgID := uint16(200 + i)
			a := n.exchange(&sn.Publish{QoS: sn.QoS2, TopicID: id, MsgID: msgID, Data: fmt.Appendf(nil, "m%02d", i)},
				func(p sn.Packet) bool {
					switch a := p.(type) {
					case *sn.Pubrec:
						return a.MsgID == msgID
					case *sn.Puback:
						return a.MsgID == msgID
					}
					return false
				})
			if pa, ok := a.(*sn.Puback); ok {
				t.Fatalf("message %d: PUBACK %v instead of PUBREC with the broker up", i, pa.ReturnCode)
			}
			n.exchange(&sn.Pubrel{MsgID: msgID},
				func(p sn.Packet) bool { c, ok := p.(*sn.Pubcomp); return ok && c.MsgID == msgID })
		}

		// Exactly once each, in order.
		for i := range count {
			r := w.next()
			if want := (bcMsg{Topic: "lossy/q2", Payload: fmt.Sprintf("m%02d", i), QoS: 2}); r != want {
				t.Fatalf("broker message %d: got %+v, want %+v", i, r, want)
			}
		}
		w.expectNothing(time.Second)
		t.Logf("uplink QoS 2: relay up %d dropped %d duplicated, down %d dropped %d duplicated",
			relay.Up.Dropped.Load(), relay.Up.Duplicated.Load(), relay.Down.Dropped.Load(), relay.Down.Duplicated.Load())
	})
}

// Downlink over the lossy link: QoS 1 and QoS 2 messages interleaved from
// the broker, a few at a time. The node behaves like a real client: it acknowledges every
// copy, and passes a QoS 2 PUBLISH to its application only if its MsgId is
// not awaiting PUBREL.
func TestLossyDownlink(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, lossyGateway())
		relay := NewLossyRelay(t, e.Addr, lossyLink())
		n := dialRetryNode(t, relay.Addr)
		n.connect("lossy-down")
		id1 := n.subscribe(1, "lossy/d1", sn.QoS1)
		id2 := n.subscribe(2, "lossy/d2", sn.QoS2)
		if id1 == id2 {
			t.Fatalf("both topics got id %d", id1)
		}

		const count = 50
		// The broker publisher stays at most window messages ahead of the
		// node's application, so that the broker never holds more for the
		// gateway than the upstream Receive Maximum (a backlog beyond it
		// is TestDownlinkBacklogOrder's subject, not this test's).
		const window = 6
		pub := newBrokerClient(t, tg.Addr(), "pub")
		published := 0

		var q1First, q2App []string
		q1Seen := map[string]bool{}
		awaitingRel := map[uint16]bool{}
		var graceEnd time.Time // after everything arrived: keep serving a while
		deadline := time.Now().Add(lossyWait)
		for {
			if graceEnd.IsZero() && len(q1First) == count && len(q2App) >= count {
				graceEnd = time.Now().Add(2 * time.Second)
			}
			if !graceEnd.IsZero() && time.Now().After(graceEnd) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %v: QoS 1 delivered %d/%d, QoS 2 delivered %d/%d", lossyWait, len(q1First), count, len(q2App), count)
			}
			for published < 2*count && published-len(q1First)-len(q2App) < window {
				if i := published / 2; published%2 == 0 {
					pub.publish("lossy/d1", fmt.Sprintf("a%02d", i), 1)
				} else {
					pub.publish("lossy/d2", fmt.Sprintf("b%02d", i), 2)
				}
				published++
			}
			p, err := n.c.Receive(100 * time.Millisecond)
			if errors.Is(err, snclient.ErrTimeout) {
				continue
			}
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			switch p := p.(type) {
			case *sn.Publish:
				switch {
				case p.QoS == sn.QoS1 && p.TopicID == id1:
					if s := string(p.Data); !q1Seen[s] {
						q1Seen[s] = true
						q1First = append(q1First, s)
					}
					n.send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
				case p.QoS == sn.QoS2 && p.TopicID == id2:
					if !awaitingRel[p.MsgID] {
						awaitingRel[p.MsgID] = true
						q2App = append(q2App, string(p.Data))
					}
					n.send(&sn.Pubrec{MsgID: p.MsgID})
				default:
					t.Fatalf("unexpected PUBLISH %+v", p)
				}
			case *sn.Pubrel:
				delete(awaitingRel, p.MsgID)
				n.send(&sn.Pubcomp{MsgID: p.MsgID})
			case *sn.Suback:
				// a retransmitted SUBSCRIBE answered again
			default:
				t.Fatalf("unexpected %T %+v", p, p)
			}
		}
		for i := range count {
			if want := fmt.Sprintf("a%02d", i); q1First[i] != want {
				t.Fatalf("QoS 1 first arrivals out of order: %v", q1First)
			}
		}
		if len(q2App) != count {
			t.Fatalf("QoS 2: application got %d messages, want exactly %d: %v", len(q2App), count, q2App)
		}
		for i := range count {
			if want := fmt.Sprintf("b%02d", i); q2App[i] != want {
				t.Fatalf("QoS 2 delivered out of order or twice: %v", q2App)
			}
		}
		t.Logf("downlink: gateway retransmits %d; relay up %d dropped %d duplicated, down %d dropped %d duplicated",
			e.GW.Stats().Retransmits.Load(), relay.Up.Dropped.Load(), relay.Up.Duplicated.Load(), relay.Down.Dropped.Load(), relay.Down.Duplicated.Load())
	})
}

// retryNode is an MQTT-SN node that retransmits like a real client (spec
// §6.13): each request is resent, PUBLISH with DUP set, every nodeTretry
// until its answer arrives. Answers that match nothing (duplicates of
// earlier ones) are ignored. It is used from the test goroutine only.
type retryNode struct {
	t testing.TB
	c *snclient.Conn
}

func dialRetryNode(t testing.TB, addr string) *retryNode {
	t.Helper()
	c, err := snclient.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &retryNode{t: t, c: c}
}

func (n *retryNode) send(p sn.Packet) {
	n.t.Helper()
	if err := n.c.Send(p); err != nil {
		n.t.Fatalf("send %v: %v", p.Type(), err)
	}
}

// exchange sends req until an answer for which match is true arrives, and
// returns that answer.
func (n *retryNode) exchange(req sn.Packet, match func(sn.Packet) bool) sn.Packet {
	n.t.Helper()
	deadline := time.Now().Add(lossyWait)
	for attempt := 0; ; attempt++ {
		if time.Now().After(deadline) {
			n.t.Fatalf("no answer to %T %+v after %d attempts", req, req, attempt)
		}
		if p, ok := req.(*sn.Publish); ok && attempt > 0 {
			dup := *p
			dup.DUP = true
			n.send(&dup)
		} else {
			n.send(req)
		}
		retry := time.Now().Add(nodeTretry)
		for {
			left := time.Until(retry)
			if left <= 0 {
				break
			}
			p, err := n.c.Receive(left)
			if errors.Is(err, snclient.ErrTimeout) {
				break
			}
			if err != nil {
				n.t.Fatalf("waiting for the answer to %T: %v", req, err)
			}
			if match(p) {
				return p
			}
		}
	}
}

func (n *retryNode) connect(clientID string) {
	n.t.Helper()
	a := n.exchange(&sn.Connect{CleanSession: true, Duration: 600, ClientID: clientID},
		func(p sn.Packet) bool { _, ok := p.(*sn.Connack); return ok })
	if rc := a.(*sn.Connack).ReturnCode; rc != sn.Accepted {
		n.t.Fatalf("CONNACK %v", rc)
	}
}

func (n *retryNode) register(msgID uint16, name string) uint16 {
	n.t.Helper()
	a := n.exchange(&sn.Register{MsgID: msgID, TopicName: name},
		func(p sn.Packet) bool { a, ok := p.(*sn.Regack); return ok && a.MsgID == msgID }).(*sn.Regack)
	if a.ReturnCode != sn.Accepted || a.TopicID == 0 || a.TopicID == 0xFFFF {
		n.t.Fatalf("REGISTER %q: %+v", name, a)
	}
	return a.TopicID
}

func (n *retryNode) subscribe(msgID uint16, filter string, qos sn.QoS) uint16 {
	n.t.Helper()
	a := n.exchange(&sn.Subscribe{QoS: qos, MsgID: msgID, TopicName: filter},
		func(p sn.Packet) bool { a, ok := p.(*sn.Suback); return ok && a.MsgID == msgID }).(*sn.Suback)
	if a.ReturnCode != sn.Accepted || a.QoS != qos || a.TopicID == 0 {
		n.t.Fatalf("SUBSCRIBE %q: %+v", filter, a)
	}
	return a.TopicID
}

// bcMsg is a message a brokerClient received.
type bcMsg struct {
	Topic   string
	Payload string
	QoS     byte
}

// brokerClient is an MQTT v5 client on the broker, independent of the
// gateway: a watcher, a publisher, or both. Unlike the harness's watcher it
// can be created again after a broker restart.
type brokerClient struct {
	t   testing.TB
	cli *paho.Client
	C   chan bcMsg
}

func newBrokerClient(t testing.TB, addr, role string) *brokerClient {
	t.Helper()
	id := role + "-" + strings.NewReplacer("/", "-", " ", "-", "#", "-", "+", "-").Replace(t.Name())
	if len(id) > 60 {
		id = id[len(id)-60:]
	}
	conn, err := net.DialTimeout("tcp", addr, Wait)
	if err != nil {
		t.Fatalf("dial broker %s: %v", addr, err)
	}
	b := &brokerClient{t: t, C: make(chan bcMsg, 100000)}
	b.cli = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			b.C <- bcMsg{Topic: p.Topic, Payload: string(p.Payload), QoS: p.QoS}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	rm := uint16(1000)
	if _, err := b.cli.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}}); err != nil {
		_ = conn.Close()
		t.Fatalf("connect to broker %s: %v", addr, err)
	}
	t.Cleanup(func() {
		_ = b.cli.Disconnect(&paho.Disconnect{})
		select {
		case <-b.cli.Done():
		case <-time.After(Wait):
		}
	})
	return b
}

func (b *brokerClient) subscribe(filter string, qos byte) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	sa, err := b.cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		b.t.Fatalf("subscribe %q: %v %+v", filter, err, sa)
	}
}

func (b *brokerClient) publish(topic, payload string, qos byte) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if _, err := b.cli.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos}); err != nil {
		b.t.Fatalf("publish %q: %v", topic, err)
	}
}

func (b *brokerClient) next() bcMsg {
	b.t.Helper()
	select {
	case m := <-b.C:
		return m
	case <-time.After(Wait):
		b.t.Fatal("no message reached the broker client")
		return bcMsg{}
	}
}

func (b *brokerClient) expectNothing(d time.Duration) {
	b.t.Helper()
	select {
	case m := <-b.C:
		b.t.Fatalf("unexpected message on the broker: %+v", m)
	case <-time.After(d):
	}
}
