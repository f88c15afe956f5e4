package gateway

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// sleepingSubscriber connects id from addr, subscribes to filter at QoS 1
// and puts it asleep.
func (r *rig) sleepingSubscriber(addr net.Addr, id, filter string) {
	r.t.Helper()
	r.send(addr, &sn.Connect{CleanSession: true, Duration: 600, ClientID: id})
	r.expect(&sn.Connack{ReturnCode: sn.Accepted})
	r.send(addr, &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicName: filter})
	if sa, ok := r.next().(*sn.Suback); !ok || sa.ReturnCode != sn.Accepted {
		r.t.Fatalf("SUBACK %+v", sa)
	}
	r.send(addr, &sn.Disconnect{Duration: 3600, HasDuration: true})
	r.expect(&sn.Disconnect{})
}

// The largest holder of the sleep-buffer budget pays even when it belongs
// to another shard than the node receiving: that shard is asked, and
// evicts from its own session. synctest makes every step settle (both
// shards idle) before the next message, so the budget never runs over.
func TestBudgetLargestHolderOnAnotherShardPays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const budget = 4000
		r := newRig(t, Config{Shards: 2, MaxBufferedBytes: budget})
		hog, victim := "hog", ""
		for i := 0; victim == ""; i++ {
			if id := "victim-" + strconv.Itoa(i); r.g.shardFor(id) != r.g.shardFor(hog) {
				victim = id
			}
		}
		r.sleepingSubscriber(&net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}, hog, "h")
		r.sleepingSubscriber(&net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 5000}, victim, "v")
		buffered := func(id string) int {
			t.Helper()
			ci, ok, err := r.g.Client(context.Background(), id)
			if err != nil || !ok {
				t.Fatalf("Client(%q): %v %v", id, ok, err)
			}
			return ci.Buffered
		}
		payload := []byte(strings.Repeat("p", 100)) // 1 + 100 + 32 = 133 bytes each
		const size = 133

		// The hog alone fills the budget: it pays for itself.
		for range 40 {
			r.up.session(hog).deliver(Message{Topic: "h", Payload: payload, QoS: 1})
			synctest.Wait()
		}
		held := budget / size
		if n := buffered(hog); n != held || r.g.budget.Used() > budget {
			t.Fatalf("hog holds %d (want %d), budget used %d of %d", n, held, r.g.budget.Used(), budget)
		}
		st := r.g.Stats()
		if d := st.BufferDroppedBudget.Load(); d != uint64(40-held) {
			t.Fatalf("budget drops %d, want %d", d, 40-held)
		}

		// The victim, on the other shard: the hog's shard evicts for it.
		for range 10 {
			r.up.session(victim).deliver(Message{Topic: "v", Payload: payload, QoS: 1})
			synctest.Wait()
			if used := r.g.budget.Used(); used > budget {
				t.Fatalf("budget used %d of %d once both shards were idle", used, budget)
			}
		}
		if n := buffered(victim); n != 10 {
			t.Fatalf("victim holds %d of 10", n)
		}
		if n := buffered(hog); n != held-10 {
			t.Fatalf("hog holds %d, want %d", n, held-10)
		}
		if d, all := st.BufferDroppedBudget.Load(), st.BufferDropped.Load(); d != uint64(40-held+10) || all != d {
			t.Fatalf("budget drops %d (all drops %d), want %d", d, all, 40-held+10)
		}
	})
}
