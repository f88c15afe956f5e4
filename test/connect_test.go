package test

import (
	"net"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// CONNECT with Will: WILLTOPICREQ, WILLTOPIC, WILLMSGREQ, WILLMSG, CONNACK
// (spec §6.2), then keep-alive expiry publishes the will (§6.14).
func TestConnectWillPublishedOnKeepAliveExpiry(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "will/#")
		n := e.Node(t)
		// Worked bytes: CONNECT with Will+Clean, keep-alive 2 s, "c1".
		n.SendRaw([]byte{0x08, 0x04, 0x0C, 0x01, 0x00, 0x02, 0x63, 0x31})
		n.Expect(&sn.WillTopicReq{})
		n.Send(&sn.WillTopic{QoS: sn.QoS1, WillTopic: "will/c1"})
		n.Expect(&sn.WillMsgReq{})
		n.Send(&sn.WillMsg{WillMsg: []byte("bye")})
		n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
		// Silence: lost after 2 s + 50 %, will published.
		start := time.Now()
		got := w.Next()
		if got != (Received{Topic: "will/c1", Payload: "bye", QoS: 1}) {
			t.Fatalf("broker got %+v", got)
		}
		if el := time.Since(start); el < 2*time.Second {
			t.Fatalf("will published after %v, before the keep-alive plus tolerance", el)
		}
		// The node is gone: its next message gets DISCONNECT.
		n.Send(&sn.PingReq{})
		n.Expect(&sn.Disconnect{})
	})
}

// A clean DISCONNECT never publishes the will.
func TestDisconnectNoWill(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "will/#")
		n := e.Node(t)
		n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 1, ClientID: "nowill"})
		n.Expect(&sn.WillTopicReq{})
		n.Send(&sn.WillTopic{WillTopic: "will/nowill"})
		n.Expect(&sn.WillMsgReq{})
		n.Send(&sn.WillMsg{WillMsg: []byte("x")})
		n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
		n.Send(&sn.Disconnect{})
		n.Expect(&sn.Disconnect{})
		w.ExpectNothing(2 * time.Second) // past keep-alive 1 s + 50 %
	})
}

// An empty WILLTOPIC means no will: CONNACK follows at once.
func TestConnectEmptyWillTopic(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{})
	n := e.Node(t)
	n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 60, ClientID: "emptywill"})
	n.Expect(&sn.WillTopicReq{})
	n.SendRaw([]byte{0x02, 0x07})
	n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
}

// WILLTOPICUPD and WILLMSGUPD take effect (spec §6.4).
func TestWillUpdate(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "will/#")
		n := e.Node(t)
		n.Connect("willupd", true, 1)
		// No will yet: WILLMSGUPD is refused.
		n.Send(&sn.WillMsgUpd{WillMsg: []byte("m")})
		n.Expect(&sn.WillMsgResp{ReturnCode: sn.RejectedNotSupported})
		n.Send(&sn.WillTopicUpd{QoS: sn.QoS0, WillTopic: "will/upd"})
		n.Expect(&sn.WillTopicResp{ReturnCode: sn.Accepted})
		n.Send(&sn.WillMsgUpd{WillMsg: []byte("updated")})
		n.Expect(&sn.WillMsgResp{ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "will/upd", Payload: "updated"}) {
			t.Fatalf("broker got %+v", got)
		}
	})
}

// An empty WILLTOPICUPD deletes the will.
func TestWillDelete(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{})
	w := e.Watch(t, "will/#")
	n := e.Node(t)
	n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 1, ClientID: "willdel"})
	n.Expect(&sn.WillTopicReq{})
	n.Send(&sn.WillTopic{WillTopic: "will/del"})
	n.Expect(&sn.WillMsgReq{})
	n.Send(&sn.WillMsg{WillMsg: []byte("x")})
	n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
	n.SendRaw([]byte{0x02, 0x1A})
	n.Expect(&sn.WillTopicResp{ReturnCode: sn.Accepted})
	Eventually(t, "node lost", func() bool { return e.GW.Stats().Lost.Load() == 1 })
	w.ExpectNothing(300 * time.Millisecond)
}

// A message other than the expected WILLTOPIC aborts the connect.
func TestConnectWillHandshakeAborted(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{})
	n := e.Node(t)
	n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 60, ClientID: "abort"})
	n.Expect(&sn.WillTopicReq{})
	n.Send(&sn.PingReq{})
	n.Expect(&sn.Disconnect{})
}

// Refused CONNECTs get CONNACK "not supported" (behaviour.md).
func TestConnectRefused(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{MaxClientIDLen: 10})
	n := e.Node(t)
	// ProtocolId 0x02.
	n.SendRaw([]byte{0x08, 0x04, 0x04, 0x02, 0x00, 0x1E, 0x63, 0x31})
	n.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	// Empty ClientId.
	n.SendRaw([]byte{0x06, 0x04, 0x04, 0x01, 0x00, 0x1E})
	n.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	// Longer than the configured maximum.
	n.Send(&sn.Connect{CleanSession: true, Duration: 30, ClientID: "elevenchars"})
	n.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	// The 3-octet length form is accepted.
	n.SendRaw([]byte{0x01, 0x00, 0x0A, 0x04, 0x04, 0x01, 0x00, 0x1E, 0x63, 0x31})
	n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
}

