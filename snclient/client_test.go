package snclient_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// End-to-end tests against a real gateway and the embedded broker.

func TestConnectWithWill(t *testing.T) {
	e := startGateway(t, gateway.Config{})
	wills := e.watch(t, "will/#")

	t.Run("as connected", func(t *testing.T) {
		c := client(t, e.addr, snclient.Options{ClientID: "will-a", CleanSession: true, KeepAlive: time.Second,
			Will: &snclient.Will{Topic: "will/a", Payload: []byte("gone a"), QoS: 1}})
		if err := c.Connect(ctx(t)); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if c.State() != snclient.StateActive {
			t.Fatalf("state %v", c.State())
		}
		_ = c.Close() // silently: the gateway loses us and publishes the will
		if got := next(t, wills, "will"); got.topic != "will/a" || got.payload != "gone a" {
			t.Fatalf("will %+v", got)
		}
	})

	t.Run("updated", func(t *testing.T) {
		c := client(t, e.addr, snclient.Options{ClientID: "will-b", CleanSession: true, KeepAlive: time.Second,
			Will: &snclient.Will{Topic: "will/b", Payload: []byte("gone b")}})
		if err := c.Connect(ctx(t)); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if err := c.UpdateWillTopic(ctx(t), "will/b2", snpacket.QoS1, true); err != nil {
			t.Fatalf("UpdateWillTopic: %v", err)
		}
		if err := c.UpdateWillMessage(ctx(t), []byte("gone b2")); err != nil {
			t.Fatalf("UpdateWillMessage: %v", err)
		}
		_ = c.Close()
		if got := next(t, wills, "will"); got.topic != "will/b2" || got.payload != "gone b2" || !got.retain {
			t.Fatalf("will %+v", got)
		}
	})

	t.Run("clean disconnect publishes no will", func(t *testing.T) {
		c := client(t, e.addr, snclient.Options{ClientID: "will-c", CleanSession: true, KeepAlive: time.Second,
			Will: &snclient.Will{Topic: "will/c", Payload: []byte("gone c")}})
		if err := c.Connect(ctx(t)); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if err := c.Disconnect(ctx(t)); err != nil {
			t.Fatalf("Disconnect: %v", err)
		}
		if c.State() != snclient.StateDisconnected {
			t.Fatalf("state %v", c.State())
		}
		// A second client's will proves the gateway got this far without
		// publishing will/c.
		d := client(t, e.addr, snclient.Options{ClientID: "will-d", CleanSession: true, KeepAlive: time.Second,
			Will: &snclient.Will{Topic: "will/d", Payload: []byte("gone d")}})
		if err := d.Connect(ctx(t)); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		_ = d.Close()
		if got := next(t, wills, "will"); got.topic != "will/d" {
			t.Fatalf("will %+v", got)
		}
	})
}

func TestPublish(t *testing.T) {
	e := startGateway(t, gateway.Config{Predefined: map[uint16]string{7: "pre/seven"}})
	seen := e.watch(t, "#")
	c := client(t, e.addr, snclient.Options{ClientID: "pub", CleanSession: true,
		Predefined: map[uint16]string{7: "pre/seven"}})
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	id, err := c.Register(ctx(t), "reg/explicit")
	if err != nil || id == 0 {
		t.Fatalf("Register: %d %v", id, err)
	}
	cases := []struct {
		topic  string
		qos    snpacket.QoS
		retain bool
		want   string // topic on the broker
	}{
		{"pub/qos0", snpacket.QoS0, false, "pub/qos0"},
		{"pub/qos1", snpacket.QoS1, false, "pub/qos1"},
		{"pub/qos2", snpacket.QoS2, true, "pub/qos2"},
		{"reg/explicit", snpacket.QoS1, false, "reg/explicit"},
		{"pub/qos1", snpacket.QoS1, false, "pub/qos1"}, // id from the cache
		{"sh", snpacket.QoS1, false, "sh"},
		{"sh", snpacket.QoSMinusOne, false, "sh"},
		{"pre/seven", snpacket.QoS2, false, "pre/seven"},
		{snclient.PredefinedID(7), snpacket.QoSMinusOne, false, "pre/seven"},
	}
	for i, tc := range cases {
		payload := fmt.Sprintf("m%d", i)
		if err := c.Publish(ctx(t), tc.topic, []byte(payload), tc.qos, tc.retain); err != nil {
			t.Fatalf("Publish %q %v: %v", tc.topic, tc.qos, err)
		}
		got := next(t, seen, "message on the broker")
		want := received{tc.want, payload, max(int(tc.qos), 0), tc.retain}
		if got != want {
			t.Fatalf("case %d: broker got %+v, want %+v", i, got, want)
		}
	}
	if err := c.Publish(ctx(t), "normal/topic", nil, snpacket.QoSMinusOne, false); !errors.Is(err, snclient.ErrInvalidTopic) {
		t.Errorf("QoS -1 on a normal topic: %v", err)
	}
	if err := c.Publish(ctx(t), "a/+", nil, snpacket.QoS0, false); !errors.Is(err, snclient.ErrInvalidTopic) {
		t.Errorf("wildcard topic: %v", err)
	}
}

