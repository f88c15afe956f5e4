package snclient_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Tests against a scripted fake gateway, for what a real one cannot be
// made to do on demand: duplicates, rejections, unsolicited messages.

// fakeGW is a UDP socket that plays the gateway, one datagram at a time.
type fakeGW struct {
	t    *testing.T
	conn *net.UDPConn
	peer net.Addr
	last snpacket.Packet // the client's previous datagram

	// skipRetries makes next skip retransmissions, for tests with a short
	// Tretry that a slow machine may let run out.
	skipRetries bool
}

func newFakeGW(t *testing.T) *fakeGW {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &fakeGW{t: t, conn: conn}
}

func (f *fakeGW) addr() string { return f.conn.LocalAddr().String() }

func (f *fakeGW) recv(timeout time.Duration) (snpacket.Packet, error) {
	if err := f.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	n, from, err := f.conn.ReadFrom(buf)
	if err != nil {
		return nil, err
	}
	f.peer = from
	return snpacket.Unmarshal(buf[:n])
}

// next returns the client's next datagram (with skipRetries, the next
// that is not a retransmission of the previous one).
func (f *fakeGW) next() snpacket.Packet {
	f.t.Helper()
	for {
		p := f.nextAny()
		if !f.skipRetries || !retransmission(f.last, p) {
			f.last = p
			return p
		}
	}
}

// nextAny returns the client's next datagram, retransmission or not.
func (f *fakeGW) nextAny() snpacket.Packet {
	f.t.Helper()
	p, err := f.recv(wait)
	if err != nil {
		f.t.Fatalf("fake gateway: waiting for a datagram: %v", err)
	}
	return p
}

// retransmission reports whether p repeats prev (with DUP set, for the
// messages that have it).
func retransmission(prev, p snpacket.Packet) bool {
	if prev == nil {
		return false
	}
	switch q := p.(type) {
	case *snpacket.Publish:
		c := *q
		c.DUP = false
		p = &c
	case *snpacket.Subscribe:
		c := *q
		c.DUP = false
		p = &c
	}
	return reflect.DeepEqual(prev, p)
}

// expect fails unless the client's next datagram equals want.
func (f *fakeGW) expect(want snpacket.Packet) {
	f.t.Helper()
	if got := f.next(); !reflect.DeepEqual(got, want) {
		f.t.Fatalf("fake gateway got %T %+v, want %T %+v", got, got, want, want)
	}
}

// expectNothing fails if the client sends something within d. It can only
// miss a bug on a slow machine, never fail a correct client.
func (f *fakeGW) expectNothing(d time.Duration) {
	f.t.Helper()
	if p, err := f.recv(d); err == nil {
		f.t.Fatalf("fake gateway: expected nothing, got %T %+v", p, p)
	}
}

func (f *fakeGW) send(p snpacket.Packet) {
	f.t.Helper()
	b, err := snpacket.Marshal(p)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.conn.WriteTo(b, f.peer); err != nil {
		f.t.Fatal(err)
	}
}

// async runs f in a goroutine and returns its error on a channel.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// connectFake connects c to the fake gateway.
func connectFake(t *testing.T, f *fakeGW, c *snclient.Client) {
	t.Helper()
	done := async(func() error { return c.Connect(ctx(t)) })
	if p, ok := f.next().(*snpacket.Connect); !ok || p.ClientID != c.ClientID() {
		t.Fatalf("CONNECT: got %+v", p)
	}
	f.send(&snpacket.Connack{ReturnCode: snpacket.Accepted})
	if err := next(t, done, "Connect"); err != nil {
		t.Fatalf("Connect: %v", err)
	}
}

func closedUDPAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	_ = c.Close()
	return addr
}

func TestConnectHandshakeAndRejection(t *testing.T) {
	f := newFakeGW(t)
	c := client(t, f.addr(), snclient.Options{ClientID: "hs", KeepAlive: 90 * time.Second,
		Will: &snclient.Will{Topic: "w/t", Payload: []byte("bye"), QoS: 2, Retain: true}})
	done := async(func() error { return c.Connect(ctx(t)) })
	f.expect(&snpacket.Connect{Will: true, ProtocolID: 1, Duration: 90, ClientID: "hs"})
	f.send(&snpacket.WillTopicReq{})
	f.expect(&snpacket.WillTopic{QoS: 2, Retain: true, WillTopic: "w/t"})
	f.send(&snpacket.WillMsgReq{})
	f.expect(&snpacket.WillMsg{WillMsg: []byte("bye")})
	f.send(&snpacket.Connack{ReturnCode: snpacket.RejectedCongestion})
	err := next(t, done, "Connect")
	var rc snpacket.ReturnCode
	if !errors.Is(err, snpacket.RejectedCongestion) || !errors.As(err, &rc) || rc != snpacket.RejectedCongestion {
		t.Fatalf("Connect: %v, want congestion", err)
	}
	if c.State() != snclient.StateDisconnected {
		t.Errorf("state %v", c.State())
	}
}

