// Package test is the black-box harness: it runs a real gateway on
// 127.0.0.1 against a real broker (the embedded one always, Debian's
// mosquitto when installed), drives it with a raw MQTT-SN client and
// watches the broker with an independent MQTT client (paho.golang).
package test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// Wait bounds every wait for an event. It is generous: a test waits on the
// event itself, so a slow machine only makes it slower, never red.
const Wait = testgw.Wait

// ForEachBroker runs fn as parallel subtests, once per target of
// testbroker.AllVersions (the embedded broker, and mosquitto spoken to
// with MQTT 5 and with MQTT 3.1.1) and per bridging mode: transparent
// (subtests "embedded", "mosquitto-5", ...) and aggregating
// ("aggregating/embedded", ...). Each subtest has a broker and a gateway
// of its own; RunGateway starts the gateway in the target's mode. fn must
// not call t.Parallel.
func ForEachBroker(t *testing.T, fn func(t *testing.T, tg testbroker.Target)) {
	t.Helper()
	ForEachBrokerIn(t, "", fn)
	t.Run(testbroker.Aggregating, func(t *testing.T) {
		t.Parallel()
		ForEachBrokerIn(t, testbroker.Aggregating, fn)
	})
}

// ForEachBrokerIn is ForEachBroker in one mode only ("" is transparent):
// for what only that mode does (the broker sees each node's ClientId and
// credentials in transparent mode; the aggregator's own counters).
func ForEachBrokerIn(t *testing.T, mode string, fn func(t *testing.T, tg testbroker.Target)) {
	t.Helper()
	for _, tg := range testbroker.AllVersions(t) {
		tg.Mode = mode
		t.Run(tg.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, tg)
		})
	}
}

// Env is a running gateway bridged to a broker.
type Env struct {
	Target testbroker.Target
	GW     *gateway.Gateway
	Addr   string // the gateway's UDP address
	Cfg    gateway.Config
}

// RunGateway starts a gateway on 127.0.0.1:0 bridged to tg and stops it in
// t.Cleanup. cfg may leave Listen empty; opts may add transports (DTLS).
func RunGateway(t testing.TB, tg testbroker.Target, cfg gateway.Config, opts ...gateway.Option) *Env {
	t.Helper()
	g := testgw.Start(t, tg, cfg, opts...)
	return &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String(), Cfg: cfg}
}

// Node is a raw MQTT-SN client talking to the gateway.
type Node struct {
	t    testing.TB
	Conn *snclient.Conn
}

// Node opens a new UDP socket to the gateway.
func (e *Env) Node(t testing.TB) *Node {
	t.Helper()
	c, err := snclient.Dial(e.Addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Node{t: t, Conn: c}
}

// Send sends p.
func (n *Node) Send(p snpacket.Packet) {
	n.t.Helper()
	if err := n.Conn.Send(p); err != nil {
		n.t.Fatalf("send %v: %v", p.Type(), err)
	}
}

// SendRaw sends raw bytes.
func (n *Node) SendRaw(b []byte) {
	n.t.Helper()
	if err := n.Conn.SendRaw(b); err != nil {
		n.t.Fatalf("send raw: %v", err)
	}
}

// Next returns the next datagram from the gateway, failing the test if
// none arrives within Wait or it does not decode.
func (n *Node) Next() snpacket.Packet {
	n.t.Helper()
	p, err := n.Conn.Receive(Wait)
	if err != nil {
		n.t.Fatalf("waiting for a datagram from the gateway: %v", err)
	}
	return p
}

// Expect fails unless the next datagram equals want.
func (n *Node) Expect(want snpacket.Packet) snpacket.Packet {
	n.t.Helper()
	got := n.Next()
	if !reflect.DeepEqual(got, want) {
		n.t.Fatalf("got %T %+v, want %T %+v", got, got, want, want)
	}
	return got
}

// ExpectNothing fails if a datagram arrives within d. It can only miss a
// bug on a slow machine, never fail a correct gateway.
func (n *Node) ExpectNothing(d time.Duration) {
	n.t.Helper()
	p, err := n.Conn.Receive(d)
	if err == nil {
		n.t.Fatalf("expected nothing, got %T %+v", p, p)
	}
	if !errors.Is(err, snclient.ErrTimeout) {
		n.t.Fatalf("expected nothing, got error %v", err)
	}
}

// Connect performs CONNECT (without will) and expects CONNACK accepted.
func (n *Node) Connect(clientID string, clean bool, keepAlive uint16) {
	n.t.Helper()
	n.Send(&snpacket.Connect{CleanSession: clean, Duration: keepAlive, ClientID: clientID})
	n.Expect(&snpacket.Connack{ReturnCode: snpacket.Accepted})
}

// Register registers a topic name and returns its id.
func (n *Node) Register(msgID uint16, name string) uint16 {
	n.t.Helper()
	n.Send(&snpacket.Register{MsgID: msgID, TopicName: name})
	p := n.Next()
	ra, ok := p.(*snpacket.Regack)
	if !ok || ra.MsgID != msgID || ra.ReturnCode != snpacket.Accepted || ra.TopicID == 0 {
		n.t.Fatalf("REGISTER %q: got %T %+v", name, p, p)
	}
	return ra.TopicID
}

// Subscribe subscribes by topic name and returns the SUBACK.
func (n *Node) Subscribe(msgID uint16, filter string, qos snpacket.QoS) *snpacket.Suback {
	n.t.Helper()
	n.Send(&snpacket.Subscribe{QoS: qos, MsgID: msgID, TopicName: filter})
	p := n.Next()
	sa, ok := p.(*snpacket.Suback)
	if !ok || sa.MsgID != msgID || sa.ReturnCode != snpacket.Accepted {
		n.t.Fatalf("SUBSCRIBE %q: got %T %+v", filter, p, p)
	}
	return sa
}

// Received is a message the watcher saw on the broker.
type Received struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
}

