package gateway

import (
	"bytes"
	"context"
	"net"
	"testing"
	"testing/synctest"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// sentTo drains what the gateway sent so far and returns it with the
// bytes sent to addr.
func (r *rig) drain(addr net.Addr) (pkts []sn.Packet, n int) {
	r.t.Helper()
	synctest.Wait()
	for len(r.tr.out) > 0 {
		d := <-r.tr.out
		if d.addr.String() != addr.String() {
			continue
		}
		n += len(d.b)
		p, err := sn.Unmarshal(d.b)
		if err != nil {
			r.t.Fatalf("undecodable % x", d.b)
		}
		pkts = append(pkts, p)
	}
	return pkts, n
}

func wireLen(t *testing.T, ps ...sn.Packet) int {
	t.Helper()
	n := 0
	for _, p := range ps {
		n += p.Len()
	}
	return n
}

// A large message for an address that has not proven itself is preceded
// by a REGISTER of its topic id; the REGACK (with the gateway's random
// MsgId) proves the address and the message follows.
func TestAmplificationRegisterProves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		c := &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"}
		s := &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicName: "a/b"}
		r.send(nodeA, c)
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		r.send(nodeA, s)
		r.next()
		go r.up.session("n1").deliver(Message{Topic: "a/b", Payload: bytes.Repeat([]byte("x"), 500), QoS: 1})
		reg, ok := r.next().(*sn.Register)
		if !ok || reg.TopicName != "a/b" {
			t.Fatalf("want REGISTER a/b first, got %T %+v", reg, reg)
		}
		pkts, _ := r.drain(nodeA)
		if len(pkts) != 0 {
			t.Fatalf("more sent before the address proved itself: %v", pkts)
		}
		r.send(nodeA, &sn.Regack{TopicID: reg.TopicID, MsgID: reg.MsgID + 1, ReturnCode: sn.Accepted}) // a guess
		if pkts, _ := r.drain(nodeA); len(pkts) != 0 {
			t.Fatalf("a REGACK with the wrong MsgId released %v", pkts)
		}
		r.send(nodeA, &sn.Regack{TopicID: reg.TopicID, MsgID: reg.MsgID, ReturnCode: sn.Accepted})
		p, ok := r.next().(*sn.Publish)
		if !ok || len(p.Data) != 500 || p.TopicID != reg.TopicID {
			t.Fatalf("want the 500-octet PUBLISH, got %T %+v", p, p)
		}
	})
}

// What a REGISTER cannot precede (a short topic name) is held, not
// dropped, and goes out as the address earns it.
func TestAmplificationHeldUntilEarned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		c := &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"}
		s := &sn.Subscribe{QoS: sn.QoS0, MsgID: 1, TopicIDType: sn.TopicShort, TopicID: 0x6162}
		r.send(nodeA, c)
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		r.send(nodeA, s)
		_, out := r.drain(nodeA)
		out += 3 // the CONNACK
		in := wireLen(t, c, s)
		go r.up.session("n1").deliver(Message{Topic: "ab", Payload: bytes.Repeat([]byte("x"), 100), QoS: 0})
		pkts, n := r.drain(nodeA)
		if len(pkts) != 0 || out+n > 3*in {
			t.Fatalf("sent %v (%d octets of %d allowed)", pkts, out+n, 3*in)
		}
		if got := r.g.Stats().Limited[LimitAmplificationHeld].Load(); got != 1 {
			ci, _, _ := r.g.Client(context.Background(), "n1")
			t.Fatalf("held %d, want 1; %+v", got, ci)
		}
		// The node publishes: its address earns three times that.
		r.send(nodeA, &sn.Publish{QoS: sn.QoS0, TopicIDType: sn.TopicShort, TopicID: 0x7a7a, Data: bytes.Repeat([]byte("y"), 40)})
		p, ok := r.next().(*sn.Publish)
		if !ok || len(p.Data) != 100 {
			t.Fatalf("want the held PUBLISH, got %T %+v", p, p)
		}
	})
}

// A wake-up PINGREQ from a new address that cannot prove itself gets
// PINGRESP and at most three times its size; the buffer stays for the
// node's next wake-up. One that can (a REGISTER precedes the first
// message) gets the whole buffer once it answers.
func TestAmplificationWakeFromNewAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.connect(nodeA, "n1")
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicIDType: sn.TopicShort, TopicID: 0x6162})
		r.next()
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS1, MsgID: 2, TopicName: "a/b"})
		r.next()
		r.send(nodeA, &sn.Disconnect{Duration: 600, HasDuration: true})
		r.expect(&sn.Disconnect{})
		up := r.up.session("n1")
		for range 5 {
			up.deliver(Message{Topic: "ab", Payload: bytes.Repeat([]byte("s"), 200), QoS: 1})
		}
		spoofed := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 66), Port: 4000}
		wake := &sn.PingReq{ClientID: "n1"}
		r.send(spoofed, wake)
		pkts, n := r.drain(spoofed)
		if len(pkts) != 1 || pkts[0].Type() != sn.TypePingResp || n > 3*wake.Len() {
			t.Fatalf("a wake-up from a new address got %v (%d octets for %d)", pkts, n, wake.Len())
		}
		ci, _, err := r.g.Client(context.Background(), "n1")
		if err != nil || ci.Buffered+boolInt(ci.InFlight) != 5 || ci.State != "asleep" {
			t.Fatalf("after the wake-up: %+v %v", ci, err)
		}
	})
}

