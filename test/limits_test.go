package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
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

// NodeFrom is Node from a local address of its own (127.0.0.x), standing
// for another source IP: a spoofed one, or another host.
func (e *Env) NodeFrom(t testing.TB, ip string) *Node {
	t.Helper()
	c, err := snclient.DialFrom(ip, e.Addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Node{t: t, Conn: c}
}

// A CONNECT flood from one address is cut to limits.connect_rate_per_ip
// (CONNACK 0x01, counted) while a node elsewhere connects at once; new
// ClientIds beyond limits.max_sessions get CONNACK 0x01 while known ones
// still connect.
func TestConnectFloodBounded(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		const maxSessions = 20
		e := RunGateway(t, tg, gateway.Config{MaxConnecting: 4, ConnectRatePerIP: 5, MaxSessions: maxSessions})
		flood := e.NodeFrom(t, "127.0.0.2")
		const floods = 100 // their answers fit the socket's receive buffer
		for i := range floods {
			flood.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: fmt.Sprintf("flood-%d", i)})
		}
		// The flood's burst may hold every limits.max_connecting slot for
		// a moment: the node retries on congestion, as nodes do.
		legit := e.NodeFrom(t, "127.0.0.3")
		start := time.Now()
		for {
			legit.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "legit"})
			if legit.Next().(*sn.Connack).ReturnCode == sn.Accepted {
				break
			}
			if time.Since(start) > 3*time.Second {
				t.Fatal("legitimate node not connected within 3s of the flood")
			}
			legit.ExpectNothing(50 * time.Millisecond) // the node's retry interval
		}
		accepted := 0
		for range floods {
			if flood.Next().(*sn.Connack).ReturnCode == sn.Accepted {
				accepted++
			}
		}
		if accepted < 1 || accepted > 10 {
			t.Errorf("%d of the flood's CONNECTs accepted, want about the burst (5)", accepted)
		}
		if got := e.GW.Stats().Limited[gateway.LimitConnectRate].Load(); got < floods-10 {
			t.Errorf("limited by connect_rate %d, want at least %d", got, floods-10)
		}

		// Sessions: one new ClientId at a time, each from an address of
		// its own, until the gateway holds maxSessions.
		clients, err := e.GW.Clients(testgw.Context(t))
		if err != nil {
			t.Fatal(err)
		}
		have := len(clients)
		refused := 0
		for i := range maxSessions - have + 5 {
			n := e.NodeFrom(t, fmt.Sprintf("127.0.1.%d", i+1))
			n.Send(&sn.Connect{CleanSession: true, Duration: 60, ClientID: fmt.Sprintf("many-%d", i)})
			rc := n.Next().(*sn.Connack).ReturnCode
			switch {
			case rc == sn.Accepted && i < maxSessions-have:
			case rc == sn.RejectedCongestion && i >= maxSessions-have:
				refused++
			default:
				t.Fatalf("CONNECT %d with %d sessions held: return code %v", i, have+i, rc)
			}
		}
		if got := e.GW.Stats().Limited[gateway.LimitSessions].Load(); got != uint64(refused) || refused != 5 {
			t.Errorf("limited by sessions %d, refused %d, want 5", got, refused)
		}
		legit.Connect("legit", false, 60) // a known ClientId still connects
	})
}

// drainBytes reads what arrives at n until it is quiet for quiet, and
// returns the bytes and the datagrams.
func drainBytes(t *testing.T, n *Node, quiet time.Duration) (int, []sn.Packet) {
	t.Helper()
	total := 0
	var pkts []sn.Packet
	for {
		b, err := n.Conn.ReceiveRaw(quiet)
		if err != nil {
			return total, pkts
		}
		total += len(b)
		if p, err := sn.Unmarshal(b); err == nil {
			pkts = append(pkts, p)
		}
	}
}

