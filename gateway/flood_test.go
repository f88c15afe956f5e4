package gateway

import (
	"bytes"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// One node floods a stalled broker with 20 MB of QoS 1 PUBLISHes: the
// gateway's memory stays flat (limits.max_pending_per_node), every
// PUBLISH beyond the bound is answered with congestion. The figure is in
// BENCHMARKS.md: go test -run TestFloodStalledBrokerMemoryFlat -v ./gateway
func TestFloodStalledBrokerMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("floods 20 MB")
	}
	r := newRig(t, Config{Predefined: map[uint16]string{1: "p/one"}})
	r.connect(nodeA, "flooder")
	gate := make(chan struct{})
	defer close(gate)
	r.up.mu.Lock()
	r.up.pubGate = gate
	r.up.mu.Unlock()
	var congestion atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	const n, size = 20000, 1000
	go func() {
		for {
			select {
			case d := <-r.tr.out:
				if p, err := sn.Unmarshal(d.b); err == nil {
					if pa, ok := p.(*sn.Puback); ok && pa.ReturnCode == sn.RejectedCongestion {
						congestion.Add(1)
					}
				}
			case <-stop:
				return
			}
		}
	}()
	before := heapInUse()
	payload := bytes.Repeat([]byte("x"), size)
	var peak uint64
	for i := range n {
		r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: uint16(i%65535 + 1), Data: payload})
		if i%5000 == 4999 {
			peak = max(peak, heapInUse())
		}
	}
	// Every PUBLISH is answered, but for those a full inbox dropped (a
	// slow machine).
	want := int64(n - DefaultMaxPendingPerNode)
	for deadline := time.Now().Add(30 * time.Second); congestion.Load()+int64(r.g.Stats().InboxDropped.Load()) < want; {
		if time.Now().After(deadline) {
			t.Fatalf("%d congestion answers and %d inbox drops, want %d together", congestion.Load(), r.g.Stats().InboxDropped.Load(), want)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter: there is no event to wait on
	}
	after := heapInUse()
	growth := int64(max(peak, after)) - int64(before)
	t.Logf("flood of %d x %d octets at a stalled broker: heap %d KiB before, %d KiB at peak, %d KiB after (growth %d KiB); %d answered congestion; %d bytes held for the uplink",
		n, size, before>>10, peak>>10, after>>10, growth>>10, congestion.Load(), r.g.PendingBytes())
	if growth > 16<<20 {
		t.Errorf("heap grew by %d MiB for a 20 MB flood", growth>>20)
	}
}