func TestQoSMinusOneWithoutConnect(t *testing.T) {
	e := startGateway(t, gateway.Config{Predefined: map[uint16]string{9: "pre/nine"}})
	seen := e.watch(t, "#")
	c := client(t, e.addr, snclient.Options{})
	if err := c.Publish(ctx(t), "qq", []byte("short"), snpacket.QoSMinusOne, false); err != nil {
		t.Fatal(err)
	}
	if got := next(t, seen, "short"); got.topic != "qq" || got.payload != "short" {
		t.Fatalf("got %+v", got)
	}
	if err := c.Publish(ctx(t), snclient.PredefinedID(9), []byte("pre"), snpacket.QoSMinusOne, false); err != nil {
		t.Fatal(err)
	}
	if got := next(t, seen, "predefined"); got.topic != "pre/nine" || got.payload != "pre" {
		t.Fatalf("got %+v", got)
	}
	if err := c.Publish(ctx(t), "qq", nil, snpacket.QoS1, false); !errors.Is(err, snclient.ErrNotConnected) {
		t.Errorf("QoS 1 without Connect: %v", err)
	}
	if err := c.Publish(ctx(t), "qq", nil, snpacket.QoS0, false); !errors.Is(err, snclient.ErrNotConnected) {
		t.Errorf("QoS 0 without Connect: %v", err)
	}
}

func TestSubscribe(t *testing.T) {
	e := startGateway(t, gateway.Config{Predefined: map[uint16]string{7: "pre/seven", 8: "pre/eight"}})
	c := client(t, e.addr, snclient.Options{ClientID: "sub", CleanSession: true,
		Predefined: map[uint16]string{8: "pre/eight"}})
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	type sub struct {
		filter string
		qos    snpacket.QoS
	}
	subs := []sub{
		{"room/1/temp", snpacket.QoS0},     // a name
		{"room/+/hum", snpacket.QoS1},      // a wildcard: REGISTER from the gateway
		{"zz", snpacket.QoS2},              // short
		{snclient.PredefinedID(7), 1},      // predefined, by id
		{"pre/eight", snpacket.QoS1},       // predefined, by name (Options.Predefined)
		{"deep/#", snpacket.QoS2},          // multi-level wildcard
		{"room/1/temp/x", snpacket.QoS0},   // unsubscribed below
		{snclient.PredefinedID(8), 1},      // same id as pre/eight: both handlers run
		{"never/seen", snpacket.QoS0},      // nothing is published here
		{"zy", snpacket.QoS0},              // short, unsubscribed below
		{"room/+/hum/more", snpacket.QoS0}, // no match
	}
	chans := map[string]<-chan received{}
	for _, s := range subs {
		h, ch := collector()
		chans[s.filter] = ch
		if err := c.Subscribe(ctx(t), s.filter, s.qos, h); err != nil {
			t.Fatalf("Subscribe %q: %v", s.filter, err)
		}
	}
	for _, f := range []string{"room/1/temp/x", "zy"} {
		if err := c.Unsubscribe(ctx(t), f); err != nil {
			t.Fatalf("Unsubscribe %q: %v", f, err)
		}
	}
	if err := c.Subscribe(ctx(t), snclient.PredefinedID(99), 0, nil); !errors.Is(err, snpacket.RejectedInvalidTopicID) {
		t.Errorf("unknown predefined id: %v", err)
	}

	e.publish(t, "room/1/temp/x", "unsubscribed", 0, false)
	e.publish(t, "zy", "unsubscribed", 0, false)
	e.publish(t, "room/1/temp", "21.5", 0, false)
	e.publish(t, "room/2/hum", "40", 1, false)
	e.publish(t, "zz", "short", 2, false)
	e.publish(t, "pre/seven", "seven", 1, false)
	e.publish(t, "pre/eight", "eight", 1, false)
	e.publish(t, "deep/a/b/c", "deep", 2, false)
	e.publish(t, "room/3/hum", "55", 1, false)

	expect := func(filter string, want received) {
		t.Helper()
		if got := next(t, chans[filter], "message for "+filter); got != want {
			t.Errorf("%q got %+v, want %+v", filter, got, want)
		}
	}
	expect("room/1/temp", received{"room/1/temp", "21.5", 0, false})
	expect("room/+/hum", received{"room/2/hum", "40", 1, false})
	expect("zz", received{"zz", "short", 2, false})
	expect(snclient.PredefinedID(7), received{snclient.PredefinedID(7), "seven", 1, false})
	expect("pre/eight", received{"pre/eight", "eight", 1, false})
	expect(snclient.PredefinedID(8), received{"pre/eight", "eight", 1, false})
	expect("deep/#", received{"deep/a/b/c", "deep", 2, false})
	expect("room/+/hum", received{"room/3/hum", "55", 1, false})
	// Everything above arrived after the unsubscribed messages would have.
	for _, f := range []string{"room/1/temp/x", "zy", "never/seen", "room/+/hum/more", "room/1/temp", "zz"} {
		select {
		case m := <-chans[f]:
			t.Errorf("%q got unexpected %+v", f, m)
		default:
		}
	}
}

