package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Result is what one run reports; --json prints it.
type Result struct {
	Scenario   string  `json:"scenario"`
	Label      string  `json:"label,omitempty"`
	Clients    int     `json:"clients"`
	QoS        int     `json:"qos"`
	Payload    int     `json:"payload_bytes"`
	Window     int     `json:"window,omitempty"`
	RateTarget float64 `json:"rate_target"` // what was asked for; 0: as fast as possible
	DurationS  float64 `json:"duration_s"`  // the load phase, measured

	Offered         uint64  `json:"offered"`
	OfferedRate     float64 `json:"offered_rate"`
	Acked           uint64  `json:"acked"`
	AckedRate       float64 `json:"acked_rate"`
	Rejected        uint64  `json:"rejected"`
	Unacked         uint64  `json:"unacked"`
	Retransmissions uint64  `json:"retransmissions"`
	Expected        uint64  `json:"expected"`
	Delivered       uint64  `json:"delivered"`
	DeliveredRate   float64 `json:"delivered_rate"`
	Lost            int64   `json:"lost"`       // expected - delivered
	LostAcked       uint64  `json:"lost_acked"` // acknowledged to the sender, never delivered
	Duplicates      uint64  `json:"duplicates"`
	Foreign         uint64  `json:"foreign,omitempty"`
	Late            uint64  `json:"late,omitempty"` // sleepy: delivered in a later wake-up than published for

	AckLatency     *Latency `json:"ack_latency,omitempty"`
	E2ELatency     *Latency `json:"e2e_latency,omitempty"`
	ConnectLatency *Latency `json:"connect_latency,omitempty"`
	WakeLatency    *Latency `json:"wake_latency,omitempty"`

	NodesPerSocket int    `json:"nodes_per_socket,omitempty"` // > 1: nodes behind simulated forwarders
	Sockets        int    `json:"sockets,omitempty"`          // UDP sockets the nodes used
	ForwarderDrops uint64 `json:"forwarder_drops,omitempty"`  // messages to a node dropped at its full forwarder inbox
	ForwarderStray uint64 `json:"forwarder_stray,omitempty"`  // datagrams at a forwarder for no known node
	Sleepers       int    `json:"sleepers,omitempty"`         // connect: nodes that also sleep and wake in cycles

	Connected       int     `json:"connected,omitempty"`
	ConnectFailed   int     `json:"connect_failed,omitempty"`
	TimeToConnected float64 `json:"time_to_all_connected_s,omitempty"`

	RSSBeforeKiB uint64  `json:"gateway_rss_before_kib,omitempty"`
	RSSAfterKiB  uint64  `json:"gateway_rss_after_kib,omitempty"`
	PerNodeKiB   float64 `json:"gateway_kib_per_node,omitempty"`

	GatewayDrops    map[string]float64 `json:"gateway_drops,omitempty"`
	UDPRcvbufErrors uint64             `json:"udp_rcvbuf_errors"` // kernel, whole machine, during the run
	Errors          []string           `json:"errors,omitempty"`
	ErrorCount      int                `json:"error_count,omitempty"`

	// probes taken at the start
	snmp0  udpCounters
	drops0 map[string]float64
	links  *linkSet
}

func newResult(cfg *config) *Result {
	r := &Result{Scenario: cfg.scenario, Label: cfg.label, Clients: cfg.n, QoS: cfg.qos,
		Payload: cfg.payload, RateTarget: cfg.rate, links: newLinkSet(cfg)}
	if cfg.nodesPerSocket > 1 && cfg.scenario != "direct" {
		r.NodesPerSocket = cfg.nodesPerSocket
	}
	if cfg.qos > 0 && (cfg.scenario == "publish" || cfg.scenario == "direct") {
		r.Window = cfg.window
	}
	r.snmp0 = readUDPCounters()
	if cfg.admin != "" {
		r.drops0, _ = gatewayDrops(cfg.admin)
	}
	if cfg.gatewayPID > 0 {
		r.RSSBeforeKiB, _ = vmRSS(cfg.gatewayPID)
	}
	return r
}

// errorf records an error; the first few are kept verbatim.
func (r *Result) errorf(format string, args ...any) {
	r.ErrorCount++
	if len(r.Errors) < 5 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	}
}

// finish takes the closing probes and derives the totals.
func (r *Result) finish(cfg *config) {
	s := readUDPCounters()
	r.UDPRcvbufErrors = s.rcvbufErrors - r.snmp0.rcvbufErrors
	if r.Scenario != "direct" {
		r.Sockets = r.links.sockets(r.Clients)
	}
	r.ForwarderDrops, r.ForwarderStray = r.links.drops.Load(), r.links.stray.Load()
	if cfg.admin != "" && r.drops0 != nil {
		if d, err := gatewayDrops(cfg.admin); err == nil {
			for k, v := range d {
				if v -= r.drops0[k]; v > 0 {
					if r.GatewayDrops == nil {
						r.GatewayDrops = map[string]float64{}
					}
					r.GatewayDrops[k] = v
				}
			}
		}
	}
}

