package gateway

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func (r *rig) expect(want sn.Packet) {
	r.t.Helper()
	got := r.next()
	if gs, ws := describe(got), describe(want); gs != ws {
		r.t.Fatalf("got %s, want %s", gs, ws)
	}
}

func describe(p sn.Packet) string {
	b, err := sn.Marshal(p)
	if err != nil {
		return err.Error()
	}
	return p.Type().String() + " " + string(b)
}

func (r *rig) connectWithWill(id string, keepAlive uint16, willTopic, willMsg string) {
	r.t.Helper()
	r.send(nodeA, &sn.Connect{Will: true, CleanSession: true, Duration: keepAlive, ClientID: id})
	r.expect(&sn.WillTopicReq{})
	r.send(nodeA, &sn.WillTopic{QoS: sn.QoS1, WillTopic: willTopic})
	r.expect(&sn.WillMsgReq{})
	r.send(nodeA, &sn.WillMsg{WillMsg: []byte(willMsg)})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
}

func (r *rig) published() Message {
	r.t.Helper()
	select {
	case m := <-r.up.published:
		return m
	case <-time.After(24 * time.Hour):
		r.t.Fatal("nothing published upstream")
		return Message{}
	}
}

// Keep-alive supervision: a node silent for its keep-alive plus 50% (under
// 60 s) is lost and its will is published, to the second (spec §7.2).
func TestKeepAliveExpiryPublishesWill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.connectWithWill("n1", 10, "will/n1", "gone")
		start := time.Now()
		m := r.published()
		if m.Topic != "will/n1" || string(m.Payload) != "gone" || m.QoS != 1 {
			t.Fatalf("will %+v", m)
		}
		if el := time.Since(start); el != 15*time.Second {
			t.Fatalf("will after %v, want 15s", el)
		}
	})
}

// Any message from the node restarts keep-alive supervision.
func TestKeepAliveRestartedByTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.connectWithWill("n1", 100, "will/n1", "gone")
		time.Sleep(100 * time.Second) // fake time: within 100 s + 10 %
		r.send(nodeA, &sn.PingReq{})
		r.expect(&sn.PingResp{})
		start := time.Now()
		r.published()
		if el := time.Since(start); el != 110*time.Second {
			t.Fatalf("will after %v, want 110s after the last message", el)
		}
	})
}

// Sleep supervision uses the sleep duration with its tolerance.
func TestSleepExpiryPublishesWill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.connectWithWill("n1", 10, "will/n1", "gone")
		r.send(nodeA, &sn.Disconnect{Duration: 600, HasDuration: true})
		r.expect(&sn.Disconnect{})
		start := time.Now()
		r.published()
		if el := time.Since(start); el != 660*time.Second {
			t.Fatalf("will after %v, want 660s", el)
		}
	})
}

// The gateway retransmits a downlink PUBLISH every Tretry with DUP set,
// Nretry times, then the node is lost (will published).
func TestRetransmissionTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{RetryInterval: 3 * time.Second, RetryCount: 2})
		r.connectWithWill("n1", 600, "will/n1", "gone")
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicName: "a/b"})
		sa := r.next().(*sn.Suback)
		go r.up.session("n1").deliver(Message{Topic: "a/b", Payload: []byte("m"), QoS: 1})
		first := r.next().(*sn.Publish)
		if first.DUP || first.TopicID != sa.TopicID {
			t.Fatalf("first %+v", first)
		}
		sent := time.Now()
		for range 2 {
			p := r.next().(*sn.Publish)
			if !p.DUP || p.MsgID != first.MsgID {
				t.Fatalf("retransmission %+v", p)
			}
			if el := time.Since(sent); el != 3*time.Second {
				t.Fatalf("retransmitted after %v, want 3s", el)
			}
			sent = time.Now()
		}
		m := r.published()
		if m.Topic != "will/n1" {
			t.Fatalf("will %+v", m)
		}
		if el := time.Since(sent); el != 3*time.Second {
			t.Fatalf("lost %v after the last retransmission, want 3s", el)
		}
	})
}

