package test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Sleeping clients (spec §6.14, behaviour.md "Sleeping clients"), end to
// end. Messages are published by one independent MQTT connection per test
// so that the broker keeps their order (a new connection per message, with
// the same client id, would give no ordering guarantee).
//
// Whether a message published on the broker has already reached the
// gateway cannot be observed from outside, so a wake that finds nothing
// yet is answered with PINGRESP and the node wakes again (sleepNode.drain),
// exactly as a real node would on its next wake-up. The assertions hold
// across any number of such wake-ups: order, exactly-once, REGISTER before
// the first PUBLISH of a topic, and PINGRESP only once nothing is owed.

// sleepLong is a sleep duration no test outlives, so supervision never
// fires unless a test wants it to.
const sleepLong = 300

// sleepPause paces repeated wake-ups. Waiting on it is an ExpectNothing: a
// sleeping node must receive nothing, so it cannot fail a correct gateway.
const sleepPause = 20 * time.Millisecond

// sleepPublisher is one MQTT connection to the broker, independent of the
// gateway, publishing in order.
type sleepPublisher struct {
	t   testing.TB
	cli *paho.Client
}

func sleepNewPublisher(t testing.TB, e *Env) *sleepPublisher {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.Target.Addr(), Wait)
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	id := sleepMQTTClientID("sleeppub-" + t.Name())
	cli := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	rm := uint16(1000)
	if _, err := cli.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}}); err != nil {
		t.Fatalf("publisher connect: %v", err)
	}
	t.Cleanup(func() {
		_ = cli.Disconnect(&paho.Disconnect{})
		<-cli.Done()
	})
	return &sleepPublisher{t: t, cli: cli}
}

// Publish publishes and, at QoS 1 and 2, waits for the broker's
// acknowledgement.
func (p *sleepPublisher) Publish(topic, payload string, qos byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if _, err := p.cli.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos}); err != nil {
		p.t.Fatalf("publish %q: %v", topic, err)
	}
}

func sleepMQTTClientID(s string) string {
	b := []byte(s)
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' {
			b[i] = '-'
		}
	}
	if len(b) > 60 {
		b = b[len(b)-60:]
	}
	return string(b)
}

// sleepMsg is a message the node received.
type sleepMsg struct {
	Topic   string
	Payload string
	QoS     sn.QoS
	DUP     bool
	MsgID   uint16
}

// sleepNode plays a well-behaved sleeping node: it acknowledges what the
// gateway sends during a wake-up and records it.
type sleepNode struct {
	t  testing.TB
	id string
	// topics maps the topic ids the node knows to names (SUBACK, REGISTER).
	topics map[uint16]string
	// settle, when set, is an ExpectNothing window before each
	// acknowledgement: the gateway must wait for it, and in particular must
	// not end the wake-up with PINGRESP before it.
	settle time.Duration
	// lose, when set, is asked about every datagram; true means the link
	// lost it and the node never sees it.
	lose func(p sn.Packet) bool
	// log is every datagram the node saw (not the lost ones), in order.
	log []sn.Packet
	// wakes counts the PINGREQs sent.
	wakes int
}

func sleepNewNode(t testing.TB, id string) *sleepNode {
	t.Helper()
	return &sleepNode{t: t, id: id, topics: map[uint16]string{}}
}

// sleepConnectWill connects with a will and returns once CONNACK arrived.
func sleepConnectWill(n *Node, id string, keepAlive uint16, topic, msg string) {
	n.t.Helper()
	n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: keepAlive, ClientID: id})
	n.Expect(&sn.WillTopicReq{})
	n.Send(&sn.WillTopic{QoS: sn.QoS1, WillTopic: topic})
	n.Expect(&sn.WillMsgReq{})
	n.Send(&sn.WillMsg{WillMsg: []byte(msg)})
	n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
}

// sleep sends DISCONNECT(duration) and expects DISCONNECT without duration.
func sleepFor(n *Node, seconds uint16) {
	n.t.Helper()
	n.Send(&sn.Disconnect{Duration: seconds, HasDuration: true})
	n.Expect(&sn.Disconnect{})
}

