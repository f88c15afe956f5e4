package test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// ADVERTISE goes to each configured destination at start and then every
// interval, from the gateway's own address, with the interval as Duration.
func TestAdvertise(t *testing.T) {
	dst, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{
		GatewayID: 9, AdvertiseInterval: time.Second, AdvertiseTo: []string{dst.LocalAddr().String()},
	})
	buf := make([]byte, 64)
	for i := range 2 {
		_ = dst.SetReadDeadline(time.Now().Add(Wait))
		n, from, err := dst.ReadFrom(buf)
		if err != nil {
			t.Fatalf("ADVERTISE %d: %v", i, err)
		}
		p, err := sn.Unmarshal(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if adv, ok := p.(*sn.Advertise); !ok || adv.GatewayID != 9 || adv.Duration != 1 {
			t.Fatalf("got %+v", p)
		}
		if from.String() != e.Addr {
			t.Fatalf("ADVERTISE from %v, want the gateway's address %v", from, e.Addr)
		}
	}
}

// GWINFO and ADVERTISE from other gateways are ignored without harm.
func TestOtherGatewaysIgnored(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{GatewayID: 1})
	n := e.Node(t)
	n.Send(&sn.Advertise{GatewayID: 2, Duration: 900})
	n.Send(&sn.GWInfo{GatewayID: 2})
	n.ExpectNothing(200 * time.Millisecond)
	n.Connect("after-gwinfo", true, 60)
}

// forwarder wraps a Node: everything is encapsulated for one Wireless Node
// Id, and everything received must come back encapsulated for it.
type forwarder struct {
	*Node
	id []byte
}

func (f forwarder) Send(p sn.Packet) {
	f.t.Helper()
	f.Node.Send(&sn.Encapsulated{NodeID: f.id, Message: p})
}

func (f forwarder) Next() sn.Packet {
	f.t.Helper()
	p := f.Node.Next()
	enc, ok := p.(*sn.Encapsulated)
	if !ok || !bytes.Equal(enc.NodeID, f.id) {
		f.t.Fatalf("node % x got %T %+v, want it encapsulated for it", f.id, p, p)
	}
	return enc.Message
}

func (f forwarder) Expect(want sn.Packet) {
	f.t.Helper()
	if got := f.Next(); !samePacket(got, want) {
		f.t.Fatalf("node % x got %T %+v, want %+v", f.id, got, got, want)
	}
}

func samePacket(a, b sn.Packet) bool {
	x, err1 := sn.Marshal(a)
	y, err2 := sn.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// A SEARCHGW through a forwarder is answered through it, with the search's
// radius in the Ctrl octet (spec §5.5, §6.1).
func TestSearchGWThroughForwarder(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{GatewayID: 3})
	n := e.Node(t)
	n.Send(&sn.Encapsulated{NodeID: []byte{0xAB, 0xCD}, Message: &sn.SearchGW{Radius: 2}})
	n.Expect(&sn.Encapsulated{Radius: 2, NodeID: []byte{0xAB, 0xCD}, Message: &sn.GWInfo{GatewayID: 3}})
}

// Two nodes behind one forwarder are two clients: their own sessions,
// topic ids, sleep and will; every answer is encapsulated for the node.
func TestTwoNodesBehindOneForwarder(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "fw/#")
		sock := e.Node(t)
		a := forwarder{Node: sock, id: []byte{0x00, 0x01}}
		b := forwarder{Node: sock, id: []byte{0x00, 0x02}}

		a.Send(&sn.Connect{CleanSession: true, Duration: 600, ClientID: "fw-a"})
		a.Expect(&sn.Connack{})
		b.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 1, ClientID: "fw-b"})
		b.Expect(&sn.WillTopicReq{})
		b.Send(&sn.WillTopic{WillTopic: "fw/will/b"})
		b.Expect(&sn.WillMsgReq{})
		b.Send(&sn.WillMsg{WillMsg: []byte("b lost")})
		b.Expect(&sn.Connack{})

		// Each registers its own topic: ids are per node.
		a.Send(&sn.Register{MsgID: 1, TopicName: "fw/a"})
		ra := a.Next().(*sn.Regack)
		b.Send(&sn.Register{MsgID: 1, TopicName: "fw/b"})
		rb := b.Next().(*sn.Regack)
		if ra.ReturnCode != sn.Accepted || rb.ReturnCode != sn.Accepted {
			t.Fatalf("REGACKs %+v %+v", ra, rb)
		}
		a.Send(&sn.Publish{QoS: sn.QoS1, TopicID: ra.TopicID, MsgID: 2, Data: []byte("from a")})
		a.Expect(&sn.Puback{TopicID: ra.TopicID, MsgID: 2})
		if got := w.Next(); got.Topic != "fw/a" || got.Payload != "from a" {
			t.Fatalf("broker got %+v", got)
		}

		// a sleeps; b goes silent and is lost: only b's will is published.
		a.Send(&sn.Disconnect{Duration: 600, HasDuration: true})
		a.Expect(&sn.Disconnect{})
		if got := w.Next(); got.Topic != "fw/will/b" || got.Payload != "b lost" {
			t.Fatalf("broker got %+v", got)
		}
		// a wakes through the forwarder and goes back to sleep.
		a.Send(&sn.PingReq{ClientID: "fw-a"})
		a.Expect(&sn.PingResp{})
	})
}

