package admin

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// scrape reads /metrics and parses it.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the sample of name with exactly the given labels
// (name=value pairs); ok is false if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	src := newFake()
	close(src.ready)
	st := &src.stats
	st.Connects.Add(3)
	st.Closes[gateway.CloseKeepAlive].Add(2)
	st.Lost.Add(2)
	st.DatagramsIn.Add(12)
	st.StoreFailures.Add(2)
	st.InByType[snpacket.TypePublish].Add(10)
	st.InBytesByType[snpacket.TypePublish].Add(200)
	st.OutByType[snpacket.TypePuback].Add(9)
	st.PublishesUpQoS[2].Add(9) // QoS 1
	st.PublishesDownQoS[3].Add(4)
	st.QoSMinusOneOut.Add(5)
	st.Retransmits.Add(6)
	st.ReturnCodes[snpacket.RejectedInvalidTopicID].Add(1)
	st.InboxDropped.Add(7)
	st.BufferDropped.Add(4)
	st.BufferDroppedBudget.Add(3) // and 1 without a reason
	st.Malformed.Add(3)
	st.MalformedByKind[gateway.MalformedTooShort].Add(2) // and 1 without a kind
	st.Rejected[gateway.RejectWildcardInName].Add(4)
	st.BufferDropped.Add(2)
	st.BufferDroppedUnacked.Add(2)
	src.set(
		gateway.ClientInfo{ClientID: "secret-a", State: "active", Buffered: 2, BufferedBytes: 20, InFlight: true},
		gateway.ClientInfo{ClientID: "secret-b", State: "asleep", Buffered: 5, BufferedBytes: 50},
		gateway.ClientInfo{ClientID: "secret-c", State: "asleep"},
	)
	cfg := Config{
		Upstream: func() UpstreamStats { return UpstreamStats{Connected: 2, Reconnects: 1, ConnectFailures: 4} },
		DTLS:     func() DTLSStats { return DTLSStats{HandshakesOK: 8, HandshakesFailed: 1, Established: 8} },
		Aggregate: func() AggregateStats {
			return AggregateStats{Connections: 5, ConnectionsUp: 4, Filters: 3, Nodes: 10, Parked: 2, Delivered: 99, ParkedDropped: 1}
		},
	}
	_, base := start(t, cfg, src)
	fams := scrape(t, base)

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"mqttsn_ready", nil, 1},
		{"mqttsn_nodes", []string{"state", "active"}, 1},
		{"mqttsn_nodes", []string{"state", "asleep"}, 2},
		{"mqttsn_nodes", []string{"state", "lost"}, 0},
		{"mqttsn_buffered_messages", nil, 7},
		{"mqttsn_buffered_bytes", nil, 70},
		{"mqttsn_inflight_messages", nil, 1},
		{"mqttsn_connects_total", nil, 3},
		{"mqttsn_closes_total", []string{"reason", "keepalive_expired"}, 2},
		{"mqttsn_closes_total", []string{"reason", "disconnect"}, 0},
		{"mqttsn_lost_total", nil, 2},
		{"mqttsn_received_datagrams_total", nil, 12},
		{"mqttsn_store_failures_total", nil, 2},
		{"mqttsn_datagrams_total", []string{"direction", "in", "type", "PUBLISH"}, 10},
		{"mqttsn_datagrams_total", []string{"direction", "out", "type", "PUBACK"}, 9},
		{"mqttsn_datagrams_total", []string{"direction", "in", "type", "WILLMSGRESP"}, 0},
		{"mqttsn_datagram_bytes_total", []string{"direction", "in", "type", "PUBLISH"}, 200},
		{"mqttsn_publishes_total", []string{"direction", "up", "qos", "1"}, 9},
		{"mqttsn_publishes_total", []string{"direction", "up", "qos", "-1"}, 5},
		{"mqttsn_publishes_total", []string{"direction", "down", "qos", "2"}, 4},
		{"mqttsn_retransmissions_total", nil, 6},
		{"mqttsn_return_codes_total", []string{"code", "invalid_topic_id"}, 1},
		{"mqttsn_dropped_total", []string{"reason", "inbox_full"}, 7},
		{"mqttsn_dropped_total", []string{"reason", "buffer_budget"}, 3},
		{"mqttsn_dropped_total", []string{"reason", "buffer_other"}, 1},
		{"mqttsn_malformed_total", []string{"kind", "too_short"}, 2},
		{"mqttsn_malformed_total", []string{"kind", "malformed"}, 1},
		{"mqttsn_rejected_total", []string{"reason", "wildcard_in_name"}, 4},
		{"mqttsn_rejected_total", []string{"reason", "reserved_qos"}, 0},
		{"mqttsn_dropped_total", []string{"reason", "buffer_unacked"}, 2},
		{"mqttsn_upstream_connected_sessions", nil, 2},
		{"mqttsn_aggregate_connections", []string{"state", "open"}, 4},
		{"mqttsn_aggregate_connections", []string{"state", "down"}, 1},
		{"mqttsn_aggregate_filters", nil, 3},
		{"mqttsn_aggregate_sessions", []string{"state", "attached"}, 8},
		{"mqttsn_aggregate_sessions", []string{"state", "parked"}, 2},
		{"mqttsn_aggregate_messages_total", []string{"outcome", "delivered"}, 99},
		{"mqttsn_aggregate_messages_total", []string{"outcome", "parked_dropped"}, 1},
		{"mqttsn_upstream_reconnects_total", nil, 1},
		{"mqttsn_upstream_connect_failures_total", nil, 4},
		{"mqttsn_dtls_handshakes_total", []string{"result", "ok"}, 8},
		{"mqttsn_dtls_handshakes_total", []string{"result", "failed"}, 1},
		{"mqttsn_dtls_connections", nil, 8},
	} {
		got, ok := value(fams, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if _, ok := fams["process_cpu_seconds_total"]; !ok {
		t.Error("no process metrics")
	}
	// No per-node labels.
	_, body := get(t, base+"/metrics")
	if strings.Contains(body, "secret-") {
		t.Error("a ClientId appears in /metrics")
	}

	// Without the gateway serving, the node gauges are left out and the
	// counters still served.
	src.setErr(gateway.ErrNotServing)
	fams = scrape(t, base)
	if _, ok := fams["mqttsn_nodes"]; ok {
		t.Error("mqttsn_nodes reported without a node snapshot")
	}
	if v, _ := value(fams, "mqttsn_connects_total"); v != 3 {
		t.Errorf("connects %v", v)
	}
}

// The metrics follow Prometheus' naming conventions, and without the
// optional sources their metrics are absent.
func TestMetricsLint(t *testing.T) {
	src := newFake()
	close(src.ready)
	full := newCollector(src, Config{
		CheckTimeout: DefaultCheckTimeout,
		Upstream:     func() UpstreamStats { return UpstreamStats{} },
		DTLS:         func() DTLSStats { return DTLSStats{} },
	}, zap.NewNop())
	problems, err := testutil.CollectAndLint(full)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	bare := newCollector(src, Config{CheckTimeout: DefaultCheckTimeout}, zap.NewNop())
	if n := testutil.CollectAndCount(bare, "mqttsn_upstream_connected_sessions", "mqttsn_dtls_handshakes_total"); n != 0 {
		t.Errorf("%d optional metrics without their sources", n)
	}
}
