package test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// DTLS end to end (issue 5): a gateway with its UDP listener at Addrs()[0]
// and a DTLS listener at Addrs()[1], driven by pion/dtls v3 clients that
// speak MQTT-SN inside DTLS.

// dtlsEnv is a gateway with a DTLS listener.
type dtlsEnv struct {
	*Env
	TR   *dtlstransport.Transport
	DTLS string // the DTLS listener's address
}

// runDTLS starts a gateway bridged to tg with a DTLS listener on
// 127.0.0.1:0 configured by dcfg.
func runDTLS(t *testing.T, tg testbroker.Target, gcfg gateway.Config, dcfg dtlstransport.Config) *dtlsEnv {
	t.Helper()
	dcfg.Listen = "127.0.0.1:0"
	tr, err := dtlstransport.Listen(dcfg, zaptest.NewLogger(t).Named("dtls"))
	if err != nil {
		t.Fatalf("dtlstransport.Listen: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() }) // after the gateway's Shutdown, which closes it too
	e := RunGateway(t, tg, gcfg, gateway.WithTransport(tr))
	addrs := e.GW.Addrs()
	if len(addrs) != 2 || addrs[1].String() != tr.LocalAddr().String() {
		t.Fatalf("gateway addresses %v, want UDP then %v", addrs, tr.LocalAddr())
	}
	return &dtlsEnv{Env: e, TR: tr, DTLS: addrs[1].String()}
}

// dtlsNoLeaks fails the test if goroutines it started outlive it. Call it
// first: cleanups run last in, first out.
func dtlsNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// dtlsPSK returns a Config with a PSK file holding keys.
func dtlsPSK(t *testing.T, keys map[string][]byte) dtlstransport.Config {
	t.Helper()
	return dtlstransport.Config{PSKFile: dtlstest.PSKFile(t, t.TempDir(), keys)}
}

// dtlsPSKClient returns pion client options for a PSK node that asks for
// Connection IDs (as a node behind NAT should).
func dtlsPSKClient(identity string, key []byte, extra ...dtls.ClientOption) []dtls.ClientOption {
	return append([]dtls.ClientOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		dtls.WithPSKIdentityHint([]byte(identity)),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8),
		dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()),
		dtls.WithLoggerFactory(dtlstest.QuietLogger()),
	}, extra...)
}

// dtlsNode is an MQTT-SN node talking to the gateway over DTLS.
type dtlsNode struct {
	t  testing.TB
	c  *dtls.Conn
	sc *dtlstest.SwapConn
}

// dtlsDial handshakes with the DTLS listener (or a relay) at addr from sc,
// a fresh socket when nil.
func dtlsDial(t testing.TB, addr string, sc *dtlstest.SwapConn, timeout time.Duration, opts ...dtls.ClientOption) (*dtlsNode, error) {
	t.Helper()
	if sc == nil {
		var err error
		if sc, err = dtlstest.NewSwapConn("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dtlstest.Handshake(t, sc, addr, timeout, opts...)
	if err != nil {
		return nil, err
	}
	return &dtlsNode{t: t, c: c, sc: sc}, nil
}

func dtlsMustDial(t testing.TB, addr string, sc *dtlstest.SwapConn, opts ...dtls.ClientOption) *dtlsNode {
	t.Helper()
	n, err := dtlsDial(t, addr, sc, Wait, opts...)
	if err != nil {
		t.Fatalf("DTLS handshake: %v", err)
	}
	return n
}

func (n *dtlsNode) Send(p sn.Packet) {
	n.t.Helper()
	b, err := sn.Marshal(p)
	if err != nil {
		n.t.Fatalf("marshal %v: %v", p.Type(), err)
	}
	if _, err := n.c.Write(b); err != nil {
		n.t.Fatalf("send %v: %v", p.Type(), err)
	}
}

// Receive returns the next packet within d, or snclient.ErrTimeout.
func (n *dtlsNode) Receive(d time.Duration) (sn.Packet, error) {
	_ = n.c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	k, err := n.c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, snclient.ErrTimeout
		}
		return nil, err
	}
	return sn.Unmarshal(buf[:k])
}

