package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func (r *rig) connect(from net.Addr, id string) {
	r.t.Helper()
	r.send(from, &sn.Connect{CleanSession: true, Duration: 600, ClientID: id})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
}

// While the broker stalls, a node's waiting operations stop at
// limits.max_pending_per_node: further QoS 1/2 PUBLISHes get PUBACK
// congestion, QoS 0 ones are dropped, all counted; once the broker moves
// the ones admitted are acknowledged, and the node may publish again.
func TestMaxPendingPerNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxPendingPerNode: 4, Predefined: map[uint16]string{1: "p/one"}})
		r.connect(nodeA, "n1")
		gate := make(chan struct{})
		r.up.mu.Lock()
		r.up.pubGate = gate
		r.up.mu.Unlock()
		for id := uint16(1); id <= 10; id++ {
			r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: id, Data: []byte("x")})
		}
		for range 5 {
			r.send(nodeA, &sn.Publish{QoS: sn.QoS0, TopicIDType: sn.TopicPredefined, TopicID: 1, Data: []byte("x")})
		}
		for id := uint16(5); id <= 10; id++ {
			r.expect(&sn.Puback{TopicID: 1, MsgID: id, ReturnCode: sn.RejectedCongestion})
		}
		synctest.Wait()
		if got := r.g.Stats().Limited[LimitPendingPerNode].Load(); got != 11 {
			t.Fatalf("limited by pending_per_node %d, want 11 (6 QoS 1, 5 QoS 0)", got)
		}
		// A retransmission of one being forwarded is no new operation.
		r.send(nodeA, &sn.Publish{DUP: true, QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 2, Data: []byte("x")})
		synctest.Wait()
		if len(r.tr.out) != 0 {
			t.Fatalf("a retransmission of an admitted PUBLISH was answered: %v", describe(r.next()))
		}
		close(gate)
		for id := uint16(1); id <= 4; id++ {
			r.expect(&sn.Puback{TopicID: 1, MsgID: id, ReturnCode: sn.Accepted})
			r.published()
		}
		r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 11, Data: []byte("x")})
		r.expect(&sn.Puback{TopicID: 1, MsgID: 11, ReturnCode: sn.Accepted})
		if got := r.g.PendingBytes(); got != 0 {
			t.Fatalf("%d bytes still charged after every operation finished", got)
		}
	})
}

// limits.max_pending_bytes is shared by all nodes: what one node holds
// for a stalled broker leaves another node's large PUBLISH congestion,
// and frees it once done.
func TestMaxPendingBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxPendingBytes: 1000, Predefined: map[uint16]string{1: "p/one"}})
		nodeB := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}
		r.connect(nodeA, "n1")
		r.connect(nodeB, "n2")
		gate := make(chan struct{})
		r.up.mu.Lock()
		r.up.pubGate = gate
		r.up.mu.Unlock()
		big := bytes.Repeat([]byte("x"), 600)
		r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 1, Data: big})
		synctest.Wait()
		r.send(nodeB, &sn.Publish{QoS: sn.QoS2, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 7, Data: big})
		r.expect(&sn.Puback{TopicID: 1, MsgID: 7, ReturnCode: sn.RejectedCongestion})
		if got := r.g.Stats().Limited[LimitPendingBytes].Load(); got != 1 {
			t.Fatalf("limited by pending_bytes %d, want 1", got)
		}
		close(gate)
		r.expect(&sn.Puback{TopicID: 1, MsgID: 1, ReturnCode: sn.Accepted})
		r.published()
		// Refused, not remembered: the retry is a new PUBLISH.
		r.send(nodeB, &sn.Publish{QoS: sn.QoS2, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 7, Data: big})
		r.expect(&sn.Pubrec{MsgID: 7})
		r.published()
	})
}

// A full worker pool and shard backlog refuse new operations too.
func TestShardBacklogBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Shards: 1, UpstreamWorkers: 1, InboxSize: 2, Predefined: map[uint16]string{1: "p/one"}})
		var nodes []*net.UDPAddr
		for i := range 4 {
			a := &net.UDPAddr{IP: net.IPv4(10, 0, 1, byte(i+1)), Port: 5000}
			nodes = append(nodes, a)
			r.connect(a, "n"+string(rune('a'+i)))
		}
		gate := make(chan struct{})
		r.up.mu.Lock()
		r.up.pubGate = gate
		r.up.mu.Unlock()
		for _, a := range nodes {
			r.send(a, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 1, Data: []byte("x")})
			synctest.Wait()
		}
		// One runs, two wait in the backlog, the fourth is refused.
		d := <-r.tr.out
		if d.addr.String() != nodes[3].String() {
			t.Fatalf("answer to %v, want to the fourth node", d.addr)
		}
		if got := r.g.Stats().Limited[LimitShardBacklog].Load(); got != 1 {
			t.Fatalf("limited by shard_backlog %d, want 1", got)
		}
		close(gate)
		for range 3 {
			r.next()
		}
	})
}

