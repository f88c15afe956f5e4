package main

import (
	"encoding/binary"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Histogram records durations in log-linear buckets: values below 128 ns
// exactly, larger ones with a relative error under 1/128 (0.8%). It is
// safe for concurrent use and costs a few atomic adds per sample, so
// thousands of node goroutines can share one.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
}

const (
	histSubBits = 7 // 128 linear sub-buckets per power of two
	histSub     = 1 << histSubBits
	histBuckets = histSub + (63-histSubBits)*histSub/2 // values up to 1<<63-1
)

// bucketOf maps a non-negative value to its bucket.
func bucketOf(v int64) int {
	if v < histSub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits // >= 1
	top := int(v >> shift)                       // in [64, 127]
	return histSub + (shift-1)*histSub/2 + (top - histSub/2)
}

// bucketValue is the midpoint of bucket i (the value itself below 128).
func bucketValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	j := i - histSub
	shift := j/(histSub/2) + 1
	top := int64(j%(histSub/2) + histSub/2)
	lo := top << shift
	return lo + (int64(1)<<shift)/2
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Quantile returns the value at quantile q (0..1) by nearest rank: the
// smallest recorded value such that at least q of the samples are at or
// below it. The maximum is exact; other values are bucket midpoints,
// never above the maximum.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	var seen uint64
	maxV := h.max.Load()
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketValue(i), maxV))
		}
	}
	return time.Duration(maxV)
}

// Latency is a latency summary in milliseconds, as reported.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary returns the latency summary, or nil when nothing was recorded.
func (h *Histogram) Summary() *Latency {
	n := h.n.Load()
	if n == 0 {
		return nil
	}
	return &Latency{
		Count: n,
		Mean:  ms(time.Duration(h.sum.Load() / int64(n))),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(time.Duration(h.max.Load())),
	}
}

// seqSet is a growable bitset of sequence numbers.
type seqSet []uint64

// add sets bit seq and reports whether it was already set.
func (s *seqSet) add(seq uint32) (dup bool) {
	w := int(seq / 64)
	if w >= len(*s) {
		n := max(2*len(*s), w+1)
		ns := make(seqSet, n)
		copy(ns, *s)
		*s = ns
	}
	bit := uint64(1) << (seq % 64)
	if (*s)[w]&bit != 0 {
		return true
	}
	(*s)[w] |= bit
	return false
}

func (s seqSet) has(seq uint32) bool {
	w := int(seq / 64)
	return w < len(s) && s[w]&(uint64(1)<<(seq%64)) != 0
}

// Tracker counts deliveries per source (a node, a direct publisher, or the
// one MQTT publisher of a fan-out) by the sequence number each message
// carries: unique deliveries, duplicates, and end-to-end latency.
type Tracker struct {
	mu      sync.Mutex
	sets    []seqSet
	unique  atomic.Uint64
	dups    atomic.Uint64
	foreign atomic.Uint64 // undecodable payloads, or from an unknown source
	first   atomic.Int64  // unix ns of the first and last delivery
	last    atomic.Int64
	E2E     Histogram
	epoch   time.Time
}

// NewTracker tracks sources 0..n-1; timestamps in payloads are relative to
// epoch.
func NewTracker(n int, epoch time.Time) *Tracker {
	return &Tracker{sets: make([]seqSet, n), epoch: epoch}
}

// Deliver accounts one delivered payload and reports whether it was a
// duplicate. A payload not made by this run is counted as foreign.
func (t *Tracker) Deliver(payload []byte) (dup bool) {
	return t.DeliverAs(-1, payload)
}

// DeliverAs is Deliver for a message counted per receiver rather than per
// source: src replaces the source in the payload (a fan-out delivers one
// publisher's messages to many nodes). A negative src keeps the payload's.
func (t *Tracker) DeliverAs(src int, payload []byte) (dup bool) {
	psrc, seq, sent, ok := parsePayload(payload)
	if src < 0 {
		src = int(psrc)
	}
	if !ok || src >= len(t.sets) {
		t.foreign.Add(1)
		return false
	}
	now := time.Since(t.epoch)
	t.mu.Lock()
	dup = t.sets[src].add(seq)
	t.mu.Unlock()
	if dup {
		t.dups.Add(1)
		return true
	}
	t.unique.Add(1)
	t.E2E.Record(now - sent)
	ns := int64(now)
	t.first.CompareAndSwap(0, ns)
	for {
		l := t.last.Load()
		if ns <= l || t.last.CompareAndSwap(l, ns) {
			break
		}
	}
	return false
}

// Has reports whether (src, seq) was delivered.
func (t *Tracker) Has(src int, seq uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return src < len(t.sets) && t.sets[src].has(seq)
}

// Unique is the number of distinct messages delivered.
func (t *Tracker) Unique() uint64 { return t.unique.Load() }

// Duplicates is the number of deliveries of a message already delivered.
func (t *Tracker) Duplicates() uint64 { return t.dups.Load() }

// LastDelivery is the time of the last unique delivery since the epoch.
func (t *Tracker) LastDelivery() time.Duration { return time.Duration(t.last.Load()) }

// payloadHeader is the size of the header every benchmark payload starts
// with: source index, sequence number, send time (ns since the run epoch).
const payloadHeader = 16

// fillPayload writes the header into b (len(b) >= payloadHeader); the rest
// of b is left as it is (padding).
func fillPayload(b []byte, src, seq uint32, sent time.Duration) {
	binary.BigEndian.PutUint32(b[0:4], src)
	binary.BigEndian.PutUint32(b[4:8], seq)
	binary.BigEndian.PutUint64(b[8:16], uint64(sent))
}

func parsePayload(b []byte) (src, seq uint32, sent time.Duration, ok bool) {
	if len(b) < payloadHeader {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8]),
		time.Duration(binary.BigEndian.Uint64(b[8:16])), true
}

// rate is count per second over d, 0 when d is not positive.
func rate(count uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(count)/d.Seconds()*10) / 10
}
