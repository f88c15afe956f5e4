package admin

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// nodeStates are the states always reported by mqttsn_nodes (0 when no node
// is in them), so that every series exists from the first scrape.
var nodeStates = [...]string{"connecting", "active", "asleep", "awake", "lost", "disconnected"} //nolint:gochecknoglobals // constant table

// returnCodeNames label mqttsn_return_codes_total, indexed by code.
var returnCodeNames = [...]string{"accepted", "congestion", "invalid_topic_id", "not_supported"} //nolint:gochecknoglobals // constant table

// qosLabels label per-QoS arrays indexed by QoS+1.
var qosLabels = [...]string{"-1", "0", "1", "2"} //nolint:gochecknoglobals // constant table

// collector reads the gateway's counters at scrape time.
type collector struct {
	src      Source
	upstream func() UpstreamStats
	agg      func() AggregateStats
	dtls     func() DTLSStats
	timeout  time.Duration
	log      *zap.Logger
	types    []snpacket.MsgType // every defined message type

	build     buildinfo.Info
	buildInfo *prometheus.Desc

	ready, nodes, bufMsgs, bufBytes, inflight                        *prometheus.Desc
	connects, closes, lost, wakes                                    *prometheus.Desc
	rawDatagrams, rawBytes, datagrams, datagramBytes, writeErrors    *prometheus.Desc
	readBatches, storeFailures                                       *prometheus.Desc
	publishes, retransmits, returnCodes, dropped, malformed          *prometheus.Desc
	upFailures, upClosed, rejected, limited                          *prometheus.Desc
	upConnected, upConnects, upConnectFailures, upReconnects, upLost *prometheus.Desc
	dtlsHandshakes, dtlsHandshaking, dtlsEstablished                 *prometheus.Desc
	aggConns, aggFilters, aggNodes, aggMessages                      *prometheus.Desc
}

func newCollector(src Source, cfg Config, log *zap.Logger) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("mqttsn_"+name, help, labels, nil)
	}
	c := &collector{src: src, upstream: cfg.Upstream, agg: cfg.Aggregate, dtls: cfg.DTLS, timeout: cfg.CheckTimeout, log: log}
	if c.agg != nil {
		c.aggConns = d("aggregate_connections", "Aggregating mode: shared broker connections, by state (open, down).", "state")
		c.aggFilters = d("aggregate_filters", "Aggregating mode: filters subscribed at the broker on behalf of the nodes.")
		c.aggNodes = d("aggregate_sessions", "Aggregating mode: node sessions, by state (attached, parked: disconnected CleanSession=0 kept).", "state")
		c.aggMessages = d("aggregate_messages_total", "Aggregating mode: broker messages by outcome (delivered to a node, unrouted: for no held filter, parked_dropped: a full parked session's oldest).", "outcome")
	}
	for t := range 256 {
		if mt := snpacket.MsgType(t); !strings.HasPrefix(mt.String(), "UNKNOWN") {
			c.types = append(c.types, mt)
		}
	}
	c.build = cfg.Build
	c.buildInfo = d("build_info", "Always 1; the labels say which build runs (version, VCS revision and time, modified tree, Go version).",
		"version", "revision", "vcs_time", "modified", "goversion")
	c.ready = d("ready", "1 once the gateway reads from every transport.")
	c.nodes = d("nodes", "Nodes the gateway knows, by state.", "state")
	c.bufMsgs = d("buffered_messages", "Messages buffered for nodes (asleep, or waiting for an acknowledgement).")
	c.bufBytes = d("buffered_bytes", "Payload and topic bytes buffered for nodes.")
	c.inflight = d("inflight_messages", "Nodes with a QoS 1 or 2 delivery waiting for its acknowledgement.")
	c.connects = d("connects_total", "CONNECTs accepted.")
	c.closes = d("closes_total", "Nodes that left the active, asleep or awake states, by reason.", "reason")
	c.lost = d("lost_total", "Nodes declared lost (keep-alive, sleep duration or retries exhausted).")
	c.wakes = d("wake_cycles_total", "Wake-ups of sleeping nodes (PINGREQ with ClientId).")
	c.rawDatagrams = d("received_datagrams_total", "Datagrams read from the transports, malformed ones included.")
	c.readBatches = d("udp_read_batches_total", "Batched reads (recvmmsg) from the UDP listeners; received datagrams over this is datagrams per system call.")
	c.rawBytes = d("received_bytes_total", "Bytes read from the transports, malformed datagrams included.")
	c.datagrams = d("datagrams_total", "Datagrams decoded (in) and sent (out), by message type.", "direction", "type")
	c.datagramBytes = d("datagram_bytes_total", "Bytes of datagrams decoded (in) and sent (out), by message type.", "direction", "type")
	c.writeErrors = d("write_errors_total", "Datagrams the transport failed to send.")
	c.storeFailures = d("store_failures_total", "Writes to the durable store (store.path) that failed; what they were for was answered congestion or retried, never acknowledged.")
	c.publishes = d("publishes_total", "Messages forwarded: up (node to broker, accepted by the broker) and down (first transmissions to nodes), by QoS.", "direction", "qos")
	c.retransmits = d("retransmissions_total", "Retransmissions to nodes (REGISTER, PUBLISH, PUBREL).")
	c.returnCodes = d("return_codes_total", "Return codes sent to nodes in CONNACK, REGACK, PUBACK, SUBACK and WILL*RESP.", "code")
	c.dropped = d("dropped_total", "Datagrams and messages dropped, by reason.", "reason")
	c.malformed = d("malformed_total", "Datagrams dropped as malformed, by error.", "kind")
	c.rejected = d("rejected_total", "Node messages refused before they reached the broker (a topic MQTT forbids, a reserved flag value), by reason.", "reason")
	c.limited = d("limited_total", "Requests refused (answered with congestion or not supported), and messages dropped or held, by a limit (limits.*, anti-amplification), by reason.", "reason")
	c.upFailures = d("upstream_publish_failures_total", "Node messages the broker refused or that failed upstream.")
	c.upClosed = d("upstream_sessions_closed_total", "Upstream sessions the gateway closed.")
	if c.upstream != nil {
		c.upConnected = d("upstream_connected_sessions", "Upstream MQTT sessions whose broker connection is up.")
		c.upConnects = d("upstream_connects_total", "Successful upstream CONNECT/CONNACK exchanges.")
		c.upConnectFailures = d("upstream_connect_failures_total", "Failed upstream connection attempts (dial, TLS, CONNACK refused).")
		c.upReconnects = d("upstream_reconnects_total", "Upstream sessions reconnected after a lost connection.")
		c.upLost = d("upstream_connections_lost_total", "Upstream connections lost or closed by the broker.")
	}
	if c.dtls != nil {
		c.dtlsHandshakes = d("dtls_handshakes_total", "DTLS handshakes by result.", "result")
		c.dtlsHandshaking = d("dtls_handshakes_in_progress", "DTLS handshakes in progress.")
		c.dtlsEstablished = d("dtls_connections", "Established DTLS connections.")
	}
	return c
}