// While the broker is unreachable the node gets congestion, never an
// acknowledgement of what was not handed on.
func TestBrokerDownCongestion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Predefined: map[uint16]string{1: "p/one"}})
		r.up.setDown(true)
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{ReturnCode: sn.RejectedCongestion})
		r.up.setDown(false)
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		r.up.setDown(true)
		r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 5, Data: []byte("x")})
		r.expect(&sn.Puback{TopicID: 1, MsgID: 5, ReturnCode: sn.RejectedCongestion})
		r.send(nodeA, &sn.Publish{QoS: sn.QoS2, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 6, Data: []byte("x")})
		r.expect(&sn.Puback{TopicID: 1, MsgID: 6, ReturnCode: sn.RejectedCongestion})
		// Retried after the broker is back: accepted, and the QoS 2 MsgId
		// was not left marked as a duplicate.
		r.up.setDown(false)
		r.send(nodeA, &sn.Publish{QoS: sn.QoS2, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 6, Data: []byte("x")})
		r.expect(&sn.Pubrec{MsgID: 6})
		if m := r.published(); m.Topic != "p/one" || m.QoS != 2 {
			t.Fatalf("published %+v", m)
		}
	})
}

// A full shard inbox drops datagrams and counts them; the reader never
// blocks. The gateway is not served, so nothing drains the inbox.
func TestInboxFullDrops(t *testing.T) {
	g, err := New(Config{Shards: 1, InboxSize: 1}, WithTransport(newMemTransport()), WithUpstream(newFakeUpstream()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sn.Marshal(&sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
	from := peer{key: peerKey{ap: nodeA.AddrPort()}, addr: nodeA}
	for range 10 {
		g.dispatch(from, append([]byte(nil), b...))
	}
	if got := g.Stats().InboxDropped.Load(); got != 9 {
		t.Fatalf("dropped %d, want 9", got)
	}
}

// Malformed datagrams are dropped and counted, never answered.
func TestMalformedCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		for _, b := range [][]byte{{}, {0x00}, {0x05, 0x0C}, {0x02, 0x03}, {0x01, 0x00}} {
			r.tr.in <- memDatagram{b: b, addr: nodeA}
		}
		synctest.Wait()
		if got := r.g.Stats().Malformed.Load(); got != 5 {
			t.Fatalf("malformed %d, want 5", got)
		}
		if len(r.tr.out) != 0 {
			t.Fatal("malformed datagram answered")
		}
	})
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: []string{"nonsense"}}, "listen.udp"},
		{Config{Predefined: map[uint16]string{0: "a"}}, "predefined_topics"},
		{Config{Predefined: map[uint16]string{1: "a/#"}}, "predefined_topics"},
		{Config{RetryInterval: -1}, "retry.interval"},
		{Config{RetryCount: -1}, "retry.count"},
		{Config{MaxBuffered: -1}, "sleep.max_buffered"},
		{Config{MaxBufferedBytes: -1}, "sleep.max_buffered_bytes"},
	} {
		err := c.cfg.Check()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %s", c.cfg, err, c.want)
		}
	}
	if _, err := New(Config{Listen: []string{"127.0.0.1:0"}}); err == nil || !strings.Contains(err.Error(), "WithUpstream") {
		t.Errorf("New without upstream: %v", err)
	}
}