// flush wakes the node through via (PINGREQ with ClientId) and handles the
// gateway's messages until PINGRESP.
func (s *sleepNode) flush(via *Node) []sleepMsg {
	s.t.Helper()
	s.wakes++
	via.Send(&sn.PingReq{ClientID: s.id})
	var got []sleepMsg
	var awaitPubrel uint16 // QoS 2 MsgId we sent PUBREC for
	for {
		p := via.Next()
		if s.lose != nil && s.lose(p) {
			continue
		}
		s.log = append(s.log, p)
		switch p := p.(type) {
		case *sn.PingResp:
			if awaitPubrel != 0 {
				s.t.Fatalf("PINGRESP while the QoS 2 exchange of MsgId %d waits for PUBREL", awaitPubrel)
			}
			return got
		case *sn.Register:
			if p.TopicID == 0 || p.MsgID == 0 || p.TopicName == "" {
				s.t.Fatalf("bad REGISTER %+v", p)
			}
			s.topics[p.TopicID] = p.TopicName
			s.ack(via, &sn.Regack{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		case *sn.Publish:
			if awaitPubrel != 0 {
				s.t.Fatalf("PUBLISH %+v while the QoS 2 exchange of MsgId %d waits for PUBREL", p, awaitPubrel)
			}
			name := s.topicName(p)
			got = append(got, sleepMsg{Topic: name, Payload: string(p.Data), QoS: p.QoS, DUP: p.DUP, MsgID: p.MsgID})
			switch p.QoS {
			case sn.QoS0:
				if p.MsgID != 0 {
					s.t.Fatalf("QoS 0 PUBLISH with MsgId %d", p.MsgID)
				}
			case sn.QoS1:
				if p.MsgID == 0 {
					s.t.Fatalf("QoS 1 PUBLISH without MsgId: %+v", p)
				}
				s.ack(via, &sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
			case sn.QoS2:
				if p.MsgID == 0 {
					s.t.Fatalf("QoS 2 PUBLISH without MsgId: %+v", p)
				}
				awaitPubrel = p.MsgID
				s.ack(via, &sn.Pubrec{MsgID: p.MsgID})
			default:
				s.t.Fatalf("PUBLISH with QoS %d: %+v", p.QoS, p)
			}
		case *sn.Pubrel:
			if awaitPubrel == 0 || p.MsgID != awaitPubrel {
				s.t.Fatalf("PUBREL %+v, awaiting PUBREL for %d", p, awaitPubrel)
			}
			awaitPubrel = 0
			s.ack(via, &sn.Pubcomp{MsgID: p.MsgID})
		default:
			s.t.Fatalf("unexpected %T %+v during a wake-up", p, p)
		}
	}
}

func (s *sleepNode) ack(via *Node, p sn.Packet) {
	s.t.Helper()
	if s.settle > 0 {
		if early, err := via.Conn.Receive(s.settle); err == nil {
			s.t.Fatalf("gateway sent %T %+v before the node's %T (after: %s)", early, early, p, sleepTypes(s.log))
		} else if !errors.Is(err, snclient.ErrTimeout) {
			s.t.Fatalf("waiting before %T: %v", p, err)
		}
	}
	via.Send(p)
}

func (s *sleepNode) topicName(p *sn.Publish) string {
	s.t.Helper()
	switch p.TopicIDType {
	case sn.TopicNormal:
		name, ok := s.topics[p.TopicID]
		if !ok {
			s.t.Fatalf("PUBLISH with topic id %d the node never learnt (no REGISTER or SUBACK): %+v", p.TopicID, p)
		}
		return name
	case sn.TopicShort:
		return sn.ShortTopicName(p.TopicID)
	default:
		s.t.Fatalf("unexpected topic id type in %+v", p)
		return ""
	}
}

// drain wakes the node through via until it has received at least want
// messages, and returns them in order. Between wake-ups the node, asleep,
// must receive nothing.
func (s *sleepNode) drain(via *Node, want int) []sleepMsg {
	s.t.Helper()
	deadline := time.Now().Add(Wait)
	var got []sleepMsg
	for {
		got = append(got, s.flush(via)...)
		if len(got) >= want {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("after %d wake-ups the node has %d of %d messages: %+v", s.wakes, len(got), want, got)
		}
		via.ExpectNothing(sleepPause)
	}
}

func sleepPayloads(ms []sleepMsg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Payload
	}
	return out
}

func sleepTypes(ps []sn.Packet) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Type().String())
	}
	return b.String()
}