func (c *collector) descs() []*prometheus.Desc {
	ds := []*prometheus.Desc{
		c.buildInfo, c.ready, c.nodes, c.bufMsgs, c.bufBytes, c.inflight,
		c.connects, c.closes, c.lost, c.wakes,
		c.rawDatagrams, c.rawBytes, c.datagrams, c.datagramBytes, c.writeErrors, c.readBatches, c.storeFailures,
		c.publishes, c.retransmits, c.returnCodes, c.dropped, c.malformed,
		c.upFailures, c.upClosed, c.rejected, c.limited,
	}
	if c.upstream != nil {
		ds = append(ds, c.upConnected, c.upConnects, c.upConnectFailures, c.upReconnects, c.upLost)
	}
	if c.dtls != nil {
		ds = append(ds, c.dtlsHandshakes, c.dtlsHandshaking, c.dtlsEstablished)
	}
	if c.agg != nil {
		ds = append(ds, c.aggConns, c.aggFilters, c.aggNodes, c.aggMessages)
	}
	return ds
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.src.Stats()
	b := c.build
	gauge(c.buildInfo, 1, b.Version, b.Revision, b.Time, strconv.FormatBool(b.Modified), b.GoVersion)

	ready := 0.0
	select {
	case <-c.src.Ready():
		ready = 1
	default:
	}
	gauge(c.ready, ready)
	c.collectNodes(gauge)

	counter(c.connects, st.Connects.Load())
	for _, r := range gateway.CloseReasons() {
		counter(c.closes, st.Closes[r].Load(), r.String())
	}
	counter(c.lost, st.Lost.Load())
	counter(c.wakes, st.WakeCycles.Load())

	counter(c.rawDatagrams, st.DatagramsIn.Load())
	counter(c.readBatches, st.ReadBatches.Load())
	counter(c.rawBytes, st.BytesIn.Load())
	for _, t := range c.types {
		name := t.String()
		counter(c.datagrams, st.InByType[t].Load(), "in", name)
		counter(c.datagrams, st.OutByType[t].Load(), "out", name)
		counter(c.datagramBytes, st.InBytesByType[t].Load(), "in", name)
		counter(c.datagramBytes, st.OutBytesByType[t].Load(), "out", name)
	}
	counter(c.writeErrors, st.WriteErrors.Load())
	counter(c.storeFailures, st.StoreFailures.Load())

	// QoS -1 messages go up through the gateway's own connection.
	counter(c.publishes, st.QoSMinusOneOut.Load(), "up", qosLabels[0])
	for i := 1; i < len(qosLabels); i++ {
		counter(c.publishes, st.PublishesUpQoS[i].Load(), "up", qosLabels[i])
		counter(c.publishes, st.PublishesDownQoS[i].Load(), "down", qosLabels[i])
	}
	counter(c.retransmits, st.Retransmits.Load())
	for i, name := range returnCodeNames {
		counter(c.returnCodes, st.ReturnCodes[i].Load(), name)
	}

	for _, d := range dropCounts(st) {
		counter(c.dropped, d.v, d.reason)
	}

	// Malformed counts some datagrams without a kind; report them as the
	// generic kind so that the kinds add up to the total.
	var byKind uint64
	kinds := gateway.MalformedKinds()
	for _, k := range kinds {
		byKind += st.MalformedByKind[k].Load()
	}
	rest := sub(st.Malformed.Load(), byKind)
	for _, k := range kinds {
		v := st.MalformedByKind[k].Load()
		if k == gateway.MalformedOther {
			v += rest
		}
		counter(c.malformed, v, k.String())
	}

	for _, r := range gateway.RejectReasons() {
		counter(c.rejected, st.Rejected[r].Load(), r.String())
	}

	for _, r := range gateway.LimitReasons() {
		counter(c.limited, st.Limited[r].Load(), r.String())
	}

	counter(c.upFailures, st.UpstreamFailures.Load())
	counter(c.upClosed, st.UpstreamClosed.Load())
	if c.upstream != nil {
		u := c.upstream()
		gauge(c.upConnected, float64(u.Connected))
		counter(c.upConnects, u.Connects)
		counter(c.upConnectFailures, u.ConnectFailures)
		counter(c.upReconnects, u.Reconnects)
		counter(c.upLost, u.Lost)
	}
	if c.agg != nil {
		a := c.agg()
		gauge(c.aggConns, float64(a.ConnectionsUp), "open")
		gauge(c.aggConns, float64(a.Connections-a.ConnectionsUp), "down")
		gauge(c.aggFilters, float64(a.Filters))
		gauge(c.aggNodes, float64(a.Nodes-a.Parked), "attached")
		gauge(c.aggNodes, float64(a.Parked), "parked")
		counter(c.aggMessages, a.Delivered, "delivered")
		counter(c.aggMessages, a.Unrouted, "unrouted")
		counter(c.aggMessages, a.ParkedDropped, "parked_dropped")
	}
	if c.dtls != nil {
		d := c.dtls()
		counter(c.dtlsHandshakes, d.HandshakesOK, "ok")
		counter(c.dtlsHandshakes, d.HandshakesFailed, "failed")
		counter(c.dtlsHandshakes, d.HandshakesRefused, "refused")
		counter(c.dtlsHandshakes, d.HandshakesDisplaced, "displaced")
		gauge(c.dtlsHandshaking, float64(d.Handshaking))
		gauge(c.dtlsEstablished, float64(d.Established))
	}
}