func TestShutdownIdempotent(t *testing.T) {
	g, err := New(Config{Listen: []string{"127.0.0.1:0"}}, WithUpstream(newFakeUpstream()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(context.Background()) }()
	<-g.Ready()
	select {
	case <-g.Stopping():
		t.Fatal("stopping before shutdown")
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-g.Stopping() // closed once shutdown began
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrGatewayClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if err := g.Serve(context.Background()); !errors.Is(err, ErrGatewayClosed) {
		t.Fatalf("Serve after Shutdown returned %v", err)
	}
}

// Clients reports each node's state, subscriptions and radio cost.
func TestClientsSnapshotAndTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Predefined: map[uint16]string{1: "p/one"}})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{})
		r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 5, Data: []byte("x")})
		r.expect(&sn.Puback{TopicID: 1, MsgID: 5})
		r.published()
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS2, MsgID: 6, TopicName: "d/#"})
		r.next()
		go r.up.session("n1").deliver(Message{Topic: "d/x", Payload: []byte("y"), QoS: 2})
		reg := r.next().(*sn.Register)
		r.send(nodeA, &sn.Regack{TopicID: reg.TopicID, MsgID: reg.MsgID})
		p := r.next().(*sn.Publish)
		r.send(nodeA, &sn.Pubrec{MsgID: p.MsgID})
		r.expect(&sn.Pubrel{MsgID: p.MsgID})
		r.send(nodeA, &sn.Pubcomp{MsgID: p.MsgID})
		synctest.Wait()

		cs, err := r.g.Clients(context.Background())
		if err != nil || len(cs) != 1 {
			t.Fatalf("Clients: %v %v", cs, err)
		}
		c := cs[0]
		if c.ClientID != "n1" || c.State != "active" || c.Addr != nodeA.String() || c.KeepAlive != 60 {
			t.Fatalf("client %+v", c)
		}
		if len(c.Subscriptions) != 1 || c.Subscriptions[0].Filter != "d/#" || c.Subscriptions[0].QoS != 2 {
			t.Fatalf("subscriptions %+v", c.Subscriptions)
		}
		if c.Topics[reg.TopicID] != "d/x" {
			t.Fatalf("topics %+v", c.Topics)
		}
		tr := c.Traffic
		// In: CONNECT, PUBLISH, SUBSCRIBE, REGACK, PUBREC, PUBCOMP.
		// Out: CONNACK, PUBACK, SUBACK, REGISTER, PUBLISH, PUBREL.
		if tr.DatagramsIn != 6 || tr.DatagramsOut != 6 {
			t.Fatalf("datagrams in %d out %d", tr.DatagramsIn, tr.DatagramsOut)
		}
		if tr.Uplinked[2] != 1 || tr.UplinkDatagrams[2] != 2 {
			t.Fatalf("uplink %+v", tr)
		}
		if tr.Delivered[3] != 1 || tr.DownlinkDatagrams[3] != 6 {
			t.Fatalf("downlink QoS 2: delivered %d with %d datagrams, want 1 with 6", tr.Delivered[3], tr.DownlinkDatagrams[3])
		}
		if _, ok, _ := r.g.Client(context.Background(), "nobody"); ok {
			t.Fatal("unknown client found")
		}
		if got := r.g.Stats().Connects.Load(); got != 1 {
			t.Fatalf("connects %d", got)
		}
		cn, err := r.g.Census(context.Background())
		if err != nil || cn.ByState["active"] != 1 || cn.Buffered != 0 || cn.InFlight != 0 {
			t.Fatalf("census %+v %v", cn, err)
		}
	})
}

// A clean CONNECT from elsewhere while the first is still connecting
// upstream: the first upstream session is discarded, a fresh one serves
// the node, and its deliveries reach the node.
func TestCleanConnectWhileOpening(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		gate := make(chan struct{})
		r.up.mu.Lock()
		r.up.gate = gate
		r.up.mu.Unlock()
		nodeB := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		synctest.Wait()
		r.send(nodeB, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		synctest.Wait()
		close(gate)
		r.expect(&sn.Connack{})
		r.up.mu.Lock()
		opens := r.up.opens
		r.up.mu.Unlock()
		if opens != 2 {
			t.Fatalf("%d upstream opens, want 2 (the stale one replaced)", opens)
		}
		r.send(nodeB, &sn.Subscribe{MsgID: 1, TopicName: "x/y"})
		r.next()
		go r.up.session("n1").deliver(Message{Topic: "x/y", Payload: []byte("fresh")})
		p := r.next().(*sn.Publish)
		if string(p.Data) != "fresh" {
			t.Fatalf("PUBLISH %+v", p)
		}
	})
}

