package main

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
)

func TestParseArgs(t *testing.T) {
	cfg, err := parseArgs([]string{"publish", "-n", "250", "-qos", "-1", "-rate", "50000", "-payload", "32", "-duration", "3s", "-window", "4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.scenario != "publish" || cfg.n != 250 || cfg.qos != -1 || cfg.rate != 50000 || cfg.payload != 32 || cfg.duration != 3*time.Second || cfg.window != 4 {
		t.Errorf("parsed %+v", cfg)
	}
	if !strings.HasPrefix(cfg.prefix, "bench/publish/") || !strings.HasPrefix(cfg.idPrefix, "b") {
		t.Errorf("default prefixes %q %q", cfg.prefix, cfg.idPrefix)
	}
	cfg, err = parseArgs([]string{"direct", "-broker", "mqtt://127.0.0.1:1999"}, io.Discard)
	if err != nil || cfg.broker != "127.0.0.1:1999" {
		t.Errorf("broker URL: %v %q", err, cfg.broker)
	}
	for _, bad := range [][]string{
		nil,
		{"nosuch"},
		{"publish", "-qos", "3"},
		{"fanout", "-qos", "-1"},
		{"publish", "-payload", "15"},
		{"publish", "-n", "0"},
		{"publish", "-window", "0"},
		{"publish", "-duration", "0s"},
		{"publish", "extra"},
		{"sleepy", "-sleep", "100000s"},
	} {
		if _, err := parseArgs(bad, io.Discard); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Summary() != nil || h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
	// 1..1000 µs: nearest rank p50 is 500 µs, p99 990 µs, max 1000 µs.
	for i := 1000; i >= 1; i-- {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	check := func(q float64, want time.Duration) {
		t.Helper()
		got := h.Quantile(q)
		if diff := float64(got-want) / float64(want); diff < -0.008 || diff > 0.008 {
			t.Errorf("q%.3f = %v, want %v within 0.8%%", q, got, want)
		}
	}
	check(0.5, 500*time.Microsecond)
	check(0.99, 990*time.Microsecond)
	check(1, 1000*time.Microsecond)
	check(0, time.Microsecond)
	s := h.Summary()
	if s.Count != 1000 || s.Max != 1 || s.Mean < 0.49 || s.Mean > 0.51 {
		t.Errorf("summary %+v", s)
	}
	// Small values are exact; one sample is every quantile.
	var one Histogram
	one.Record(77)
	if one.Quantile(0.01) != 77 || one.Quantile(0.99) != 77 {
		t.Errorf("one sample: %v %v", one.Quantile(0.01), one.Quantile(0.99))
	}
}

// The buckets against an exact nearest-rank percentile of random samples.
func TestHistogramAgainstSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]time.Duration, 20000)
	for i := range vals {
		vals[i] = time.Duration(r.ExpFloat64() * float64(3*time.Millisecond))
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		rank := int(float64(len(vals))*q+0.999999) - 1
		want, got := vals[rank], h.Quantile(q)
		if diff := float64(got-want) / float64(want); diff < -0.008 || diff > 0.008 {
			t.Errorf("q%v = %v, exact %v", q, got, want)
		}
	}
	if h.Quantile(1) != vals[len(vals)-1] {
		t.Errorf("max %v, want %v", h.Quantile(1), vals[len(vals)-1])
	}
}