// Malformed encapsulations are dropped without harm.
func TestMalformedEncapsulation(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{})
	n := e.Node(t)
	for _, b := range [][]byte{
		{0x02, 0xFE},                               // Le too short
		{0x03, 0xFE, 0x00},                         // no node id, no message
		{0x05, 0xFE, 0x00, 0xAB, 0xCD},             // no inner message
		{0x05, 0xFE, 0x00, 0xAB, 0xCD, 0x09},       // inner message truncated
		{0x09, 0xFE, 0x00, 0xAB, 0xCD, 0x02, 0x16}, // Le past the end
		{0x05, 0xFE, 0x00, 0xAB, 0xCD, 0x07, 0xFE, 0x00, 0x01, 0x02, 0x03, 0x02, 0x16}, // nested
	} {
		n.SendRaw(b)
	}
	n.ExpectNothing(200 * time.Millisecond)
	Eventually(t, "malformed counted", func() bool { return e.GW.Stats().Malformed.Load() >= 6 })
	f := forwarder{Node: n, id: []byte{0xAB, 0xCD}}
	f.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "after-bad-fe"})
	f.Expect(&sn.Connack{})
}

// A forwarder not on a non-empty allow-list is ignored.
func TestForwarderAllowList(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{ForwarderAllow: []string{"192.0.2.1"}})
	n := e.Node(t)
	n.Send(&sn.Encapsulated{NodeID: []byte{1}, Message: &sn.Connect{CleanSession: true, Duration: 60, ClientID: "denied"}})
	n.ExpectNothing(300 * time.Millisecond)
	if e.GW.Stats().ForwarderDenied.Load() != 1 {
		t.Fatal("denied forwarder not counted")
	}
	// The same socket may still talk MQTT-SN directly.
	n.Connect("direct", true, 60)

	e2 := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{ForwarderAllow: []string{"127.0.0.0/8"}})
	f := forwarder{Node: e2.Node(t), id: []byte{1}}
	f.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "allowed"})
	f.Expect(&sn.Connack{})
}

// With gwinfo_broadcast, the GWINFO answering a SEARCHGW also goes to the
// discovery destinations.
func TestGWInfoBroadcast(t *testing.T) {
	dst, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{
		GatewayID: 4, AdvertiseInterval: time.Hour, AdvertiseTo: []string{dst.LocalAddr().String()}, GWInfoBroadcast: true,
	})
	buf := make([]byte, 64)
	read := func() sn.Packet {
		t.Helper()
		_ = dst.SetReadDeadline(time.Now().Add(Wait))
		n, _, err := dst.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		p, err := sn.Unmarshal(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := read(); p.Type() != sn.TypeAdvertise {
		t.Fatalf("first datagram %+v, want the start-up ADVERTISE", p)
	}
	n := e.Node(t)
	n.Send(&sn.SearchGW{Radius: 1})
	n.Expect(&sn.GWInfo{GatewayID: 4})
	if p, ok := read().(*sn.GWInfo); !ok || p.GatewayID != 4 {
		t.Fatalf("destination got %+v, want GWINFO", p)
	}
}