func (n *dtlsNode) Next() sn.Packet {
	n.t.Helper()
	p, err := n.Receive(Wait)
	if err != nil {
		n.t.Fatalf("waiting for a datagram from the gateway over DTLS: %v", err)
	}
	return p
}

func (n *dtlsNode) Expect(want sn.Packet) {
	n.t.Helper()
	if got := n.Next(); !reflect.DeepEqual(got, want) {
		n.t.Fatalf("got %T %+v, want %T %+v", got, got, want, want)
	}
}

func (n *dtlsNode) ExpectNothing(d time.Duration) {
	n.t.Helper()
	if p, err := n.Receive(d); !errors.Is(err, snclient.ErrTimeout) {
		n.t.Fatalf("expected nothing, got %T %+v, error %v", p, p, err)
	}
}

func (n *dtlsNode) Connect(clientID string) {
	n.t.Helper()
	n.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: clientID})
	n.Expect(&sn.Connack{ReturnCode: sn.Accepted})
}

func (n *dtlsNode) Register(msgID uint16, name string) uint16 {
	n.t.Helper()
	n.Send(&sn.Register{MsgID: msgID, TopicName: name})
	ra, ok := n.Next().(*sn.Regack)
	if !ok || ra.MsgID != msgID || ra.ReturnCode != sn.Accepted || ra.TopicID == 0 {
		n.t.Fatalf("REGISTER %q: got %+v", name, ra)
	}
	return ra.TopicID
}

func (n *dtlsNode) PublishQoS1(topicID, msgID uint16, payload string) {
	n.t.Helper()
	n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: topicID, MsgID: msgID, Data: []byte(payload)})
	n.Expect(&sn.Puback{TopicID: topicID, MsgID: msgID, ReturnCode: sn.Accepted})
}

func (n *dtlsNode) Subscribe(msgID uint16, filter string) uint16 {
	n.t.Helper()
	n.Send(&sn.Subscribe{QoS: sn.QoS1, MsgID: msgID, TopicName: filter})
	sa, ok := n.Next().(*sn.Suback)
	if !ok || sa.MsgID != msgID || sa.ReturnCode != sn.Accepted {
		n.t.Fatalf("SUBSCRIBE %q: got %+v", filter, sa)
	}
	return sa.TopicID
}

// ExpectPublish waits for a QoS 1 PUBLISH of payload on topicID and
// acknowledges it.
func (n *dtlsNode) ExpectPublish(topicID uint16, payload string) {
	n.t.Helper()
	p, ok := n.Next().(*sn.Publish)
	if !ok || p.TopicID != topicID || string(p.Data) != payload || p.QoS != sn.QoS1 {
		n.t.Fatalf("want PUBLISH %q on topic %d, got %+v", payload, topicID, p)
	}
	n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
}

func wantReceived(t *testing.T, w *Watcher, want Received) {
	t.Helper()
	if got := w.Next(); got != want {
		t.Fatalf("broker got %+v, want %+v", got, want)
	}
}