// A repeated CONNECT (lost CONNACK) is answered again; CleanSession=1
// resets the session, CleanSession=0 keeps subscriptions and topic ids.
func TestConnectRepeatedAndCleanSession(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("persist", false, 60)
		sa := n.Subscribe(1, "keep/a", sn.QoS1)
		n.Connect("persist", false, 60) // again, not clean: subscription kept
		e.Publish(t, "keep/a", "still", 1, false)
		n.expectRegister(n.Next(), "keep/a") // the node may be a new process (spec §6.10)
		p := n.Next().(*sn.Publish)
		if p.TopicID != sa.TopicID || string(p.Data) != "still" {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID})

		n.Connect("persist", true, 60) // clean: subscription gone
		e.Publish(t, "keep/a", "gone", 1, false)
		n.ExpectNothing(300 * time.Millisecond)
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: sa.TopicID, MsgID: 9, Data: []byte("x")})
		n.Expect(&sn.Puback{TopicID: sa.TopicID, MsgID: 9, ReturnCode: sn.RejectedInvalidTopicID})
	})
}

// CleanSession=0 across DISCONNECT: messages published while the node was
// disconnected are delivered after it connects again (broker session).
func TestPersistentSessionAcrossDisconnect(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		n := e.Node(t)
		n.Connect("durable", false, 60)
		sa := n.Subscribe(1, "dur/a", sn.QoS1)
		n.Send(&sn.Disconnect{})
		n.Expect(&sn.Disconnect{})
		// Wait until the upstream session really ended before publishing,
		// or the message may go to the old connection.
		Eventually(t, "upstream closed", func() bool { return e.GW.Stats().UpstreamClosed.Load() == 1 })
		e.Publish(t, "dur/a", "while-away", 1, false)
		n.Connect("durable", false, 60)
		n.expectRegister(n.Next(), "dur/a")
		p := n.Next().(*sn.Publish)
		if p.TopicID != sa.TopicID || string(p.Data) != "while-away" {
			t.Fatalf("PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID})
	})
}

// The same ClientId from a new address takes the session over; the old
// address gets nothing more (behaviour.md).
func TestSessionTakeover(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		old := e.Node(t)
		old.Connect("roamer", false, 60)
		old.Subscribe(1, "roam/a", sn.QoS0)
		nw := e.Node(t)
		nw.Connect("roamer", false, 60)
		e.Publish(t, "roam/a", "here", 0, false)
		nw.expectRegister(nw.Next(), "roam/a")
		p := nw.Next().(*sn.Publish)
		if string(p.Data) != "here" {
			t.Fatalf("PUBLISH %+v", p)
		}
		old.ExpectNothing(200 * time.Millisecond)
		old.Send(&sn.PingReq{})
		old.Expect(&sn.Disconnect{})
	})
}

// PINGREQ from an active node gets PINGRESP and keeps it alive.
func TestPing(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{})
	n := e.Node(t)
	n.Connect("pinger", true, 60)
	n.Send(&sn.PingReq{})
	n.Expect(&sn.PingResp{})
}

// Session traffic without a session gets an unsolicited DISCONNECT (e.g.
// after a gateway restart), acknowledgements are dropped.
func TestNoSession(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{})
	n := e.Node(t)
	n.Send(&sn.Register{MsgID: 1, TopicName: "a"})
	n.Expect(&sn.Disconnect{})
	n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 1, Data: []byte("x")})
	n.Expect(&sn.Disconnect{})
	n.Send(&sn.Subscribe{MsgID: 1, TopicName: "a"})
	n.Expect(&sn.Disconnect{})
	n.Send(&sn.PingReq{})
	n.Expect(&sn.Disconnect{})
	n.Send(&sn.Puback{TopicID: 1, MsgID: 1})
	n.ExpectNothing(200 * time.Millisecond)
	// PINGREQ with an unknown ClientId: DISCONNECT.
	n.Send(&sn.PingReq{ClientID: "nobody"})
	n.Expect(&sn.Disconnect{})
}

// SEARCHGW is answered with GWINFO carrying the gateway id.
func TestSearchGW(t *testing.T) {
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{GatewayID: 7})
	n := e.Node(t)
	n.SendRaw([]byte{0x03, 0x01, 0x00})
	n.Expect(&sn.GWInfo{GatewayID: 7})
}

// Several listeners, IPv4 and IPv6, feed the same sessions: a node that
// connected over IPv4 can be taken over by the same ClientId over IPv6.
func TestListenIPv4AndIPv6(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		_ = c.Close()
	}
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{Listen: []string{"127.0.0.1:0", "[::1]:0"}})
	addrs := e.GW.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("addrs %v", addrs)
	}
	w := e.Watch(t, "v/#")
	for i, a := range addrs {
		c, err := snclient.Dial(a.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		n := &Node{t: t, Conn: c}
		n.Connect("dual", false, 60)
		id := n.Register(1, "v/x")
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: uint16(i + 1), Data: []byte(a.String())})
		n.Expect(&sn.Puback{TopicID: id, MsgID: uint16(i + 1)})
		if got := w.Next(); got.Payload != a.String() {
			t.Fatalf("broker got %+v", got)
		}
	}
}

// An empty WILLMSG is legal: the node connects, and when it is lost its
// will is published with an empty payload.
func TestEmptyWillMessage(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		w := e.Watch(t, "will/#")
		n := e.Node(t)
		n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 1, ClientID: "emptymsg"})
		n.Expect(&sn.WillTopicReq{})
		n.Send(&sn.WillTopic{WillTopic: "will/empty"})
		n.Expect(&sn.WillMsgReq{})
		n.Send(&sn.WillMsg{})
		n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
		if got := w.Next(); got != (Received{Topic: "will/empty"}) {
			t.Fatalf("broker got %+v", got)
		}
	})
}