func (r *Result) print(w io.Writer) {
	title := r.Scenario
	if r.Label != "" {
		title += " (" + r.Label + ")"
	}
	fmt.Fprintf(w, "== %s: %d clients", title, r.Clients)
	if r.Scenario != "connect" {
		fmt.Fprintf(w, ", QoS %d, %d-byte payload", r.QoS, r.Payload)
	}
	if r.Window > 0 {
		fmt.Fprintf(w, ", window %d", r.Window)
	}
	if r.RateTarget > 0 {
		fmt.Fprintf(w, ", target %.0f/s", r.RateTarget)
	}
	fmt.Fprintf(w, ", %.1f s\n", r.DurationS)
	if r.Connected > 0 || r.ConnectFailed > 0 {
		fmt.Fprintf(w, "  connected      %d (failed %d)", r.Connected, r.ConnectFailed)
		if r.TimeToConnected > 0 {
			fmt.Fprintf(w, ", all connected after %.2f s", r.TimeToConnected)
		}
		fmt.Fprintln(w)
	}
	if r.NodesPerSocket > 1 {
		fmt.Fprintf(w, "  forwarders     %d sockets, %d nodes each; %d messages dropped at full node inboxes, %d stray datagrams\n",
			r.Sockets, r.NodesPerSocket, r.ForwarderDrops, r.ForwarderStray)
	}
	if r.RSSAfterKiB > 0 {
		fmt.Fprintf(w, "  gateway RSS    %d KiB -> %d KiB: %.1f KiB per node\n", r.RSSBeforeKiB, r.RSSAfterKiB, r.PerNodeKiB)
	}
	if r.Sleepers > 0 {
		fmt.Fprintf(w, "  sleepers       %d of the nodes sleep and wake in cycles, one message each per cycle\n", r.Sleepers)
	}
	if r.Scenario != "connect" || r.Sleepers > 0 {
		fmt.Fprintf(w, "  offered        %d (%.0f/s)\n", r.Offered, r.OfferedRate)
		if r.QoS > 0 || r.Scenario == "fanout" || r.Scenario == "sleepy" || r.Sleepers > 0 {
			fmt.Fprintf(w, "  acknowledged   %d (%.0f/s), rejected %d, unacked %d, retransmissions %d\n", r.Acked, r.AckedRate, r.Rejected, r.Unacked, r.Retransmissions)
		}
		fmt.Fprintf(w, "  delivered      %d of %d expected (%.0f/s)\n", r.Delivered, r.Expected, r.DeliveredRate)
		fmt.Fprintf(w, "  lost           %d (acknowledged but lost: %d), duplicates %d\n", r.Lost, r.LostAcked, r.Duplicates)
		if r.Late > 0 {
			fmt.Fprintf(w, "  late           %d (delivered at a later wake-up)\n", r.Late)
		}
	}
	for _, l := range []struct {
		name string
		l    *Latency
	}{{"connect", r.ConnectLatency}, {"ack", r.AckLatency}, {"end-to-end", r.E2ELatency}, {"wake", r.WakeLatency}} {
		if l.l != nil {
			fmt.Fprintf(w, "  %-14s p50 %.3f ms  p99 %.3f ms  max %.3f ms  (n=%d)\n", l.name+" latency", l.l.P50, l.l.P99, l.l.Max, l.l.Count)
		}
	}
	if len(r.GatewayDrops) > 0 {
		fmt.Fprintf(w, "  gateway drops  %v\n", r.GatewayDrops)
	}
	if r.UDPRcvbufErrors > 0 {
		fmt.Fprintf(w, "  kernel UDP receive-buffer drops (machine-wide) %d\n", r.UDPRcvbufErrors)
	}
	if r.ErrorCount > 0 {
		fmt.Fprintf(w, "  errors         %d, e.g. %s\n", r.ErrorCount, strings.Join(r.Errors, "; "))
	}
}

// udpCounters are the machine's UDP counters from /proc/net/snmp.
type udpCounters struct{ rcvbufErrors uint64 }

func readUDPCounters() udpCounters {
	f, err := os.Open("/proc/net/snmp")
	if err != nil {
		return udpCounters{}
	}
	defer func() { _ = f.Close() }()
	var head []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = fields
			continue
		}
		for i, h := range head {
			if h == "RcvbufErrors" && i < len(fields) {
				v, _ := strconv.ParseUint(fields[i], 10, 64)
				return udpCounters{rcvbufErrors: v}
			}
		}
	}
	return udpCounters{}
}

// vmRSS reads a process's resident set size in KiB.
func vmRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// gatewayDrops reads mqttsn_dropped_total{reason} from the gateway's
// /metrics.
func gatewayDrops(admin string) (map[string]float64, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseDrops(string(b)), nil
}