// Watcher is an MQTT client on the broker, independent of the gateway.
type Watcher struct {
	t   testing.TB
	cli *paho.Client
	C   chan Received
}

// Watch connects an MQTT v5 client to the broker and subscribes to filter
// at QoS 2.
func (e *Env) Watch(t testing.TB, filter string) *Watcher {
	t.Helper()
	w := &Watcher{t: t, C: make(chan Received, 10000)}
	if e.Target.V311Only {
		s := v311Client(t, e.Target, "watcher-"+t.Name(), func(m gateway.Message) {
			w.C <- Received{Topic: m.Topic, Payload: string(m.Payload), QoS: m.QoS, Retain: m.Retain}
		})
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if _, err := s.Subscribe(ctx, filter, 2); err != nil {
			t.Fatalf("watcher subscribe: %v", err)
		}
		return w
	}
	w.cli = e.mqttClient(t, "watcher-"+t.Name(), func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		w.C <- Received{Topic: p.Topic, Payload: string(p.Payload), QoS: p.QoS, Retain: p.Retain}
		return true, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if _, err := w.cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 2}}}); err != nil {
		t.Fatalf("watcher subscribe: %v", err)
	}
	return w
}

// Next waits for the next message on the broker.
func (w *Watcher) Next() Received {
	w.t.Helper()
	select {
	case r := <-w.C:
		return r
	case <-time.After(Wait):
		w.t.Fatal("no message reached the broker")
		return Received{}
	}
}

// ExpectNothing fails if a message reaches the watcher within d.
func (w *Watcher) ExpectNothing(d time.Duration) {
	w.t.Helper()
	select {
	case r := <-w.C:
		w.t.Fatalf("unexpected message on the broker: %+v", r)
	case <-time.After(d):
	}
}

// Publish publishes a message on the broker from an independent client.
func (e *Env) Publish(t testing.TB, topic, payload string, qos byte, retain bool) {
	t.Helper()
	if e.Target.V311Only {
		s := v311Client(t, e.Target, "publisher-"+t.Name(), func(gateway.Message) {})
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if err := s.Publish(ctx, gateway.Message{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
			t.Fatalf("publish %q: %v", topic, err)
		}
		return
	}
	cli := e.mqttClient(t, "publisher-"+t.Name(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if _, err := cli.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
}

func (e *Env) mqttClient(t testing.TB, id string, onPub func(paho.PublishReceived) (bool, error)) *paho.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.Target.Addr(), Wait)
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	cfg := paho.ClientConfig{ClientID: clientID(id), Conn: conn}
	if onPub != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPub}
	}
	cli := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	rm := uint16(1000)
	if _, err := cli.Connect(ctx, &paho.Connect{ClientID: clientID(id), CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm, RequestProblemInfo: true}}); err != nil {
		t.Fatalf("connect to broker: %v", err)
	}
	t.Cleanup(func() {
		_ = cli.Disconnect(&paho.Disconnect{})
		<-cli.Done()
	})
	return cli
}

// v311Client connects an MQTT 3.1.1 client for brokers that speak nothing
// else (RabbitMQ): the upstream package's 3.1.1 session, the only 3.1.1
// client in the module (its own tests check it against mosquitto and the
// embedded broker).
func v311Client(t testing.TB, tg testbroker.Target, id string, deliver func(gateway.Message)) gateway.Session {
	t.Helper()
	up, err := upstream.New(upstream.Config{URL: tg.URL, ProtocolVersion: upstream.Protocol311}, testgw.Logger(t).Named("client"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	s, err := up.Open(ctx, gateway.SessionOptions{ClientID: clientID(id), CleanStart: true}, deliver)
	if err != nil {
		t.Fatalf("connect to broker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// clientID makes an MQTT client id out of a test name.
func clientID(s string) string {
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

// Eventually polls cond until it holds, failing after Wait. Use it only
// where there is no event to wait on (a counter, say).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		<-tick.C
	}
}