// PSK node publishes and subscribes; its ClientId is its PSK identity.
func TestDTLSPSKPublishSubscribe(t *testing.T) {
	dtlsNoLeaks(t)
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := runDTLS(t, tg, gateway.Config{}, dtlsPSK(t, map[string][]byte{"psk-node": dtlstest.Key("psk-node")}))
		w := e.Watch(t, "dtls/#")
		n := dtlsMustDial(t, e.DTLS, nil, dtlsPSKClient("psk-node", dtlstest.Key("psk-node"))...)
		n.Connect("psk-node")
		id := n.Register(1, "dtls/up")
		n.PublishQoS1(id, 2, "secure hello")
		wantReceived(t, w, Received{Topic: "dtls/up", Payload: "secure hello", QoS: 1})

		down := n.Subscribe(3, "dtls/down")
		e.Publish(t, "dtls/down", "to the node", 1, false)
		n.ExpectPublish(down, "to the node")

		if e.TR.Stats().HandshakesOK.Load() != 1 || e.GW.Stats().IdentityRefused.Load() != 0 {
			t.Fatalf("handshakes %d, identity refusals %d", e.TR.Stats().HandshakesOK.Load(), e.GW.Stats().IdentityRefused.Load())
		}
		// Operators see the node's transport as DTLS (the listener's own
		// address is its UDP socket's, which said "udp").
		if ci, ok, err := e.GW.Client(context.Background(), "psk-node"); err != nil || !ok || ci.Transport != "dtls" {
			t.Errorf("node's transport %q (%v %v), want dtls", ci.Transport, ok, err)
		}
	})
}

// Certificates: with a client CA the ClientId must be the certificate's CN
// or a SAN; without one, nodes are anonymous and only connect when
// identity binding is off.
func TestDTLSCertificates(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	dir := t.TempDir()
	ca := dtlstest.NewCA(t, "sensor CA")
	srv := ca.Issue(t, "gateway", "localhost")
	cfg := dtlstransport.Config{
		CertFile: dtlstest.WriteFile(t, dir, "cert.pem", srv.CertPEM),
		KeyFile:  dtlstest.WriteFile(t, dir, "key.pem", srv.KeyPEM),
	}
	client := func(extra ...dtls.ClientOption) []dtls.ClientOption {
		return append([]dtls.ClientOption{
			dtls.WithRootCAs(ca.Pool()), dtls.WithServerName("localhost"),
			dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
			dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()),
			dtls.WithLoggerFactory(dtlstest.QuietLogger()),
		}, extra...)
	}

	t.Run("client certificates", func(t *testing.T) {
		cfg := cfg
		cfg.ClientCAFile = dtlstest.WriteFile(t, dir, "ca.pem", ca.PEM)
		e := runDTLS(t, tg, gateway.Config{}, cfg)
		w := e.Watch(t, "cert/#")
		leaf := ca.Issue(t, "cert-node", "dns:cert-node.example", "uri:urn:dev:cert-node")
		for i, id := range []string{"cert-node", "cert-node.example", "urn:dev:cert-node"} {
			n := dtlsMustDial(t, e.DTLS, nil, client(dtls.WithCertificates(leaf.TLS))...)
			n.Connect(id)
			topic := n.Register(1, "cert/up")
			n.PublishQoS1(topic, 2, fmt.Sprint("signed ", i))
			wantReceived(t, w, Received{Topic: "cert/up", Payload: fmt.Sprint("signed ", i), QoS: 1})
		}
		if _, err := dtlsDial(t, e.DTLS, nil, Wait, client()...); err == nil {
			t.Fatal("handshake without a client certificate succeeded")
		}
	})

	t.Run("server certificate only", func(t *testing.T) {
		e := runDTLS(t, tg, gateway.Config{DisableIdentityBinding: true}, cfg)
		w := e.Watch(t, "anon/#")
		n := dtlsMustDial(t, e.DTLS, nil, client()...)
		n.Connect("anon-node")
		topic := n.Register(1, "anon/up")
		n.PublishQoS1(topic, 2, "encrypted, not authenticated")
		wantReceived(t, w, Received{Topic: "anon/up", Payload: "encrypted, not authenticated", QoS: 1})
	})

	t.Run("server certificate only with identity binding", func(t *testing.T) {
		e := runDTLS(t, tg, gateway.Config{}, cfg)
		n := dtlsMustDial(t, e.DTLS, nil, client()...)
		n.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "anon-node"})
		n.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	})
}