func TestBuckets(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<20; v += 1 + v/50 {
		b := bucketOf(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		prev = b
		if mid := bucketValue(b); v >= 128 && (float64(mid-v) > float64(v)/128 || float64(v-mid) > float64(v)/128) {
			t.Fatalf("bucketValue(bucketOf(%d)) = %d", v, mid)
		}
	}
	if b := bucketOf(1<<63 - 1); b != histBuckets-1 {
		t.Errorf("largest value in bucket %d of %d", b, histBuckets)
	}
}

func TestTrackerLossAndDuplicates(t *testing.T) {
	epoch := time.Now()
	tr := NewTracker(3, epoch)
	p := make([]byte, 32)
	deliver := func(src, seq uint32) bool {
		fillPayload(p, src, seq, time.Since(epoch))
		return tr.Deliver(p)
	}
	for seq := uint32(0); seq < 100; seq++ {
		if seq == 40 || seq == 41 {
			continue // lost
		}
		if deliver(0, seq) {
			t.Fatalf("first delivery of %d counted as duplicate", seq)
		}
	}
	if first, again := deliver(0, 7), deliver(0, 7); !first || !again {
		t.Error("duplicate not detected")
	}
	deliver(1, 1000) // sparse sequence numbers grow the set
	deliver(5, 0)    // unknown source
	tr.Deliver([]byte("short"))
	if tr.Unique() != 99 || tr.Duplicates() != 2 || tr.foreign.Load() != 2 {
		t.Errorf("unique %d dups %d foreign %d", tr.Unique(), tr.Duplicates(), tr.foreign.Load())
	}
	if tr.Has(0, 40) || !tr.Has(0, 42) || !tr.Has(1, 1000) || tr.Has(1, 999) || tr.Has(9, 0) {
		t.Error("Has")
	}
	// DeliverAs counts per receiver: the same message at two nodes is two
	// deliveries, twice at one node a duplicate.
	fa := NewTracker(2, epoch)
	fillPayload(p, 0, 3, 0)
	if fa.DeliverAs(0, p) || fa.DeliverAs(1, p) || !fa.DeliverAs(1, p) {
		t.Error("DeliverAs")
	}
	var res Result
	fillDelivery(&res, tr, 100, sendWindow{epoch: epoch, start: epoch})
	if res.Lost != 1 || res.Delivered != 99 || res.Duplicates != 2 || res.E2ELatency == nil {
		t.Errorf("fillDelivery: %+v", res)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	p := make([]byte, payloadHeader)
	fillPayload(p, 7, 1<<31, 1500*time.Millisecond)
	src, seq, sent, ok := parsePayload(p)
	if !ok || src != 7 || seq != 1<<31 || sent != 1500*time.Millisecond {
		t.Errorf("got %d %d %v %v", src, seq, sent, ok)
	}
	if _, _, _, ok := parsePayload(p[:15]); ok {
		t.Error("short payload parsed")
	}
}

func TestParsers(t *testing.T) {
	rss, err := parseVmRSS("Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t   40424 kB\n")
	if err != nil || rss != 40424 {
		t.Errorf("VmRSS %d %v", rss, err)
	}
	d := parseDrops("# HELP x\nmqttsn_dropped_total{reason=\"inbox_full\"} 12\nmqttsn_dropped_total{reason=\"qos_minus_one\"} 3e+00\nmqttsn_nodes{state=\"active\"} 5\n")
	if d["inbox_full"] != 12 || d["qos_minus_one"] != 3 || len(d) != 2 {
		t.Errorf("drops %v", d)
	}
	if rate(500, 2*time.Second) != 250 || rate(1, 0) != 0 {
		t.Error("rate")
	}
	var b bytes.Buffer
	writeTable(&b, []*Result{{Scenario: "publish", Label: "x", Clients: 1, QoS: 1, OfferedRate: 10, Lost: 2,
		AckLatency: &Latency{P50: 0.5, P99: 12.345, Max: 150}}})
	if !strings.Contains(b.String(), "| x | publish | 1 | 1 | max | 10 |") || !strings.Contains(b.String(), "0.50 / 12.3 / 150") {
		t.Errorf("table:\n%s", b.String())
	}
}

func TestAppendPublish(t *testing.T) {
	got := appendPublish(nil, []byte("a/b"), 1, 0x0102, []byte{9, 9})
	want := []byte{0x32, 10, 0, 3, 'a', '/', 'b', 1, 2, 0, 9, 9}
	if !bytes.Equal(got, want) {
		t.Errorf("% x, want % x", got, want)
	}
	if v := appendVBI(nil, 321); !bytes.Equal(v, []byte{0xC1, 0x02}) {
		t.Errorf("VBI % x", v)
	}
}

func TestHelpAndVersionOnStdout(t *testing.T) {
	for _, arg := range []string{"--help", "--version"} {
		var o, e strings.Builder
		if code := run([]string{arg}, &o, &e); code != 0 || o.Len() == 0 || e.Len() != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", arg, code, o.String(), e.String())
		}
	}
}

// A small run against a real gateway and broker, with each node on its own
// socket and with nodes behind simulated forwarders, in both bridging
// modes: every node connects, every acknowledged message arrives, and
// the sleepers get what was published while they slept.
func TestScenariosThroughForwarders(t *testing.T) {
	for _, mode := range []string{"", testbroker.Aggregating} {
		for _, k := range []int{1, 4} {
			name := "transparent"
			if mode != "" {
				name = mode
			}
			t.Run(name+"/nodes-per-socket-"+strconv.Itoa(k), func(t *testing.T) {
				t.Parallel()
				tg := testbroker.EmbeddedTarget(t)
				tg.Mode = mode
				g := testgw.Start(t, tg, gateway.Config{})
				gw := g.Addrs()[0].String()
				run := func(args ...string) *Result {
					t.Helper()
					args = append(args, "-gateway", gw, "-broker", tg.URL, "-nodes-per-socket", strconv.Itoa(k), "-retry", "2s", "-drain", "5s")
					cfg, err := parseArgs(args, io.Discard)
					if err != nil {
						t.Fatal(err)
					}
					res, err := scenario(cfg.scenario)(context.Background(), cfg)
					if err != nil {
						t.Fatalf("%s: %v", cfg.scenario, err)
					}
					res.finish(cfg)
					var out strings.Builder
					res.print(&out)
					t.Log(out.String())
					wantSockets := (cfg.n + k - 1) / k
					if res.Connected != cfg.n || res.ConnectFailed != 0 || res.ErrorCount != 0 || res.Sockets != wantSockets {
						t.Errorf("%s: connected %d, failed %d, errors %v, sockets %d (want %d)", cfg.scenario, res.Connected, res.ConnectFailed, res.Errors, res.Sockets, wantSockets)
					}
					if res.ForwarderDrops != 0 || res.ForwarderStray != 0 {
						t.Errorf("%s: forwarders dropped %d, %d stray", cfg.scenario, res.ForwarderDrops, res.ForwarderStray)
					}
					return res
				}
				// The gateway runs in this process: its memory is read there.
				res := run("connect", "-n", "10", "-rate", "1000", "-hold", "0s", "-sleepers", "3", "-cycles", "2", "-settle", "100ms", "-qos", "1",
					"-gateway-pid", strconv.Itoa(os.Getpid()))
				if res.RSSBeforeKiB == 0 || res.RSSAfterKiB == 0 {
					t.Errorf("connect: gateway RSS not read (%d KiB before, %d KiB after)", res.RSSBeforeKiB, res.RSSAfterKiB)
				}
				if res.Acked != 6 || res.Delivered != 6 || res.Lost != 0 || res.Duplicates != 0 {
					t.Errorf("sleepers: acked %d, delivered %d, lost %d, dup %d; want 6, 6, 0, 0", res.Acked, res.Delivered, res.Lost, res.Duplicates)
				}
				res = run("publish", "-n", "10", "-qos", "1", "-count", "20")
				if res.Offered != 200 || res.Acked != 200 || res.Delivered != 200 || res.Lost != 0 || res.LostAcked != 0 || res.Duplicates != 0 {
					t.Errorf("publish: offered %d, acked %d, delivered %d, lost %d (acked %d), dup %d; want 200 of each, 0 lost",
						res.Offered, res.Acked, res.Delivered, res.Lost, res.LostAcked, res.Duplicates)
				}
			})
		}
	}
}
