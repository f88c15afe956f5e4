package gateway

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/store"
)

// The cost of store.path (issue 13), side by side in one run: 100
// CleanSession=0 nodes, one message in flight each, with no store and with
// a bbolt store that fsyncs every group commit (in the benchmark's
// temporary folder, on the machine's disk):
//
//	go test -run='^$' -bench=BenchmarkStore -benchtime=2s ./gateway
//
// msg/s is the figure to compare (BENCHMARKS.md).

func storeBenchRig(b *testing.B, durable bool, nodes int) (*rig, []*net.UDPAddr) {
	b.Helper()
	var opts []Option
	if durable {
		st, err := store.Open(filepath.Join(b.TempDir(), "state.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() }) // after the rig's Shutdown
		opts = append(opts, WithStore(st))
	}
	r := newRig(b, Config{Predefined: map[uint16]string{1: "bench/up"}}, opts...)
	addrs := make([]*net.UDPAddr, nodes)
	for i := range addrs {
		addrs[i] = &net.UDPAddr{IP: net.IPv4(10, 2, byte(i/250), byte(i%250+1)), Port: 4000 + i/60000}
		r.send(addrs[i], &sn.Connect{Duration: 600, ClientID: fmt.Sprintf("bench-%d", i)})
		r.next()
	}
	return r, addrs
}

// storeModes runs fn for 100 and 1,000 nodes, each without and with the
// store, so that each pair is measured side by side.
func storeModes(b *testing.B, fn func(b *testing.B, durable bool, nodes int)) {
	b.Helper()
	for _, nodes := range []int{100, 1000} {
		for _, durable := range []bool{false, true} {
			name := "memory"
			if durable {
				name = "bolt"
			}
			b.Run(fmt.Sprintf("nodes=%d/%s", nodes, name), func(b *testing.B) { fn(b, durable, nodes) })
		}
	}
}

func reportRate(b *testing.B, start time.Time, n int) {
	b.Helper()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msg/s")
}

// Uplink QoS 1: nothing is stored per message (the broker's PUBACK is the
// node's safety), so the store costs nothing here.
func BenchmarkStoreUplinkQoS1(b *testing.B) {
	storeModes(b, func(b *testing.B, durable bool, nodes int) { //nolint:thelper // a benchmark body, not a helper
		r, addrs := storeBenchRig(b, durable, nodes)
		raw := encode(b, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 1, Data: make([]byte, 32)})
		b.ReportAllocs()
		start, n := time.Now(), 0
		for b.Loop() {
			for _, a := range addrs {
				r.tr.in <- memDatagram{b: raw, addr: a}
			}
			for range addrs {
				<-r.up.published
				<-r.tr.out
			}
			n += len(addrs)
		}
		reportRate(b, start, n)
	})
}

// Uplink QoS 2, the whole exchange: the MsgId with its upstream packet is
// stored before the broker gets it, as forwarded at the broker's PUBREC,
// and its deletion before PUBCOMP.
func BenchmarkStoreUplinkQoS2(b *testing.B) {
	storeModes(b, func(b *testing.B, durable bool, nodes int) { //nolint:thelper // a benchmark body, not a helper
		r, addrs := storeBenchRig(b, durable, nodes)
		byAddr := map[string]*net.UDPAddr{}
		for _, a := range addrs {
			byAddr[a.String()] = a
		}
		b.ReportAllocs()
		start, n := time.Now(), 0
		var msgID uint16
		for b.Loop() {
			msgID++
			if msgID == 0 {
				msgID = 1
			}
			raw := encode(b, &sn.Publish{QoS: sn.QoS2, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: msgID, Data: make([]byte, 32)})
			rel := encode(b, &sn.Pubrel{MsgID: msgID})
			for _, a := range addrs {
				r.tr.in <- memDatagram{b: raw, addr: a}
			}
			for range addrs {
				<-r.up.published
				d := <-r.tr.out // PUBREC
				r.tr.in <- memDatagram{b: rel, addr: byAddr[d.addr.String()]}
			}
			for range addrs {
				<-r.tr.out // PUBCOMP
			}
			n += len(addrs)
		}
		reportRate(b, start, n)
	})
}

// Downlink QoS 1: the broker's message is acknowledged only once stored
// (deliver returns after the commit), then the node gets it and PUBACKs.
func BenchmarkStoreDownlinkQoS1(b *testing.B) {
	storeModes(b, func(b *testing.B, durable bool, nodes int) { //nolint:thelper // a benchmark body, not a helper
		r, addrs := storeBenchRig(b, durable, nodes)
		byAddr := map[string]*net.UDPAddr{}
		delivers := make([]func(Message), len(addrs))
		for i, a := range addrs {
			byAddr[a.String()] = a
			r.send(a, &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicName: "bench/down"})
			r.next()
			delivers[i] = r.waitSession(fmt.Sprintf("bench-%d", i)).deliver
		}
		msg := Message{Topic: "bench/down", Payload: make([]byte, 32), QoS: 1}
		b.ReportAllocs()
		start, n := time.Now(), 0
		for b.Loop() {
			var wg sync.WaitGroup
			for _, d := range delivers {
				wg.Add(1)
				go func() { defer wg.Done(); d(msg) }()
			}
			for range addrs {
				out := <-r.tr.out
				var p sn.Publish
				if err := p.Unmarshal(out.b); err != nil {
					b.Fatal(err)
				}
				r.tr.in <- memDatagram{b: encode(b, &sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID}), addr: byAddr[out.addr.String()]}
			}
			wg.Wait()
			n += len(addrs)
		}
		reportRate(b, start, n)
	})
}