// withoutPingResp drops the PINGRESPs of wake-ups that came before a
// message reached the gateway.
func sleepWithoutPingResp(ps []sn.Packet) []sn.Packet {
	return slices.DeleteFunc(slices.Clone(ps), func(p sn.Packet) bool {
		_, ok := p.(*sn.PingResp)
		return ok
	})
}

// DISCONNECT(duration) is answered with DISCONNECT; a wake-up with nothing
// buffered gets PINGRESP at once; messages published while asleep at QoS
// 0, 1 and 2 are delivered on wake-up in order, REGISTER first for the
// wildcard subscription, QoS 2 exactly once, and PINGRESP ends the wake-up
// only once everything is acknowledged (spec §6.14).
func TestSleepBufferedDeliveryOnWake(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		pub := sleepNewPublisher(t, e)
		n := e.Node(t)
		n.Connect("sleeper", true, 60)
		sa := n.Subscribe(1, "w/#", sn.QoS2)
		if sa.TopicID != 0 {
			t.Fatalf("wildcard SUBACK topic id %d, want 0", sa.TopicID)
		}
		sleepFor(n, sleepLong)

		// Nothing buffered: PINGRESP at once, asleep again.
		n.Send(&sn.PingReq{ClientID: "sleeper"})
		n.Expect(&sn.PingResp{})
		n.ExpectNothing(100 * time.Millisecond)

		pub.Publish("w/a", "zero", 0)
		pub.Publish("w/a", "one", 1)
		pub.Publish("w/a", "two", 2)
		// Asleep: nothing is sent to the node.
		n.ExpectNothing(300 * time.Millisecond)

		s := sleepNewNode(t, "sleeper")
		s.settle = 100 * time.Millisecond
		got := s.drain(n, 3)
		want := []sleepMsg{
			{Topic: "w/a", Payload: "zero", QoS: sn.QoS0},
			{Topic: "w/a", Payload: "one", QoS: sn.QoS1},
			{Topic: "w/a", Payload: "two", QoS: sn.QoS2},
		}
		for i := range got {
			got[i].MsgID = 0 // checked by flush; values are the gateway's choice
		}
		if !slices.Equal(got, want) {
			t.Fatalf("delivered %+v, want %+v (datagrams: %s)", got, want, sleepTypes(s.log))
		}
		if seq, want := sleepTypes(sleepWithoutPingResp(s.log)), "REGISTER PUBLISH PUBLISH PUBLISH PUBREL"; seq != want {
			t.Fatalf("datagrams %q, want %q", sleepTypes(s.log), want)
		}
		t.Logf("delivered in %d wake-up(s)", s.wakes)

		// Asleep again: nothing more, and the next wake-up finds nothing.
		n.ExpectNothing(200 * time.Millisecond)
		n.Send(&sn.PingReq{ClientID: "sleeper"})
		n.Expect(&sn.PingResp{})
		n.ExpectNothing(100 * time.Millisecond)
		if d := e.GW.Stats().BufferDropped.Load(); d != 0 {
			t.Fatalf("BufferDropped = %d", d)
		}
	})
}

// A node behind NAT wakes from a new source port: the session follows the
// ClientId, the buffer goes to the new address, and so does everything
// after it; the old address has no session any more (behaviour.md).
func TestSleepWakeFromNewAddress(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		pub := sleepNewPublisher(t, e)
		old := e.Node(t)
		old.Connect("nat-node", true, 60)
		sa := old.Subscribe(1, "nat/a", sn.QoS1)
		sleepFor(old, sleepLong)

		pub.Publish("nat/a", "m1", 1)
		pub.Publish("nat/a", "m2", 1)
		old.ExpectNothing(200 * time.Millisecond)

		nw := e.Node(t)
		s := sleepNewNode(t, "nat-node")
		s.topics[sa.TopicID] = "nat/a"
		got := s.drain(nw, 2)
		if p := sleepPayloads(got); !slices.Equal(p, []string{"m1", "m2"}) {
			t.Fatalf("delivered %q at the new address (datagrams: %s)", p, sleepTypes(s.log))
		}
		old.ExpectNothing(100 * time.Millisecond)

		// Later traffic follows the new address: a wake-up without
		// ClientId from there, and the next buffered message.
		nw.Send(&sn.PingReq{})
		nw.Expect(&sn.PingResp{})
		pub.Publish("nat/a", "m3", 1)
		got = s.drain(nw, 1)
		if p := sleepPayloads(got); !slices.Equal(p, []string{"m3"}) {
			t.Fatalf("delivered %q at the new address", p)
		}
		old.ExpectNothing(100 * time.Millisecond)

		// The old address no longer has a session.
		old.Send(&sn.PingReq{})
		old.Expect(&sn.Disconnect{})

		// Back to active from the new address: live delivery goes there.
		nw.Connect("nat-node", false, 60)
		pub.Publish("nat/a", "live", 1)
		nw.expectRegister(nw.Next(), "nat/a") // a CONNECT: ids registered again (spec §6.10)
		p, ok := nw.Next().(*sn.Publish)
		if !ok || string(p.Data) != "live" || p.TopicID != sa.TopicID {
			t.Fatalf("want PUBLISH live, got %+v", p)
		}
		nw.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		old.ExpectNothing(100 * time.Millisecond)
	})
}