// collectNodes reports the node gauges from a census of every node. When
// it fails (the gateway is not serving), they are left out.
func (c *collector) collectNodes(gauge func(*prometheus.Desc, float64, ...string)) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cn, err := c.src.Census(ctx)
	if err != nil {
		c.log.Debug("admin: node census for metrics failed", zap.Error(err))
		return
	}
	for _, s := range nodeStates {
		gauge(c.nodes, float64(cn.ByState[s]), s)
	}
	gauge(c.bufMsgs, float64(cn.Buffered))
	gauge(c.bufBytes, float64(cn.BufferedBytes))
	gauge(c.inflight, float64(cn.InFlight))
}

// dropCount is one reason of mqttsn_dropped_total.
type dropCount struct {
	reason string
	v      uint64
}

// dropCounts reads the drop counters by reason, for the metrics and the
// status page's drop chart.
func dropCounts(st *gateway.Stats) []dropCount {
	qos0, overflow, budget, tooLarge, unacked := st.BufferDroppedQoS0.Load(), st.BufferDroppedOverflow.Load(), st.BufferDroppedBudget.Load(), st.BufferDroppedTooLarge.Load(), st.BufferDroppedUnacked.Load()
	return []dropCount{
		{"inbox_full", st.InboxDropped.Load()},
		{"no_session", st.NoSession.Load()},
		{"buffer_qos0", qos0},
		{"buffer_overflow", overflow},
		{"buffer_budget", budget},
		{"buffer_too_large", tooLarge},
		{"buffer_unacked", unacked},
		{"buffer_other", sub(st.BufferDropped.Load(), qos0+overflow+budget+tooLarge+unacked)},
		{"qos_minus_one", st.QoSMinusOneDrop.Load()},
		{"forwarder_denied", st.ForwarderDenied.Load()},
		{"identity_refused", st.IdentityRefused.Load()},
	}
}

// sub is a - b, or 0 if b > a (counters read one after the other).
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