// A wrong key fails the handshake; nothing reaches the gateway.
func TestDTLSWrongKeyRejected(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	e := runDTLS(t, tg, gateway.Config{}, dtlsPSK(t, map[string][]byte{"node": dtlstest.Key("right")}))
	w := e.Watch(t, "#")
	// The server drops the Finished it cannot decrypt (RFC 6347 §4.1.2.7),
	// so the client learns nothing and gives up by itself.
	if _, err := dtlsDial(t, e.DTLS, nil, 3*time.Second, dtlsPSKClient("node", dtlstest.Key("wrong"))...); err == nil {
		t.Fatal("handshake with a wrong key succeeded")
	}
	if _, err := dtlsDial(t, e.DTLS, nil, Wait, dtlsPSKClient("intruder", dtlstest.Key("right"))...); err == nil {
		t.Fatal("handshake with an unknown identity succeeded")
	}
	w.ExpectNothing(100 * time.Millisecond)
	if in, ok := e.GW.Stats().DatagramsIn.Load(), e.TR.Stats().HandshakesOK.Load(); in != 0 || ok != 0 {
		t.Fatalf("gateway got %d datagrams, %d handshakes succeeded", in, ok)
	}
}

// A node authenticated as one identity cannot connect, or wake, as another.
func TestDTLSIdentityMismatchRefused(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	e := runDTLS(t, tg, gateway.Config{}, dtlsPSK(t, map[string][]byte{"node-a": dtlstest.Key("a")}))
	w := e.Watch(t, "#")
	n := dtlsMustDial(t, e.DTLS, nil, dtlsPSKClient("node-a", dtlstest.Key("a"))...)
	// With a will, so an accepted CONNECT would answer WILLTOPICREQ.
	n.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 1, ClientID: "node-b"})
	n.Expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
	n.Send(&sn.PingReq{ClientID: "node-b"})
	n.Expect(&sn.Disconnect{})
	n.Send(&sn.PingReq{})
	n.Expect(&sn.Disconnect{}) // no session
	w.ExpectNothing(1500 * time.Millisecond)
	st := e.GW.Stats()
	if st.IdentityRefused.Load() == 0 || st.PublishesUp.Load() != 0 {
		t.Fatalf("IdentityRefused %d, PublishesUp %d", st.IdentityRefused.Load(), st.PublishesUp.Load())
	}
	// Its own identity works on the same connection.
	n.Connect("node-a")
}

// A node behind NAT changes source port twice, while active and while
// asleep; Connection IDs keep its DTLS session and so its MQTT-SN session.
func TestDTLSConnectionIDNewPortMidSession(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	e := runDTLS(t, tg, gateway.Config{}, dtlsPSK(t, map[string][]byte{"roamer": dtlstest.Key("roamer")}))
	w := e.Watch(t, "roam/#")
	sc, err := dtlstest.NewSwapConn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := dtlsMustDial(t, e.DTLS, sc, dtlsPSKClient("roamer", dtlstest.Key("roamer"))...)
	n.Connect("roamer")
	up := n.Register(1, "roam/up")
	down := n.Subscribe(2, "roam/down")
	n.PublishQoS1(up, 3, "from the first port")
	wantReceived(t, w, Received{Topic: "roam/up", Payload: "from the first port", QoS: 1})

	first := sc.LocalAddr().String()
	if err := sc.Swap(); err != nil {
		t.Fatal(err)
	}
	n.PublishQoS1(up, 4, "from the second port")
	wantReceived(t, w, Received{Topic: "roam/up", Payload: "from the second port", QoS: 1})
	e.Publish(t, "roam/down", "live", 1, false)
	n.ExpectPublish(down, "live")

	// Sleep, move again while asleep, and wake from the new port.
	n.Send(&sn.Disconnect{Duration: 300, HasDuration: true})
	n.Expect(&sn.Disconnect{})
	e.Publish(t, "roam/down", "while asleep", 1, false)
	n.ExpectNothing(200 * time.Millisecond)
	if err := sc.Swap(); err != nil {
		t.Fatal(err)
	}
	n.Send(&sn.PingReq{ClientID: "roamer"})
	n.ExpectPublish(down, "while asleep")
	n.Expect(&sn.PingResp{})

	if sc.LocalAddr().String() == first {
		t.Fatal("the port did not change")
	}
	if hs := e.TR.Stats().HandshakesOK.Load(); hs != 1 {
		t.Fatalf("%d handshakes, want 1", hs)
	}
	if r := e.GW.Stats().IdentityRefused.Load(); r != 0 {
		t.Fatalf("IdentityRefused = %d", r)
	}
}