// A node woken from a new address whose buffer is on a normal topic
// proves the address with the REGACK of the REGISTER that goes first, and
// then gets every message.
func TestAmplificationWakeProves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.connect(nodeA, "n1")
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS1, MsgID: 2, TopicName: "a/b"})
		r.next()
		r.send(nodeA, &sn.Disconnect{Duration: 600, HasDuration: true})
		r.expect(&sn.Disconnect{})
		up := r.up.session("n1")
		for range 3 {
			up.deliver(Message{Topic: "a/b", Payload: bytes.Repeat([]byte("n"), 200), QoS: 1})
		}
		moved := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 67), Port: 4000}
		r.send(moved, &sn.PingReq{ClientID: "n1"})
		reg, ok := r.next().(*sn.Register)
		if !ok {
			t.Fatalf("want REGISTER, got %T %+v", reg, reg)
		}
		r.send(moved, &sn.Regack{TopicID: reg.TopicID, MsgID: reg.MsgID, ReturnCode: sn.Accepted})
		for range 3 {
			got := r.next()
			p, ok := got.(*sn.Publish)
			if !ok || len(p.Data) != 200 {
				t.Fatalf("want PUBLISH, got %s", describe(got))
			}
			r.send(moved, &sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		}
		r.expect(&sn.PingResp{})
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The gateway's MsgIds are not predictable from one another.
func TestMsgIDsRandom(t *testing.T) {
	var sess session
	seen := map[uint16]bool{}
	prev := sess.newMsgID()
	sequential := 0
	for range 1000 {
		id := sess.newMsgID()
		if id == 0 || id == prev {
			t.Fatalf("MsgId %d after %d", id, prev)
		}
		if id == prev+1 {
			sequential++
		}
		seen[id] = true
		prev = id
	}
	if sequential > 5 || len(seen) < 900 {
		t.Fatalf("%d sequential, %d distinct of 1000", sequential, len(seen))
	}
}

// authTransport is a memTransport that authenticates its peers, as DTLS
// does: every peer proved the identity "n1".
type authTransport struct{ *memTransport }

func (authTransport) PeerIdentities(net.Addr) []string { return []string{"n1"} }

// A peer of a transport that authenticates (DTLS) is proven from the
// start: a large message goes out at once, without a REGISTER first.
func TestAmplificationAuthenticatedProven(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := authTransport{newMemTransport()}
		up := newFakeUpstream()
		g, err := New(Config{}, WithTransport(tr), WithUpstream(up))
		if err != nil {
			t.Fatal(err)
		}
		r := &rig{t: t, g: g, tr: tr.memTransport, up: up}
		done := make(chan struct{})
		go func() { defer close(done); _ = g.Serve(context.Background()) }()
		<-g.Ready()
		defer func() { _ = g.Shutdown(context.Background()); <-done }()
		r.connect(nodeA, "n1")
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS0, MsgID: 1, TopicIDType: sn.TopicShort, TopicID: 0x6162})
		r.next()
		go up.session("n1").deliver(Message{Topic: "ab", Payload: bytes.Repeat([]byte("x"), 1000), QoS: 0})
		if p, ok := r.next().(*sn.Publish); !ok || len(p.Data) != 1000 {
			t.Fatalf("want the PUBLISH at once, got %T %+v", p, p)
		}
	})
}

// The answer a node's PUBLISH is owed always goes, however much held
// downlink its bytes released meanwhile; and the total stays within 3x.
func TestAmplificationAnswersNeverHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Predefined: map[uint16]string{1: "p/one"}})
		c := &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"}
		s := &sn.Subscribe{QoS: sn.QoS0, MsgID: 1, TopicIDType: sn.TopicShort, TopicID: 0x6162}
		r.send(nodeA, c)
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		r.send(nodeA, s)
		_, out := r.drain(nodeA)
		out += 3
		in := wireLen(t, c, s)
		up := r.up.session("n1")
		for range 20 {
			up.deliver(Message{Topic: "ab", Payload: bytes.Repeat([]byte("x"), 20), QoS: 0})
		}
		gate := make(chan struct{})
		r.up.mu.Lock()
		r.up.pubGate = gate
		r.up.mu.Unlock()
		pub := &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 9, Data: bytes.Repeat([]byte("y"), 30)}
		r.send(nodeA, pub)
		in += pub.Len()
		_, n := r.drain(nodeA)
		out += n
		close(gate)
		pkts, n := r.drain(nodeA)
		out += n
		if len(pkts) == 0 || describe(pkts[0]) != describe(&sn.Puback{TopicID: 1, MsgID: 9, ReturnCode: sn.Accepted}) {
			t.Fatalf("want PUBACK first, got %v", pkts)
		}
		if out > 3*in {
			t.Fatalf("%d octets sent for %d received", out, in)
		}
	})
}

// With the limit off (limits.amplification_factor 0: a network where
// source addresses cannot be spoofed), what would be held goes at once.
func TestAmplificationOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{AmplificationFactor: -1})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS0, MsgID: 1, TopicIDType: sn.TopicShort, TopicID: 0x6162})
		r.next() // SUBACK
		go r.up.session("n1").deliver(Message{Topic: "ab", Payload: bytes.Repeat([]byte("x"), 100), QoS: 0})
		if p, ok := r.next().(*sn.Publish); !ok || len(p.Data) != 100 {
			t.Fatalf("want the PUBLISH at once, got %T %+v", p, p)
		}
		if got := r.g.Stats().Limited[LimitAmplificationHeld].Load(); got != 0 {
			t.Fatalf("held %d with the limit off", got)
		}
	})
}
