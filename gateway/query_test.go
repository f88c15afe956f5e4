package gateway

import (
	"context"
	"fmt"
	"net"
	"testing"
	"testing/synctest"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// connectN connects nodes node-000 ... from addresses of their own.
func (r *rig) connectN(n int, keepAlive uint16) {
	r.t.Helper()
	for i := range n {
		from := &net.UDPAddr{IP: net.IPv4(10, 1, byte(i/250), byte(i%250+1)), Port: 6000}
		r.send(from, &sn.Connect{CleanSession: true, Duration: keepAlive, ClientID: fmt.Sprintf("node-%03d", i)})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	}
}

func TestQueryClientsPagesSortsAndFilters(t *testing.T) {
	r := newRig(t, Config{Shards: 4})
	r.connectN(120, 60)
	ctx := context.Background()

	p, err := r.g.QueryClients(ctx, NodeQuery{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 120 || len(p.Rows) != 50 || p.Rows[0].ClientID != "node-000" || p.Rows[49].ClientID != "node-049" {
		t.Fatalf("first page: total %d, %d rows, %s..%s", p.Total, len(p.Rows), p.Rows[0].ClientID, p.Rows[len(p.Rows)-1].ClientID)
	}
	p, _ = r.g.QueryClients(ctx, NodeQuery{Offset: 100, Limit: 50})
	if p.Total != 120 || len(p.Rows) != 20 || p.Rows[0].ClientID != "node-100" || p.Rows[19].ClientID != "node-119" {
		t.Fatalf("last page: total %d, %d rows", p.Total, len(p.Rows))
	}
	p, _ = r.g.QueryClients(ctx, NodeQuery{Sort: SortClientID, Desc: true, Limit: 3})
	if len(p.Rows) != 3 || p.Rows[0].ClientID != "node-119" || p.Rows[2].ClientID != "node-117" {
		t.Fatalf("descending: %+v", p.Rows)
	}
	p, _ = r.g.QueryClients(ctx, NodeQuery{Search: "NODE-07"})
	if p.Total != 10 || p.Rows[0].ClientID != "node-070" || p.Rows[0].State != "active" || p.Rows[0].Transport != "udp" {
		t.Fatalf("search: total %d, %+v", p.Total, p.Rows)
	}
	p, _ = r.g.QueryClients(ctx, NodeQuery{Search: "10.1.0.5:"}) // by address
	if p.Total != 1 || p.Rows[0].ClientID != "node-004" {
		t.Fatalf("search by address: %+v", p)
	}
	p, _ = r.g.QueryClients(ctx, NodeQuery{State: "asleep"})
	if p.Total != 0 || len(p.Rows) != 0 {
		t.Fatalf("state filter: %+v", p)
	}

	// Traffic orders the table: node-005 sends three PINGREQs.
	from := &net.UDPAddr{IP: net.IPv4(10, 1, 0, 6), Port: 6000}
	for range 3 {
		r.send(from, &sn.PingReq{})
		r.expect(&sn.PingResp{})
	}
	p, _ = r.g.QueryClients(ctx, NodeQuery{Sort: SortDatagramsIn, Desc: true, Limit: 2})
	if p.Rows[0].ClientID != "node-005" || p.Rows[0].Traffic.DatagramsIn != 4 {
		t.Fatalf("by datagrams: %+v", p.Rows[0])
	}
	// Ties keep ClientId order, whatever the direction.
	if p.Rows[1].ClientID != "node-000" {
		t.Fatalf("tie: %s", p.Rows[1].ClientID)
	}
	// A bad sort key is the default one; a huge limit is capped.
	p, _ = r.g.QueryClients(ctx, NodeQuery{Sort: "nope", Limit: 1 << 20})
	if len(p.Rows) != 120 || p.Rows[0].ClientID != "node-000" {
		t.Fatalf("defaults: %d rows", len(p.Rows))
	}
}

// A lost node is listed with its reason; a clean one is forgotten at once,
// which the same entry says.
func TestRecentlyGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 10, ClientID: "sleepy"})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		time.Sleep(16 * time.Second) // keep-alive 10 s plus 50%: lost (a fake clock)
		synctest.Wait()
		g := r.g.RecentlyGone()
		if len(g) != 1 || g[0].ClientID != "sleepy" || g[0].Event != "lost, forgotten" ||
			g[0].Reason != "keepalive_expired; clean session ended" || g[0].Addr != nodeA.String() {
			t.Fatalf("recently gone: %+v", g)
		}
	})
	var ring goneRing
	for i := range recentGoneSize + 5 {
		ring.add(GoneNode{ClientID: fmt.Sprint(i), Event: "forgotten"})
	}
	l := ring.list()
	if len(l) != recentGoneSize || l[0].ClientID != fmt.Sprint(recentGoneSize+4) || l[recentGoneSize-1].ClientID != "5" {
		t.Fatalf("ring: %d entries, newest %s, oldest %s", len(l), l[0].ClientID, l[len(l)-1].ClientID)
	}
}

// A page of the node table with 100,000 nodes: one pass over the
// sessions on each shard, a bounded heap, no copy of every node.
func BenchmarkQueryClients100k(b *testing.B) {
	r := newRig(b, Config{Shards: 8})
	ctx := context.Background()
	for i, s := range r.g.shards {
		if _, err := query(ctx, s, func() bool {
			for j := range 100_000 / len(r.g.shards) {
				id := fmt.Sprintf("node-%d-%05d", i, j)
				addr := &net.UDPAddr{IP: net.IPv4(10, byte(i), byte(j>>8), byte(j)), Port: 1884}
				sess := s.newSession(id, peer{addr: addr})
				sess.lastSeen = time.Unix(int64(j), 0)
				s.sessions[id] = sess
			}
			return true
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := r.g.QueryClients(ctx, NodeQuery{Sort: SortLastSeen, Desc: true, Offset: 50, Limit: 50})
		if err != nil || p.Total != 100_000 || len(p.Rows) != 50 {
			b.Fatalf("%d rows of %d: %v", len(p.Rows), p.Total, err)
		}
	}
}