// A node that reboots handshakes again from the same address and port;
// the stale connection is evicted rather than swallowing the ClientHello
// (pion/dtls#253), and the node connects.
func TestDTLSRebootSameAddress(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	e := runDTLS(t, tg, gateway.Config{}, dtlsPSK(t, map[string][]byte{"rebooter": dtlstest.Key("r")}))
	w := e.Watch(t, "boot/#")
	sc, err := dtlstest.NewSwapConn("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := sc.LocalAddr().String()
	n := dtlsMustDial(t, e.DTLS, sc, dtlsPSKClient("rebooter", dtlstest.Key("r"))...)
	n.Connect("rebooter")
	topic := n.Register(1, "boot/up")
	n.PublishQoS1(topic, 2, "before")
	wantReceived(t, w, Received{Topic: "boot/up", Payload: "before", QoS: 1})

	sc.Mute() // power loss: no close_notify
	_ = n.c.Close()
	sc2, err := dtlstest.NewSwapConn(local)
	if err != nil {
		t.Fatalf("rebind %s: %v", local, err)
	}
	n2 := dtlsMustDial(t, e.DTLS, sc2, dtlsPSKClient("rebooter", dtlstest.Key("r"))...)
	n2.Connect("rebooter")
	topic = n2.Register(1, "boot/up")
	n2.PublishQoS1(topic, 2, "after")
	wantReceived(t, w, Received{Topic: "boot/up", Payload: "after", QoS: 1})
	if ev := e.TR.Stats().Evicted.Load(); ev != 1 {
		t.Fatalf("Evicted = %d, want 1", ev)
	}
}

// Plain MQTT-SN sent to the DTLS port is not DTLS: no answer.
func TestDTLSPortIgnoresPlainMQTTSN(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	e := runDTLS(t, tg, gateway.Config{}, dtlsPSK(t, map[string][]byte{"node": dtlstest.Key("n")}))
	c, err := snclient.Dial(e.DTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := &Node{t: t, Conn: c}
	n.Send(&sn.SearchGW{Radius: 1})
	n.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "node"})
	n.ExpectNothing(500 * time.Millisecond)
	Eventually(t, "two unrouted datagrams", func() bool { return e.TR.Stats().Unrouted.Load() == 2 })
	if in := e.GW.Stats().DatagramsIn.Load(); in != 0 {
		t.Fatalf("gateway got %d datagrams", in)
	}
}