// 100 consecutive sleep/wake cycles with a message published in each:
// every message arrives once, in order, nothing is dropped or lost.
func TestSleepWakeCycles(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		pub := sleepNewPublisher(t, e)
		n := e.Node(t)
		n.Connect("cycler", true, 60)
		sa := n.Subscribe(1, "cyc/a", sn.QoS2)
		sleepFor(n, sleepLong)

		s := sleepNewNode(t, "cycler")
		s.topics[sa.TopicID] = "cyc/a"
		const cycles = 100
		var got []sleepMsg
		for i := range cycles {
			pub.Publish("cyc/a", fmt.Sprint(i), byte(i%3))
			got = append(got, s.drain(n, 1)...)
			if len(got) != i+1 {
				t.Fatalf("cycle %d: node has %d messages: %q", i, len(got), sleepPayloads(got))
			}
		}
		for i, m := range got {
			if m.Payload != fmt.Sprint(i) || m.QoS != sn.QoS(i%3) || m.DUP {
				t.Fatalf("message %d: %+v", i, m)
			}
		}
		n.ExpectNothing(200 * time.Millisecond)
		n.Send(&sn.PingReq{ClientID: "cycler"})
		n.Expect(&sn.PingResp{})
		st := e.GW.Stats()
		if d, l := st.BufferDropped.Load(), st.Lost.Load(); d != 0 || l != 0 {
			t.Fatalf("BufferDropped = %d, Lost = %d", d, l)
		}
		t.Logf("%d cycles in %d wake-ups", cycles, s.wakes)
	})
}

// A node that does not wake within its sleep duration is lost and its
// will is published, not before the sleep duration (spec §6.14, §7.2).
func TestSleepExpiryPublishesWill(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "will/#")
		n := e.Node(t)
		sleepConnectWill(n, "dozer", 60, "will/dozer", "gone")
		start := time.Now()
		sleepFor(n, 1)
		got := w.Next()
		el := time.Since(start)
		if got != (Received{Topic: "will/dozer", Payload: "gone", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}
		if el < time.Second {
			t.Fatalf("will published %v after DISCONNECT(1s), before the sleep duration", el)
		}
		t.Logf("will published %v after DISCONNECT(1s)", el)
		if l := e.GW.Stats().Lost.Load(); l != 1 {
			t.Fatalf("Lost = %d, want 1", l)
		}
		// Lost: a late wake-up is refused.
		n.Send(&sn.PingReq{ClientID: "dozer"})
		n.Expect(&sn.Disconnect{})
		// Its upstream session ends after the will. Waiting for that also
		// keeps the gateway's Shutdown from cancelling the close half way,
		// which leaves paho logging after the test ended.
		Eventually(t, "upstream closed", func() bool { return e.GW.Stats().UpstreamClosed.Load() == 1 })
	})
}

