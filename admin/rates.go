package admin

import (
	"sync"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// Chart window and sampling of the status page's rate charts.
const (
	chartWindow           = time.Hour
	DefaultSampleInterval = 10 * time.Second
)

// sample is the gateway's message and drop counters at one moment.
type sample struct {
	at    time.Time
	up    [4]uint64 // messages node to broker, by QoS+1 (QoS -1 at 0)
	down  [3]uint64 // messages broker to node, by QoS
	drops []uint64  // by dropCounts' reasons, in its order
}

func readSample(st *gateway.Stats, at time.Time) sample {
	s := sample{at: at}
	s.up[0] = st.QoSMinusOneOut.Load()
	for q := 1; q < 4; q++ {
		s.up[q] = st.PublishesUpQoS[q].Load()
		s.down[q-1] = st.PublishesDownQoS[q].Load()
	}
	for _, d := range dropCounts(st) {
		s.drops = append(s.drops, d.v)
	}
	return s
}

// sampler keeps the samples of the last chartWindow in a ring, taken every
// interval by the admin listener's own goroutine. Sampling reads atomic
// counters only: it costs the datagram path nothing.
type sampler struct {
	stats    *gateway.Stats
	interval time.Duration

	mu   sync.Mutex
	ring []sample // capacity: one window of samples, plus one
	next int
	n    int
}

func newSampler(st *gateway.Stats, interval time.Duration) *sampler {
	size := int(chartWindow/interval) + 1
	return &sampler{stats: st, interval: interval, ring: make([]sample, size)}
}

// take records the counters as of now.
func (s *sampler) take(now time.Time) {
	smp := readSample(s.stats, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = smp
	s.next = (s.next + 1) % len(s.ring)
	s.n = min(s.n+1, len(s.ring))
}

// window returns the samples within chartWindow of now, oldest first,
// followed by the counters as of now, so a chart always ends at the
// present.
func (s *sampler) window(now time.Time) []sample {
	s.mu.Lock()
	out := make([]sample, 0, s.n+1)
	for i := s.n; i >= 1; i-- {
		smp := s.ring[(s.next+len(s.ring)-i)%len(s.ring)]
		if now.Sub(smp.at) <= chartWindow {
			out = append(out, smp)
		}
	}
	s.mu.Unlock()
	if len(out) == 0 || now.Sub(out[len(out)-1].at) > 0 {
		out = append(out, readSample(s.stats, now))
	}
	return out
}

// run samples every interval until quit is closed.
func (s *sampler) run(quit <-chan struct{}) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case now := <-t.C:
			s.take(now)
		}
	}
}

// series is one line of a chart: a rate per second between samples.
type series struct {
	Name   string
	Color  string
	Points []point
	Last   float64 // the latest rate
	Total  uint64  // what was counted over the window
}

// point is the average rate between two samples.
type point struct {
	from, at time.Time
	rate     float64
}

// rates turns counter values (one per sample) into rates per second.
func rates(samples []sample, value func(sample) uint64) ([]point, uint64) {
	var pts []point
	var total uint64
	for i := 1; i < len(samples); i++ {
		dt := samples[i].at.Sub(samples[i-1].at).Seconds()
		a, b := value(samples[i-1]), value(samples[i])
		if dt <= 0 || b < a {
			continue
		}
		total += b - a
		pts = append(pts, point{from: samples[i-1].at, at: samples[i].at, rate: float64(b-a) / dt})
	}
	return pts, total
}

// seriesColors are distinguishable on white and for most colour-blind
// readers (Okabe-Ito).
var seriesColors = [...]string{"#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#f0e442", "#000000"} //nolint:gochecknoglobals // constant table

func newSeries(i int, name string, samples []sample, value func(sample) uint64) series {
	pts, total := rates(samples, value)
	s := series{Name: name, Color: seriesColors[i%len(seriesColors)], Points: pts, Total: total}
	if len(pts) > 0 {
		s.Last = pts[len(pts)-1].rate
	}
	return s
}

// charts builds the status page's three charts from the window's samples.
func charts(samples []sample, now time.Time) []chart {
	in := chart{Title: "Messages in (node to broker), per QoS", ID: "chart-in"}
	for q := range 4 {
		in.Series = append(in.Series, newSeries(q, "QoS "+qosLabels[q], samples, func(s sample) uint64 { return s.up[q] }))
	}
	out := chart{Title: "Messages out (broker to node), per QoS", ID: "chart-out"}
	for q := range 3 {
		out.Series = append(out.Series, newSeries(q+1, "QoS "+qosLabels[q+1], samples, func(s sample) uint64 { return s.down[q] }))
	}
	drops := chart{Title: "Drops by reason", ID: "chart-drops", OnlyNonZero: true}
	for i, d := range dropCounts(&gateway.Stats{}) {
		s := newSeries(i, d.reason, samples, func(s sample) uint64 {
			if i < len(s.drops) {
				return s.drops[i]
			}
			return 0
		})
		if s.Total > 0 {
			drops.Series = append(drops.Series, s)
		}
	}
	cs := []chart{in, out, drops}
	for i := range cs {
		cs[i].now = now
	}
	return cs
}