func TestSleepAndWake(t *testing.T) {
	e := startGateway(t, gateway.Config{})
	var got []received
	c := client(t, e.addr, snclient.Options{ClientID: "sleepy", KeepAlive: 5 * time.Second})
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	h, ch := collector()
	for _, f := range []string{"sleepy/#", "sl"} {
		if err := c.Subscribe(ctx(t), f, snpacket.QoS2, h); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	if _, err := c.Wake(ctx(t)); !errors.Is(err, snclient.ErrNotConnected) {
		t.Errorf("Wake while active: %v", err)
	}
	if err := c.Sleep(ctx(t), time.Minute); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	if c.State() != snclient.StateAsleep {
		t.Fatalf("state %v", c.State())
	}
	if err := c.Publish(ctx(t), "sleepy/x", nil, snpacket.QoS1, false); !errors.Is(err, snclient.ErrNotConnected) {
		t.Errorf("Publish while asleep: %v", err)
	}
	want := []received{
		{"sleepy/a", "0", 0, false},
		{"sleepy/b", "1", 1, false},
		{"sl", "2", 2, false},
		{"sleepy/a", "3", 2, false},
	}
	for _, m := range want {
		e.publish(t, m.topic, m.payload, byte(m.qos), false)
	}
	// The broker hands the messages to the gateway asynchronously: wake up
	// until all of them came, as a node would on its next wake-ups.
	deadline := time.Now().Add(wait)
	for wakes := 0; len(got) < len(want); wakes++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d wake-ups got %+v", wakes, got)
		}
		n, err := c.Wake(ctx(t))
		if err != nil {
			t.Fatalf("Wake: %v", err)
		}
		if c.State() != snclient.StateAsleep {
			t.Fatalf("state after Wake %v", c.State())
		}
		for range n { // every message is with its handler when Wake returns
			select {
			case m := <-ch:
				got = append(got, m)
			default:
				t.Fatalf("Wake reported %d messages, handler had fewer (%+v)", n, got)
			}
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// Back to active, and the subscription still works.
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect after sleep: %v", err)
	}
	e.publish(t, "sl", "awake", 1, false)
	if m := next(t, ch, "message after reconnect"); m.payload != "awake" {
		t.Errorf("got %+v", m)
	}
	if err := c.Disconnect(ctx(t)); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
}