// CONNECT from asleep returns the node to active; the buffered messages
// follow the CONNACK (behaviour.md).
func TestSleepConnectFromAsleep(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		pub := sleepNewPublisher(t, e)
		n := e.Node(t)
		n.Connect("sleep-conn", false, 60)
		sa := n.Subscribe(1, "sc/a", sn.QoS1)
		sleepFor(n, sleepLong)
		for _, m := range []string{"b1", "b2", "b3"} {
			pub.Publish("sc/a", m, 1)
		}
		n.ExpectNothing(300 * time.Millisecond)

		n.Connect("sleep-conn", false, 60) // CONNACK first
		n.expectRegister(n.Next(), "sc/a") // a CONNECT: ids registered again (spec §6.10)
		for _, want := range []string{"b1", "b2", "b3"} {
			p, ok := n.Next().(*sn.Publish)
			if !ok || string(p.Data) != want || p.TopicID != sa.TopicID || p.QoS != sn.QoS1 || p.DUP {
				t.Fatalf("want PUBLISH %q, got %+v", want, p)
			}
			n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		}
		n.ExpectNothing(200 * time.Millisecond)
		// Active: a PINGREQ is a keep-alive, and messages flow at once.
		n.Send(&sn.PingReq{})
		n.Expect(&sn.PingResp{})
		pub.Publish("sc/a", "live", 1)
		p, ok := n.Next().(*sn.Publish)
		if !ok || string(p.Data) != "live" {
			t.Fatalf("want PUBLISH live, got %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
	})
}

// The per-client buffer is bounded: on overflow QoS 0 messages are dropped
// first, oldest first, and every drop is counted; QoS 1 messages all
// arrive on wake-up.
func TestSleepBufferOverflowDropsQoS0First(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{MaxBuffered: 3})
	pub := sleepNewPublisher(t, e)
	n := e.Node(t)
	n.Connect("overflow", true, 60)
	sa := n.Subscribe(1, "ov/a", sn.QoS1)
	sleepFor(n, sleepLong)

	// Buffer of 3: "d" drops "a" (oldest QoS 0), "e" drops "c".
	pub.Publish("ov/a", "a", 0)
	pub.Publish("ov/a", "b", 1)
	pub.Publish("ov/a", "c", 0)
	pub.Publish("ov/a", "d", 1)
	pub.Publish("ov/a", "e", 1)
	// The second drop happens when "e", the last one, is buffered.
	Eventually(t, "two buffered messages dropped", func() bool { return e.GW.Stats().BufferDropped.Load() >= 2 })
	n.ExpectNothing(100 * time.Millisecond)

	s := sleepNewNode(t, "overflow")
	s.topics[sa.TopicID] = "ov/a"
	got := s.flush(n) // everything is buffered: one wake-up
	if p := sleepPayloads(got); !slices.Equal(p, []string{"b", "d", "e"}) {
		t.Fatalf("delivered %q, want [b d e] (datagrams: %s)", p, sleepTypes(s.log))
	}
	for _, m := range got {
		if m.QoS != sn.QoS1 {
			t.Fatalf("delivered %+v", m)
		}
	}
	if d := e.GW.Stats().BufferDropped.Load(); d != 2 {
		t.Fatalf("BufferDropped = %d, want 2", d)
	}
	n.ExpectNothing(100 * time.Millisecond)
}

// A DISCONNECT(duration) while asleep changes the sleep duration and is
// answered with DISCONNECT; a DISCONNECT without duration from asleep
// disconnects the node, whose will is then never published (spec §6.14).
func TestSleepDurationChangeThenDisconnect(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "will/#")
		n := e.Node(t)
		sleepConnectWill(n, "changer", 60, "will/changer", "gone")
		sleepFor(n, 1) // lost 1.5 s from now unless changed
		sleepFor(n, 2) // changed while asleep: lost 3 s from now
		// Past the old duration and its tolerance: still asleep.
		w.ExpectNothing(2 * time.Second)
		if l := e.GW.Stats().Lost.Load(); l != 0 {
			t.Fatalf("Lost = %d after the old sleep duration, want 0", l)
		}
		woke := time.Now()
		n.Send(&sn.PingReq{ClientID: "changer"})
		n.Expect(&sn.PingResp{}) // asleep again, timer restarted: 3 s

		// Plain DISCONNECT from asleep: disconnected, not supervised.
		n.Send(&sn.Disconnect{})
		n.Expect(&sn.Disconnect{})
		// Past the sleep duration and its tolerance: no will.
		w.ExpectNothing(time.Until(woke.Add(3500 * time.Millisecond)))
		if l := e.GW.Stats().Lost.Load(); l != 0 {
			t.Fatalf("Lost = %d, want 0", l)
		}
		// Disconnected: a wake-up is refused.
		n.Send(&sn.PingReq{ClientID: "changer"})
		n.Expect(&sn.Disconnect{})
	})
}