// 300 half-open handshakes from as many sockets (more than the default
// bound of 256) plus garbage do not keep a legitimate node out.
func TestDTLSHandshakeFlood(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	e := runDTLS(t, tg, gateway.Config{}, dtlsPSK(t, map[string][]byte{"legit": dtlstest.Key("legit")}))
	w := e.Watch(t, "flood/#")
	ra, err := net.ResolveUDPAddr("udp", e.DTLS)
	if err != nil {
		t.Fatal(err)
	}
	const hellos, garbage = 300, 100
	dtlstest.SendHellos(t, ra, hellos)
	g, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for i := range garbage {
		b := make([]byte, 30+i)
		_, _ = rand.Read(b)
		b[0], b[1], b[2], b[3], b[4], b[13] = 22, 0xfe, 0xfd, 0, 0, 77 // a handshake record, not a ClientHello
		if _, err := g.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	st := e.TR.Stats()
	// The flood filled the handshake slots and displaced some; exact counts
	// would depend on the kernel keeping every one of 400 datagrams sent in
	// a burst, which a loaded machine need not.
	Eventually(t, "flood processed", func() bool {
		return st.Unrouted.Load() > 0 && st.HandshakesDisplaced.Load()+st.HandshakesRefused.Load()+uint64(st.Handshaking.Load()) > 0
	})
	if st.HandshakesDisplaced.Load() == 0 {
		t.Logf("no handshake displaced: fewer than %d of the %d ClientHellos reached the listener", dtlstransport.DefaultMaxHandshakes+1, hellos)
	}
	if got := st.Unrouted.Load(); got > garbage {
		t.Fatalf("%d unrouted datagrams, only %d were sent", got, garbage)
	}
	if got := st.HandshakesDisplaced.Load(); got > hellos-dtlstransport.DefaultMaxHandshakes {
		t.Fatalf("%d handshakes displaced, at most %d could be", got, hellos-dtlstransport.DefaultMaxHandshakes)
	}

	n := dtlsMustDial(t, e.DTLS, nil, dtlsPSKClient("legit", dtlstest.Key("legit"))...)
	n.Connect("legit")
	topic := n.Register(1, "flood/up")
	n.PublishQoS1(topic, 2, "got through")
	wantReceived(t, w, Received{Topic: "flood/up", Payload: "got through", QoS: 1})
	t.Logf("handshaking %d, displaced %d, refused %d", st.Handshaking.Load(), st.HandshakesDisplaced.Load(), st.HandshakesRefused.Load())
}

// Handshakes complete under 20% datagram loss each way (pion retransmits
// flights), and the nodes then connect, retrying CONNECT themselves.
func TestDTLSHandshakeUnderLoss(t *testing.T) {
	dtlsNoLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	keys := map[string][]byte{}
	const nodes = 4
	for i := range nodes {
		keys[fmt.Sprint("lossy-", i)] = dtlstest.Key(fmt.Sprint("lossy-", i))
	}
	dcfg := dtlsPSK(t, keys)
	// DTLS doubles its retransmission interval (1, 2, 4, 8, 16 s...): an
	// unlucky run of losses can take a handshake past 30 s.
	dcfg.HandshakeTimeout = 90 * time.Second
	e := runDTLS(t, tg, gateway.Config{}, dcfg)
	relays := make([]*dtlstest.LossyRelay, nodes)
	for i := range relays {
		relays[i] = dtlstest.NewLossyRelay(t, e.DTLS, 0.2, uint64(i+1))
	}
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	conns := make([]*dtlsNode, nodes)
	took := make([]time.Duration, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("lossy-", i)
			start := time.Now()
			conns[i], errs[i] = dtlsDial(t, relays[i].Addr, nil, 90*time.Second, dtlsPSKClient(id, dtlstest.Key(id))...)
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: handshake under loss: %v (relay dropped %d, passed %d)", i, err, relays[i].Dropped.Load(), relays[i].Passed.Load())
		}
		t.Logf("node %d: handshake in %v, relay dropped %d and passed %d datagrams", i, took[i], relays[i].Dropped.Load(), relays[i].Passed.Load())
	}
	for i, n := range conns {
		id := fmt.Sprint("lossy-", i)
		dtlsConnectRetrying(t, n, id)
	}
}

// dtlsConnectRetrying sends CONNECT until CONNACK arrives (Tretry 1 s, at
// most 20 tries), as a node on a lossy link does.
func dtlsConnectRetrying(t *testing.T, n *dtlsNode, clientID string) {
	t.Helper()
	for range 20 {
		n.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: clientID})
		p, err := n.Receive(time.Second)
		if errors.Is(err, snclient.ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", clientID, err)
		}
		if !reflect.DeepEqual(p, &sn.Connack{ReturnCode: sn.Accepted}) {
			t.Fatalf("%s: got %T %+v", clientID, p, p)
		}
		return
	}
	t.Fatalf("%s: no CONNACK after 20 tries", clientID)
}