func parseDrops(metrics string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(metrics, "\n") {
		rest, ok := strings.CutPrefix(line, "mqttsn_dropped_total{")
		if !ok {
			continue
		}
		i := strings.Index(rest, "reason=\"")
		if i < 0 {
			continue
		}
		reason := rest[i+len("reason=\""):]
		j := strings.IndexByte(reason, '"')
		k := strings.LastIndexByte(line, ' ')
		if j < 0 || k < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[k+1:], 64)
		if err != nil {
			continue
		}
		out[reason[:j]] += v
	}
	return out
}

// report prints a markdown table of JSON results.
func report(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "usage: mqttsn-bench report FILE.json...")
		return 2
	}
	var rs []*Result
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			return 1
		}
		rs = append(rs, &r)
	}
	writeTable(stdout, rs)
	return 0
}

func writeTable(w io.Writer, rs []*Result) {
	fmt.Fprintln(w, "| run | scenario | clients | QoS | target/s | offered/s | acked/s | delivered/s | lost | dup | ack p50 / p99 / max ms | e2e p50 / p99 / max ms | other |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
	for _, r := range rs {
		target := "max"
		if r.RateTarget > 0 {
			target = fmt.Sprintf("%.0f", r.RateTarget)
		}
		var other []string
		switch {
		case r.Scenario == "connect":
			other = append(other, fmt.Sprintf("%d connected, %d failed, all in %.2f s", r.Connected, r.ConnectFailed, r.TimeToConnected))
		case r.ConnectFailed > 0:
			other = append(other, fmt.Sprintf("%d of %d failed to connect", r.ConnectFailed, r.Clients))
		}
		if r.NodesPerSocket > 1 {
			other = append(other, fmt.Sprintf("behind %d forwarders of %d nodes", r.Sockets, r.NodesPerSocket))
		}
		if r.Sleepers > 0 {
			other = append(other, fmt.Sprintf("%d of them sleepy", r.Sleepers))
		}
		if r.ForwarderDrops > 0 || r.ForwarderStray > 0 {
			other = append(other, fmt.Sprintf("forwarders dropped %d, %d stray", r.ForwarderDrops, r.ForwarderStray))
		}
		if r.ConnectLatency != nil && (r.Scenario == "connect" || r.Scenario == "sleepy") {
			other = append(other, fmt.Sprintf("connect p50/p99/max %s ms", lat(r.ConnectLatency)))
		}
		if r.PerNodeKiB > 0 {
			other = append(other, fmt.Sprintf("gateway %.1f KiB/node (RSS %d→%d KiB)", r.PerNodeKiB, r.RSSBeforeKiB, r.RSSAfterKiB))
		}
		if r.WakeLatency != nil {
			other = append(other, fmt.Sprintf("wake p50/p99/max %s ms", lat(r.WakeLatency)))
		}
		if r.LostAcked > 0 {
			other = append(other, fmt.Sprintf("%d acked but lost", r.LostAcked))
		}
		if r.Unacked > 0 || r.Rejected > 0 {
			other = append(other, fmt.Sprintf("%d unacked, %d rejected", r.Unacked, r.Rejected))
		}
		if r.Late > 0 {
			other = append(other, fmt.Sprintf("%d late", r.Late))
		}
		if len(r.GatewayDrops) > 0 {
			keys := make([]string, 0, len(r.GatewayDrops))
			for k := range r.GatewayDrops {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				other = append(other, fmt.Sprintf("gateway dropped %.0f (%s)", r.GatewayDrops[k], k))
			}
		}
		if r.UDPRcvbufErrors > 0 {
			other = append(other, fmt.Sprintf("kernel UDP rcvbuf drops %d", r.UDPRcvbufErrors))
		}
		if r.ErrorCount > 0 {
			other = append(other, fmt.Sprintf("%d errors", r.ErrorCount))
		}
		offered, acked, delivered := num(r.OfferedRate), num(r.AckedRate), num(r.DeliveredRate)
		lost, dup := strconv.FormatInt(r.Lost, 10), strconv.FormatUint(r.Duplicates, 10)
		qos := strconv.Itoa(r.QoS)
		if r.Scenario == "connect" {
			target = fmt.Sprintf("%.0f conn/s", r.RateTarget)
			if r.Sleepers == 0 {
				offered, acked, delivered, lost, dup, qos = "", "", "", "", "", ""
			}
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.Label, r.Scenario, r.Clients, qos, target, offered, acked, delivered, lost, dup,
			lat(r.AckLatency), lat(r.E2ELatency), strings.Join(other, "; "))
	}
}

func num(v float64) string {
	if v == 0 {
		return "0"
	}
	return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
}

func lat(l *Latency) string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("%s / %s / %s", fmtMS(l.P50), fmtMS(l.P99), fmtMS(l.Max))
}

func fmtMS(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