// The per-IP CONNECT rate has a burst of max(1, rate) and refills.
func TestConnectRateTable(t *testing.T) {
	var c connectRate
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	for i := range 2 {
		if !c.allow(ip, now, 2) {
			t.Fatalf("CONNECT %d of the burst refused", i)
		}
	}
	if c.allow(ip, now, 2) {
		t.Fatal("third CONNECT within the burst allowed")
	}
	if !c.allow(netip.MustParseAddr("192.0.2.2"), now, 2) {
		t.Fatal("another address paid for the first")
	}
	if !c.allow(ip, now.Add(500*time.Millisecond), 2) {
		t.Fatal("no refill after half a second at 2/s")
	}
	// The table stays bounded.
	for i := range maxRateEntries + 100 {
		c.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now, 2)
	}
	if len(c.m) > maxRateEntries {
		t.Fatalf("%d entries, bound %d", len(c.m), maxRateEntries)
	}
}

// limits.max_connecting bounds the upstream connects in progress: a
// CONNECT beyond it gets CONNACK congestion at once, counted; the ones
// admitted complete when the broker answers.
func TestMaxConnecting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxConnecting: 2})
		gate := make(chan struct{})
		r.up.mu.Lock()
		r.up.gate = gate
		r.up.mu.Unlock()
		for i := range 3 {
			a := &net.UDPAddr{IP: net.IPv4(10, 0, 2, byte(i+1)), Port: 5000}
			r.send(a, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "c" + string(rune('0'+i))})
			synctest.Wait()
		}
		r.expect(&sn.Connack{ReturnCode: sn.RejectedCongestion})
		if got := r.g.Stats().Limited[LimitConnecting].Load(); got != 1 {
			t.Fatalf("limited by connecting %d, want 1", got)
		}
		close(gate)
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		synctest.Wait()
		if got := r.g.lim.connecting.Load(); got != 0 {
			t.Fatalf("%d connect slots still held", got)
		}
	})
}

// limits.max_sessions refuses new ClientIds, not the ones it knows.
func TestMaxSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{MaxSessions: 2})
		nodeB := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}
		nodeC := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 3), Port: 5000}
		r.connect(nodeA, "s1")
		r.connect(nodeB, "s2")
		r.send(nodeC, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "s3"})
		r.expect(&sn.Connack{ReturnCode: sn.RejectedCongestion})
		if got := r.g.Stats().Limited[LimitSessions].Load(); got != 1 {
			t.Fatalf("limited by sessions %d, want 1", got)
		}
		r.connect(nodeB, "s2") // a known ClientId connects again
		r.send(nodeA, &sn.Disconnect{})
		r.expect(&sn.Disconnect{})
		synctest.Wait() // the clean session is forgotten once its close is done
		r.connect(nodeC, "s3")
	})
}

// limits.connect_rate_per_ip answers the excess at the reader, before any
// session exists.
func TestConnectRatePerIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{ConnectRatePerIP: 1})
		r.connect(nodeA, "r1")
		r.send(&net.UDPAddr{IP: nodeA.IP, Port: 5001}, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "r2"})
		r.expect(&sn.Connack{ReturnCode: sn.RejectedCongestion})
		r.connect(&net.UDPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 5000}, "r3") // another address
		time.Sleep(time.Second)                                              // fake time: one token back
		r.connect(&net.UDPAddr{IP: nodeA.IP, Port: 5001}, "r2")
		if got := r.g.Stats().Limited[LimitConnectRate].Load(); got != 1 {
			t.Fatalf("limited by connect_rate %d, want 1", got)
		}
	})
}

// Per-node warnings: warnBurst lines of one message per warnPeriod, then
// the next line says how many were held back.
func TestWarnLimiter(t *testing.T) {
	var w warnLimiter
	now := time.Unix(0, 0)
	for i := range warnBurst {
		if ok, _ := w.allow("m", now); !ok {
			t.Fatalf("line %d held back", i)
		}
	}
	for range 5 {
		if ok, _ := w.allow("m", now); ok {
			t.Fatal("line beyond the burst logged")
		}
	}
	if ok, _ := w.allow("other", now); !ok {
		t.Fatal("another message paid for the first")
	}
	ok, held := w.allow("m", now.Add(warnPeriod))
	if !ok || held != 5 {
		t.Fatalf("after the period: %v, %d held back, want 5", ok, held)
	}
}