// A lossy link during the wake-up flush: the node misses the first
// transmission of each QoS 1 and QoS 2 PUBLISH and of the PUBREL; the
// gateway retransmits after Tretry (PUBLISH with DUP set), everything is
// delivered once, and the wake-up ends with PINGRESP.
func TestSleepLossyWakeFlush(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		const retry = 200 * time.Millisecond
		e := RunGateway(t, tg, gateway.Config{RetryInterval: retry, RetryCount: 3})
		pub := sleepNewPublisher(t, e)
		n := e.Node(t)
		n.Connect("lossy", true, 60)
		sa := n.Subscribe(1, "lossy/a", sn.QoS2)
		sleepFor(n, sleepLong)
		pub.Publish("lossy/a", "q1", 1)
		pub.Publish("lossy/a", "q2", 2)
		n.ExpectNothing(300 * time.Millisecond)

		s := sleepNewNode(t, "lossy")
		s.topics[sa.TopicID] = "lossy/a"
		seen := map[string]time.Time{} // first transmissions, by kind and MsgId
		var gaps []time.Duration
		s.lose = func(p sn.Packet) bool {
			var key string
			switch p := p.(type) {
			case *sn.Publish:
				if p.QoS == sn.QoS0 {
					return false
				}
				key = fmt.Sprint("PUBLISH", p.MsgID)
			case *sn.Pubrel:
				key = fmt.Sprint("PUBREL", p.MsgID)
			default:
				return false
			}
			first, ok := seen[key]
			if !ok {
				seen[key] = time.Now()
				return true // the link loses it
			}
			gaps = append(gaps, time.Since(first))
			return false
		}
		got := s.drain(n, 2)
		if p := sleepPayloads(got); !slices.Equal(p, []string{"q1", "q2"}) {
			t.Fatalf("delivered %q, want [q1 q2] (datagrams: %s)", p, sleepTypes(s.log))
		}
		for _, m := range got {
			if !m.DUP {
				t.Fatalf("retransmitted PUBLISH without DUP: %+v", m)
			}
		}
		if len(seen) != 3 || len(gaps) != 3 {
			t.Fatalf("lost %d first transmissions, saw %d retransmissions; want 3 and 3 (datagrams: %s)", len(seen), len(gaps), sleepTypes(s.log))
		}
		for _, g := range gaps {
			// Timers do not fire early; allow for the node reading the
			// first transmission late.
			if g < retry*3/4 {
				t.Fatalf("retransmitted after %v, before Tretry %v", g, retry)
			}
		}
		if r := e.GW.Stats().Retransmits.Load(); r < 3 {
			t.Fatalf("Retransmits = %d, want >= 3", r)
		}
		n.ExpectNothing(2 * retry) // nothing owed: no further retransmission
		if l := e.GW.Stats().Lost.Load(); l != 0 {
			t.Fatalf("Lost = %d", l)
		}
	})
}

// A node with CleanSession=0 that does not wake in time is lost, but its
// subscriptions, topic ids and buffer are kept: a later CONNECT delivers
// what was buffered while it slept, then what the broker kept after
// (behaviour.md).
func TestSleepExpiryKeepsPersistentSession(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		pub := sleepNewPublisher(t, e)
		n := e.Node(t)
		n.Connect("keeper", false, 60)
		sa := n.Subscribe(1, "keep/s", sn.QoS1)
		sleepFor(n, 1)
		pub.Publish("keep/s", "k1", 1)
		n.ExpectNothing(300 * time.Millisecond)
		Eventually(t, "node lost", func() bool { return e.GW.Stats().Lost.Load() == 1 })
		// Publish only once the upstream session ended, so that the broker
		// holds this one in the node's session.
		Eventually(t, "upstream closed", func() bool { return e.GW.Stats().UpstreamClosed.Load() == 1 })
		pub.Publish("keep/s", "k2", 1)

		n.Connect("keeper", false, 60)
		n.expectRegister(n.Next(), "keep/s") // ids registered again (spec §6.10)
		for _, want := range []string{"k1", "k2"} {
			p, ok := n.Next().(*sn.Publish)
			if !ok || string(p.Data) != want || p.TopicID != sa.TopicID || p.QoS != sn.QoS1 {
				t.Fatalf("want PUBLISH %q, got %+v", want, p)
			}
			n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		}
		n.ExpectNothing(200 * time.Millisecond)
	})
}