func TestRejectionsWrapReturnCode(t *testing.T) {
	f := newFakeGW(t)
	c := client(t, f.addr(), snclient.Options{})
	connectFake(t, f, c)
	done := async(func() error { _, err := c.Register(ctx(t), "a/b"); return err })
	reg := f.next().(*snpacket.Register)
	f.send(&snpacket.Regack{MsgID: reg.MsgID, ReturnCode: snpacket.RejectedCongestion})
	if err := next(t, done, "Register"); !errors.Is(err, snpacket.RejectedCongestion) {
		t.Fatalf("Register: %v", err)
	}
	done = async(func() error { return c.Subscribe(ctx(t), "a/#", 1, nil) })
	sub := f.next().(*snpacket.Subscribe)
	f.send(&snpacket.Suback{MsgID: sub.MsgID, ReturnCode: snpacket.RejectedNotSupported})
	if err := next(t, done, "Subscribe"); !errors.Is(err, snpacket.RejectedNotSupported) {
		t.Fatalf("Subscribe: %v", err)
	}
}

// A QoS 1 PUBLISH rejected with "invalid topic ID" is registered again and
// published once more (spec §6.6).
func TestPublishReRegistersInvalidTopicID(t *testing.T) {
	f := newFakeGW(t)
	c := client(t, f.addr(), snclient.Options{})
	connectFake(t, f, c)
	done := async(func() error { return c.Publish(ctx(t), "t/x", []byte("p"), snpacket.QoS1, false) })
	reg := f.next().(*snpacket.Register)
	f.send(&snpacket.Regack{TopicID: 5, MsgID: reg.MsgID})
	pub := f.next().(*snpacket.Publish)
	if pub.TopicID != 5 || pub.TopicIDType != snpacket.TopicNormal || pub.QoS != 1 || string(pub.Data) != "p" {
		t.Fatalf("PUBLISH %+v", pub)
	}
	f.send(&snpacket.Puback{TopicID: 5, MsgID: pub.MsgID, ReturnCode: snpacket.RejectedInvalidTopicID})
	reg = f.next().(*snpacket.Register)
	if reg.TopicName != "t/x" {
		t.Fatalf("REGISTER %+v", reg)
	}
	f.send(&snpacket.Regack{TopicID: 6, MsgID: reg.MsgID})
	pub = f.next().(*snpacket.Publish)
	if pub.TopicID != 6 {
		t.Fatalf("PUBLISH %+v", pub)
	}
	f.send(&snpacket.Puback{TopicID: 6, MsgID: pub.MsgID})
	if err := next(t, done, "Publish"); err != nil {
		t.Fatal(err)
	}
	// Registered now: the next publish goes straight out.
	done = async(func() error { return c.Publish(ctx(t), "t/x", []byte("q"), snpacket.QoS0, false) })
	f.expect(&snpacket.Publish{TopicID: 6, Data: []byte("q")})
	if err := next(t, done, "Publish"); err != nil {
		t.Fatal(err)
	}
}

// Incoming QoS 2: PUBREC for every copy, one delivery until PUBREL.
func TestIncomingQoS2Duplicates(t *testing.T) {
	f := newFakeGW(t)
	h, ch := collector()
	c := client(t, f.addr(), snclient.Options{DefaultHandler: h})
	connectFake(t, f, c)
	f.send(&snpacket.Register{TopicID: 3, MsgID: 40, TopicName: "q/two"})
	f.expect(&snpacket.Regack{TopicID: 3, MsgID: 40})
	f.send(&snpacket.Publish{QoS: 2, TopicID: 3, MsgID: 41, Data: []byte("once")})
	f.expect(&snpacket.Pubrec{MsgID: 41})
	f.send(&snpacket.Publish{DUP: true, QoS: 2, TopicID: 3, MsgID: 41, Data: []byte("once")})
	f.expect(&snpacket.Pubrec{MsgID: 41})
	f.send(&snpacket.Pubrel{MsgID: 41})
	f.expect(&snpacket.Pubcomp{MsgID: 41})
	// The same MsgId after PUBCOMP is a new message.
	f.send(&snpacket.Publish{QoS: 2, TopicID: 3, MsgID: 41, Data: []byte("again")})
	f.expect(&snpacket.Pubrec{MsgID: 41})
	f.send(&snpacket.Pubrel{MsgID: 41})
	f.expect(&snpacket.Pubcomp{MsgID: 41})
	if m := next(t, ch, "first"); m != (received{"q/two", "once", 2, false}) {
		t.Errorf("got %+v", m)
	}
	if m := next(t, ch, "second"); m.payload != "again" {
		t.Errorf("got %+v", m)
	}
	select {
	case m := <-ch:
		t.Errorf("delivered twice: %+v", m)
	default:
	}
	// QoS 1 is answered with PUBACK; an unknown topic id is rejected.
	f.send(&snpacket.Publish{QoS: 1, TopicID: 3, MsgID: 42, Data: []byte("one")})
	f.expect(&snpacket.Puback{TopicID: 3, MsgID: 42})
	f.send(&snpacket.Publish{QoS: 1, TopicID: 99, MsgID: 43})
	f.expect(&snpacket.Puback{TopicID: 99, MsgID: 43, ReturnCode: snpacket.RejectedInvalidTopicID})
	// The gateway's PINGREQ is answered.
	f.send(&snpacket.PingReq{})
	f.expect(&snpacket.PingResp{})
	if m := next(t, ch, "qos 1"); m.payload != "one" {
		t.Errorf("got %+v", m)
	}
}