// Reflection (issue 14): a CONNECT and ten SUBSCRIBEs to topics with
// large retained messages, sent with a victim's address, bring the victim
// at most three times their bytes; so does a wake-up PINGREQ with a
// sleeping node's ClientId. What the victim did not earn stays buffered:
// the real node gets all of it when it wakes up.
func TestAntiAmplification(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e := RunGateway(t, tg, gateway.Config{})
		big := strings.Repeat("R", 1000)
		prefix := "refl/" + tg.Name + "/"
		for k := range 10 {
			e.Publish(t, fmt.Sprintf("%sr%d", prefix, k), big, 1, true)
		}
		victim := e.NodeFrom(t, "127.0.0.50")
		sent := 0
		send := func(n *Node, p sn.Packet) {
			n.Send(p)
			sent += p.Len()
		}
		send(victim, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "spoofed"})
		if got := victim.Next(); !isConnack(got) {
			t.Fatalf("want CONNACK, got %+v", got)
		}
		received := 3
		for k := range 10 {
			send(victim, &sn.Subscribe{QoS: sn.QoS1, MsgID: uint16(k + 1), TopicName: fmt.Sprintf("%sr%d", prefix, k)})
		}
		n, pkts := drainBytes(t, victim, 500*time.Millisecond)
		received += n
		if received > 3*sent {
			t.Fatalf("the spoofed address got %d bytes for %d sent: %v", received, sent, pkts)
		}
		for _, p := range pkts {
			if p.Type() == sn.TypePublish {
				t.Fatalf("a retained message went to the unproven address: %v", pkts)
			}
		}

		// A sleeping node woken by a spoofed PINGREQ.
		node := e.Node(t)
		node.Connect("sleeper", true, 60)
		node.Subscribe(1, prefix+"s", sn.QoS1)
		node.Send(&sn.Disconnect{HasDuration: true, Duration: 600})
		node.Expect(&sn.Disconnect{})
		for k := range 20 {
			e.Publish(t, prefix+"s", fmt.Sprintf("%d:%s", k, big), 1, false)
		}
		Eventually(t, "20 messages buffered", func() bool {
			c, _, err := e.GW.Client(testgw.Context(t), "sleeper")
			return err == nil && c.Buffered == 20
		})
		victim2 := e.NodeFrom(t, "127.0.0.51")
		wake := &sn.PingReq{ClientID: "sleeper"}
		victim2.Send(wake)
		n, pkts = drainBytes(t, victim2, 300*time.Millisecond)
		if n > 3*wake.Len() {
			t.Fatalf("the spoofed wake-up got %d bytes for %d: %v", n, wake.Len(), pkts)
		}

		// The node wakes from its own address and gets all 20 after
		// proving the address with the REGACK of a REGISTER. (Their order
		// is the broker's: separate publisher connections.)
		node.Send(wake)
		seen := map[string]bool{}
		for got := 0; got < 20; {
			switch p := node.Next().(type) {
			case *sn.Register:
				node.Send(&sn.Regack{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
			case *sn.Publish:
				k, _, _ := strings.Cut(string(p.Data), ":")
				if seen[k] {
					t.Fatalf("message %s twice", k)
				}
				seen[k] = true
				node.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
				got++
			default:
				t.Fatalf("after %d messages: %T %+v", got, p, p)
			}
		}
		node.Expect(&sn.PingResp{})
	})
}

// Logs under abuse: 25 sleeping nodes each earning the same per-node
// warning (their buffer overflowed) write at most 10 lines of it, and
// their routine connect and sleep lines stay at debug.
func TestPerNodeWarningsRateLimited(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		e, _, logs := runWith(t, tg, upstream.Config{}, gateway.Config{MaxBuffered: 1})
		topic := "warn/" + tg.Name
		const nodes = 25
		for i := range nodes {
			n := e.Node(t)
			n.Connect(fmt.Sprintf("sleepy-%d", i), true, 60)
			n.Subscribe(1, topic, sn.QoS1)
			n.Send(&sn.Disconnect{HasDuration: true, Duration: 600})
			n.Expect(&sn.Disconnect{})
		}
		for k := range 2 {
			e.Publish(t, topic, fmt.Sprint(k), 1, false)
		}
		Eventually(t, "every node's overflow counted", func() bool {
			return e.GW.Stats().BufferDropped.Load() >= nodes
		})
		lines := 0
		for _, l := range logs.All() {
			if l.Message == "buffer full: messages dropped" {
				lines++
			}
			if l.Message == "connected" || l.Message == "asleep" {
				t.Fatalf("routine per-node line above debug: %+v", l)
			}
		}
		if lines != warnBurstOfGateway {
			t.Fatalf("%d warn lines for %d nodes, want %d", lines, nodes, warnBurstOfGateway)
		}
	})
}

// warnBurstOfGateway is the gateway's per-message warning burst (logs.go).
const warnBurstOfGateway = 10