func TestRetransmission(t *testing.T) {
	e := startGateway(t, gateway.Config{})
	seen := e.watch(t, "retry/#")
	r := newRelay(t, e.addr)
	const retry = 200 * time.Millisecond // long enough for the gateway to answer under load
	lost := make(chan error, 1)
	c := client(t, r.addr(), snclient.Options{ClientID: "retry", CleanSession: true, KeepAlive: time.Minute,
		RetryInterval: retry, RetryCount: 3, OnConnectionLost: func(err error) { lost <- err }})

	dropFirst := func(typ snpacket.MsgType) func(snpacket.Packet) bool {
		dropped := false
		return func(p snpacket.Packet) bool {
			if p.Type() == typ && !dropped {
				dropped = true
				return true
			}
			return false
		}
	}
	r.setDrop(dropFirst(snpacket.TypeConnect))
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	r.setDrop(dropFirst(snpacket.TypeRegister))
	if _, err := c.Register(ctx(t), "retry/topic"); err != nil {
		t.Fatalf("Register: %v", err)
	}
	r.setDrop(dropFirst(snpacket.TypePublish))
	if err := c.Publish(ctx(t), "retry/topic", []byte("once"), snpacket.QoS1, false); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	pubs := r.sent(snpacket.TypePublish)
	if len(pubs) < 2 || pubs[0].(*snpacket.Publish).DUP {
		t.Fatalf("PUBLISH datagrams: %+v", pubs)
	}
	for _, p := range pubs[1:] {
		if !p.(*snpacket.Publish).DUP {
			t.Fatalf("retransmitted PUBLISH without DUP: %+v", pubs)
		}
	}
	if got := next(t, seen, "publish"); got.payload != "once" {
		t.Fatalf("got %+v", got)
	}
	r.setDrop(dropFirst(snpacket.TypePubrel))
	if err := c.Publish(ctx(t), "retry/topic", []byte("qos2"), snpacket.QoS2, false); err != nil {
		t.Fatalf("Publish QoS 2: %v", err)
	}
	if n := len(r.sent(snpacket.TypePubrel)); n < 2 {
		t.Fatalf("%d PUBREL, want a retransmission", n)
	}

	// The gateway goes silent: Nretry retransmissions, then ErrTimeout and
	// the client is disconnected.
	r.setDrop(func(snpacket.Packet) bool { return true })
	before := len(r.sent(snpacket.TypePingReq))
	start := time.Now()
	err := c.Ping(ctx(t))
	if !errors.Is(err, snclient.ErrTimeout) {
		t.Fatalf("Ping: %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el < 4*retry {
		t.Errorf("gave up after %v, before 4 Tretry", el)
	}
	if n := len(r.sent(snpacket.TypePingReq)) - before; n != 4 {
		t.Errorf("%d PINGREQs, want 1 + Nretry = 4", n)
	}
	if c.State() != snclient.StateLost {
		t.Errorf("state %v, want lost", c.State())
	}
	if err := next(t, lost, "OnConnectionLost"); !errors.Is(err, snclient.ErrTimeout) {
		t.Errorf("OnConnectionLost(%v)", err)
	}
	if err := c.Publish(ctx(t), "retry/topic", nil, snpacket.QoS1, false); !errors.Is(err, snclient.ErrNotConnected) {
		t.Errorf("Publish when lost: %v", err)
	}
	// The gateway is back: connect again.
	r.setDrop(nil)
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect again: %v", err)
	}
}

func TestTimeoutWithoutGateway(t *testing.T) {
	// Nothing listens at the address: datagrams are refused (ICMP), which
	// is no answer either.
	addr := closedUDPAddr(t)
	c := client(t, addr, snclient.Options{RetryInterval: 20 * time.Millisecond, RetryCount: 2})
	start := time.Now()
	if err := c.Connect(ctx(t)); !errors.Is(err, snclient.ErrTimeout) {
		t.Fatalf("Connect: %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el < 3*20*time.Millisecond {
		t.Errorf("gave up after %v", el)
	}
	// QoS -1 is fire and forget, even into the void.
	if err := c.Publish(ctx(t), "ab", []byte("x"), snpacket.QoSMinusOne, false); err != nil {
		t.Errorf("QoS -1: %v", err)
	}
}