// One REGISTER outstanding at a time (spec §6.5); other kinds go ahead.
func TestRequestsOfOneKindAreSerialized(t *testing.T) {
	f := newFakeGW(t)
	c := client(t, f.addr(), snclient.Options{})
	connectFake(t, f, c)
	first := async(func() error { _, err := c.Register(ctx(t), "r/1"); return err })
	r1 := f.next().(*snpacket.Register)
	second := async(func() error { _, err := c.Register(ctx(t), "r/2"); return err })
	ping := async(func() error { return c.Ping(ctx(t)) })
	f.expect(&snpacket.PingReq{}) // not held up by the REGISTER
	f.send(&snpacket.PingResp{})
	if err := next(t, ping, "Ping"); err != nil {
		t.Fatal(err)
	}
	f.expectNothing(100 * time.Millisecond) // r/2 waits for r/1's REGACK
	f.send(&snpacket.Regack{TopicID: 1, MsgID: r1.MsgID})
	r2 := f.next().(*snpacket.Register)
	if r1.TopicName == r2.TopicName || r2.MsgID == r1.MsgID {
		t.Fatalf("REGISTERs %+v %+v", r1, r2)
	}
	f.send(&snpacket.Regack{TopicID: 2, MsgID: r2.MsgID})
	if err := next(t, first, "Register"); err != nil {
		t.Fatal(err)
	}
	if err := next(t, second, "Register"); err != nil {
		t.Fatal(err)
	}
}

func TestKeepAlivePing(t *testing.T) {
	f := newFakeGW(t)
	c := client(t, f.addr(), snclient.Options{KeepAlive: time.Second})
	connectFake(t, f, c)
	start := time.Now()
	f.expect(&snpacket.PingReq{}) // sent by itself after 3/4 s of silence
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Errorf("pinged after %v", el)
	}
	f.send(&snpacket.PingResp{})
	f.expect(&snpacket.PingReq{})
}