// The gateway-wide byte budget bounds what all sleeping nodes hold
// together; what does not fit is dropped and counted by reason.
func TestBufferBudgetSharedByNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxBufferedBytes: 1000})
		nodes := []*net.UDPAddr{nodeA, {IP: net.IPv4(10, 0, 0, 2), Port: 5000}}
		for i, a := range nodes {
			id := string(rune('a' + i))
			r.send(a, &sn.Connect{CleanSession: true, Duration: 60, ClientID: id})
			r.expect(&sn.Connack{})
			r.send(a, &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicName: "t"})
			r.next()
			r.send(a, &sn.Disconnect{Duration: 600, HasDuration: true})
			r.expect(&sn.Disconnect{})
		}
		for range 10 {
			for i := range nodes {
				r.up.session(string(rune('a' + i))).deliver(Message{Topic: "t", Payload: make([]byte, 100), QoS: 1})
			}
		}
		synctest.Wait()
		st := r.g.Stats()
		if st.BufferDroppedBudget.Load() == 0 || st.BufferDropped.Load() != st.BufferDroppedBudget.Load() {
			t.Fatalf("dropped %d, by budget %d", st.BufferDropped.Load(), st.BufferDroppedBudget.Load())
		}
		cs, _ := r.g.Clients(context.Background())
		var held int64
		for _, c := range cs {
			held += c.BufferedBytes
		}
		if held > 1000 {
			t.Fatalf("nodes hold %d bytes, budget 1000", held)
		}
	})
}

// A CONNECT whose will handshake never finishes is forgotten after the
// retransmission budget; a persistent session after SessionExpiry.
func TestIdleSessionsForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{RetryInterval: 10 * time.Second, RetryCount: 3, SessionExpiry: time.Hour})
		count := func() int {
			cs, err := r.g.Clients(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return len(cs)
		}
		r.send(nodeA, &sn.Connect{Will: true, CleanSession: true, Duration: 60, ClientID: "half"})
		r.expect(&sn.WillTopicReq{})
		time.Sleep(40*time.Second + time.Millisecond) // Tretry × (Nretry+1)
		synctest.Wait()
		if n := count(); n != 0 {
			t.Fatalf("%d sessions after an abandoned will handshake, want 0", n)
		}

		nodeB := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}
		r.send(nodeB, &sn.Connect{CleanSession: false, Duration: 60, ClientID: "durable"})
		r.expect(&sn.Connack{})
		r.send(nodeB, &sn.Disconnect{})
		r.expect(&sn.Disconnect{})
		synctest.Wait()
		if n := count(); n != 1 {
			t.Fatalf("%d sessions right after a persistent node left, want 1", n)
		}
		time.Sleep(time.Hour + time.Millisecond)
		synctest.Wait()
		if n := count(); n != 0 {
			t.Fatalf("%d sessions after SessionExpiry, want 0", n)
		}
	})
}

// The UDP listeners get the receive buffer asked for.
func TestUDPReadBuffer(t *testing.T) {
	g, err := New(Config{Listen: []string{"127.0.0.1:0"}, UDPReadBuffer: 100000}, WithUpstream(newFakeUpstream()))
	if err != nil {
		t.Fatal(err)
	}
	defer g.closeTransports()
	if got := readBufferSize(g.transports[0].(*net.UDPConn)); got < 100000 {
		t.Fatalf("receive buffer %d, asked 100000", got)
	}
}

// With a backoff cap, the wait before each retransmission doubles up to
// the cap: 3 s, 6 s, then 10 s (not 12), and the node is lost 10 s later.
func TestRetransmissionBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{RetryInterval: 3 * time.Second, RetryCount: 3, RetryBackoffMax: 10 * time.Second})
		r.connectWithWill("n1", 600, "will/n1", "gone")
		r.send(nodeA, &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicName: "a/b"})
		r.next()
		go r.up.session("n1").deliver(Message{Topic: "a/b", Payload: []byte("m"), QoS: 1})
		r.next()
		sent := time.Now()
		for _, want := range []time.Duration{3 * time.Second, 6 * time.Second, 10 * time.Second} {
			p := r.next().(*sn.Publish)
			if el := time.Since(sent); !p.DUP || el != want {
				t.Fatalf("retransmission after %v (DUP %v), want %v", el, p.DUP, want)
			}
			sent = time.Now()
		}
		r.published() // the will: lost
		if el := time.Since(sent); el != 10*time.Second {
			t.Fatalf("lost %v after the last retransmission, want 10s", el)
		}
	})
}