func TestUnsolicitedDisconnect(t *testing.T) {
	f := newFakeGW(t)
	lost := make(chan error, 1)
	c := client(t, f.addr(), snclient.Options{OnConnectionLost: func(err error) { lost <- err }})
	connectFake(t, f, c)
	done := async(func() error { return c.Subscribe(ctx(t), "x/y", 0, nil) })
	f.next()
	f.send(&snpacket.Disconnect{})
	if err := next(t, done, "Subscribe"); !errors.Is(err, snclient.ErrDisconnected) {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := next(t, lost, "OnConnectionLost"); !errors.Is(err, snclient.ErrDisconnected) {
		t.Fatalf("lost: %v", err)
	}
	if c.State() != snclient.StateDisconnected {
		t.Errorf("state %v", c.State())
	}
}

// Wake: PINGREQ with the ClientId, buffered REGISTER and PUBLISH handled,
// PINGRESP ends it; a silent gateway is retried and then given up on.
func TestWakeCollectsUntilPingresp(t *testing.T) {
	f := newFakeGW(t)
	h, ch := collector()
	c := client(t, f.addr(), snclient.Options{ClientID: "wk", RetryInterval: 100 * time.Millisecond, RetryCount: 2})
	f.skipRetries = true
	connectFake(t, f, c)
	done := async(func() error { return c.Subscribe(ctx(t), "w/#", 1, h) })
	sub := f.next().(*snpacket.Subscribe)
	f.send(&snpacket.Suback{QoS: 1, MsgID: sub.MsgID})
	if err := next(t, done, "Subscribe"); err != nil {
		t.Fatal(err)
	}
	done = async(func() error { return c.Sleep(ctx(t), 30*time.Second) })
	f.expect(&snpacket.Disconnect{Duration: 30, HasDuration: true})
	f.send(&snpacket.Disconnect{})
	if err := next(t, done, "Sleep"); err != nil {
		t.Fatal(err)
	}

	type wakeResult struct {
		n   int
		err error
	}
	woke := make(chan wakeResult, 1)
	go func() { n, err := c.Wake(ctx(t)); woke <- wakeResult{n, err} }()
	f.expect(&snpacket.PingReq{ClientID: "wk"})
	f.send(&snpacket.Register{TopicID: 9, MsgID: 1, TopicName: "w/a"})
	f.expect(&snpacket.Regack{TopicID: 9, MsgID: 1})
	f.send(&snpacket.Publish{QoS: 1, TopicID: 9, MsgID: 2, Data: []byte("buffered")})
	f.expect(&snpacket.Puback{TopicID: 9, MsgID: 2})
	f.send(&snpacket.PingResp{})
	r := next(t, woke, "Wake")
	if r.err != nil || r.n != 1 {
		t.Fatalf("Wake: %d %v", r.n, r.err)
	}
	select {
	case m := <-ch:
		if m != (received{"w/a", "buffered", 1, false}) {
			t.Errorf("got %+v", m)
		}
	default:
		t.Fatal("Wake returned before the handler had the message")
	}
	if c.State() != snclient.StateAsleep {
		t.Errorf("state %v", c.State())
	}

	// No answer: PINGREQ 1 + Nretry times, then back to sleep.
	go func() { n, err := c.Wake(ctx(t)); woke <- wakeResult{n, err} }()
	for range 3 {
		if p := f.nextAny(); !reflect.DeepEqual(p, &snpacket.PingReq{ClientID: "wk"}) {
			t.Fatalf("got %+v, want PINGREQ", p)
		}
	}
	if r := next(t, woke, "Wake"); !errors.Is(r.err, snclient.ErrTimeout) {
		t.Fatalf("Wake: %v", r.err)
	}
	if c.State() != snclient.StateAsleep {
		t.Errorf("state %v, want asleep", c.State())
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newFakeGW(t)
	c, err := snclient.DialClient(ctx(t), f.addr(), snclient.Options{DefaultHandler: func(snclient.Message) {}})
	if err != nil {
		t.Fatal(err)
	}
	connectFake(t, f, c)
	f.send(&snpacket.Publish{TopicIDType: snpacket.TopicShort, TopicID: 0x6162, Data: []byte("x")})
	blocked := async(func() error { return c.Ping(ctx(t)) }) // never answered
	f.expect(&snpacket.PingReq{})
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := next(t, blocked, "Ping"); !errors.Is(err, snclient.ErrClosed) {
		t.Errorf("call in progress: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Connect(ctx(t)); !errors.Is(err, snclient.ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
}

func TestPredefinedIDNames(t *testing.T) {
	for _, id := range []uint16{0, 1, 7, 0xFFFF} {
		if got, ok := snclient.ParsePredefinedID(snclient.PredefinedID(id)); !ok || got != id {
			t.Errorf("round trip %d: %d %v", id, got, ok)
		}
	}
	for _, s := range []string{"7", "", "\x00predefined:", "\x00predefined:65536", "\x00predefined:07", "\x00predefined:-1"} {
		if _, ok := snclient.ParsePredefinedID(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
	if _, err := snclient.NewClient(nil, snclient.Options{}); err == nil {
		t.Error("nil transport accepted")
	}
	if _, err := snclient.DialClient(ctx(t), "127.0.0.1:1", snclient.Options{Predefined: map[uint16]string{0: "x"}}); err == nil {
		t.Error("reserved predefined id accepted")
	}
}

// A call whose context ends gives up its turn: the next request of the
// kind goes out, and retransmission of the abandoned one stops.
func TestCanceledCallFreesItsKind(t *testing.T) {
	f := newFakeGW(t)
	c := client(t, f.addr(), snclient.Options{})
	connectFake(t, f, c)
	cctx, cancel := context.WithCancel(ctx(t))
	done := async(func() error { _, err := c.Register(cctx, "r/1"); return err })
	f.next() // REGISTER r/1, never answered
	cancel()
	if err := next(t, done, "Register"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Register: %v, want context.Canceled", err)
	}
	done = async(func() error { _, err := c.Register(ctx(t), "r/2"); return err })
	reg := f.next().(*snpacket.Register)
	if reg.TopicName != "r/2" {
		t.Fatalf("got %+v", reg)
	}
	f.send(&snpacket.Regack{TopicID: 2, MsgID: reg.MsgID})
	if err := next(t, done, "Register"); err != nil {
		t.Fatal(err)
	}
	// Calls with a context that already ended, racing their own result.
	for range 200 {
		cctx, cancel := context.WithCancel(ctx(t))
		cancel()
		_ = c.Publish(cctx, "ab", nil, snpacket.QoS0, false)
		_ = c.Ping(cctx)
	}
	if c.State() != snclient.StateActive {
		t.Errorf("state %v", c.State())
	}
}
