package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mqttsn-gateway/mqttsn-gateway/admin"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// adminEnv is a gateway with its admin listener.
type adminEnv struct {
	*Env
	up   *upstream.Upstream
	base string // http://127.0.0.1:port
}

// runAdminGateway starts a gateway bridged to tg with its own upstream (for
// the broker check and the upstream counters) and an admin listener on
// 127.0.0.1:0, both stopped by t.Cleanup.
func runAdminGateway(t *testing.T, tg testbroker.Target) *adminEnv {
	t.Helper()
	up, err := upstream.New(testgw.UpstreamConfig(tg, upstream.Config{}),
		testgw.Logger(t).Named("upstream"))
	if err != nil {
		t.Fatal(err)
	}
	g := testgw.StartUpstream(t, testgw.ForMode(t, tg, up), gateway.Config{})
	e := &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String()}
	srv, err := admin.New(admin.Config{
		Listen:      "127.0.0.1:0",
		Mode:        "transparent",
		Listeners:   []admin.Listener{{Transport: "udp", Addr: e.Addr}},
		Broker:      tg.URL,
		BrokerCheck: up.Ping,
		Upstream:    func() admin.UpstreamStats { return admin.UpstreamStats(up.Stats()) },
	}, e.GW, testgw.Logger(t).Named("admin"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("admin Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("admin Serve: %v", err)
		}
	})
	return &adminEnv{Env: e, up: up, base: "http://" + srv.Addr().String()}
}

func (a *adminEnv) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: Wait}
	resp, err := c.Get(a.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics and parses the text format.
func (a *adminEnv) metrics(t *testing.T) promMetrics {
	t.Helper()
	code, body := a.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return promMetrics(fams)
}

func (a *adminEnv) client(t *testing.T, id string) gateway.ClientInfo {
	t.Helper()
	code, body := a.get(t, "/api/clients/"+url.PathEscape(id))
	var c gateway.ClientInfo
	if err := json.Unmarshal([]byte(body), &c); code != http.StatusOK || err != nil {
		t.Fatalf("/api/clients/%s: %d %v %s", id, code, err, body)
	}
	return c
}

type promMetrics map[string]*dto.MetricFamily

// value returns the sample of name whose labels are exactly the given
// name, value pairs; -1 if there is none.
func (m promMetrics) value(name string, labels ...string) float64 {
	f := m[name]
	if f == nil {
		return -1
	}
	for _, s := range f.GetMetric() {
		if len(s.GetLabel())*2 != len(labels) {
			continue
		}
		match := true
		for _, l := range s.GetLabel() {
			found := false
			for i := 0; i < len(labels); i += 2 {
				found = found || (labels[i] == l.GetName() && labels[i+1] == l.GetValue())
			}
			match = match && found
		}
		if !match {
			continue
		}
		if s.Counter != nil {
			return s.GetCounter().GetValue()
		}
		return s.GetGauge().GetValue()
	}
	return -1
}

// Real traffic through a real gateway shows up in /metrics and
// /api/clients with the right counts, and /readyz follows the broker.
func TestAdminMetricsAndClients(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		a := runAdminGateway(t, tg)
		// The node's own broker session, or the two shared ones.
		ups := 1.0
		if tg.Mode == testbroker.Aggregating {
			ups = 2
		}
		if code, body := a.get(t, "/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz: %d %s", code, body)
		}
		if code, body := a.get(t, "/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Fatalf("/healthz: %d %q", code, body)
		}

		w := a.Watch(t, "adm/#")
		n := a.Node(t)
		n.Connect("adm-node", true, 60)
		id := n.Register(1, "adm/up")
		const qos1 = 3
		for i := range qos1 {
			n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: uint16(10 + i), Data: []byte("q1")})
			n.Expect(&sn.Puback{TopicID: id, MsgID: uint16(10 + i), ReturnCode: sn.Accepted})
			w.Next()
		}
		n.Send(&sn.Publish{QoS: sn.QoS0, TopicID: id, Data: []byte("q0")})
		w.Next()
		sa := n.Subscribe(2, "adm/down", sn.QoS1)
		a.Publish(t, "adm/down", "hello", 1, false)
		p, ok := n.Next().(*sn.Publish)
		if !ok || p.QoS != sn.QoS1 || p.TopicID != sa.TopicID {
			t.Fatalf("downlink PUBLISH %+v", p)
		}
		n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
		// The PUBACK has no answer: wait for the gateway to count it.
		Eventually(t, "downlink delivery counted", func() bool { return a.client(t, "adm-node").Traffic.Delivered[2] == 1 })

		c := a.client(t, "adm-node")
		tr := c.Traffic
		switch {
		case c.State != "active" || c.Transport != "udp" || c.Addr != n.Conn.LocalAddr().String() || c.KeepAlive != 60:
			t.Errorf("client %+v", c)
		case len(c.Subscriptions) != 1 || c.Subscriptions[0].Filter != "adm/down" || c.Subscriptions[0].QoS != 1:
			t.Errorf("subscriptions %+v", c.Subscriptions)
		case c.Topics[id] != "adm/up" || c.Buffered != 0:
			t.Errorf("topics %v, buffered %d", c.Topics, c.Buffered)
		case tr.PublishesIn[2] != qos1 || tr.Uplinked[2] != qos1 || tr.UplinkDatagrams[2] != 2*qos1:
			t.Errorf("uplink QoS 1: %+v", tr)
		case tr.Uplinked[1] != 1 || tr.UplinkDatagrams[1] != 1:
			t.Errorf("uplink QoS 0: %+v", tr)
		case tr.Delivered[2] != 1 || tr.DownlinkDatagrams[2] < 2:
			t.Errorf("downlink QoS 1: %+v", tr)
		case tr.DatagramsIn != 1+1+qos1+1+1+1 || tr.Retransmissions != 0:
			// CONNECT, REGISTER, 3 PUBLISH, PUBLISH, SUBSCRIBE, PUBACK
			t.Errorf("datagrams: %+v", tr)
		}
		code, body := a.get(t, "/api/clients")
		var list []gateway.ClientInfo
		if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list) != 1 || list[0].ClientID != "adm-node" {
			t.Errorf("/api/clients: %d %v %s", code, err, body)
		}
		if code, _ := a.get(t, "/api/clients/nobody"); code != http.StatusNotFound {
			t.Errorf("/api/clients/nobody: %d", code)
		}

		m := a.metrics(t)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"mqttsn_ready", nil, 1},
			{"mqttsn_connects_total", nil, 1},
			{"mqttsn_nodes", []string{"state", "active"}, 1},
			{"mqttsn_nodes", []string{"state", "asleep"}, 0},
			{"mqttsn_datagrams_total", []string{"direction", "in", "type", "CONNECT"}, 1},
			{"mqttsn_datagrams_total", []string{"direction", "in", "type", "PUBLISH"}, qos1 + 1},
			{"mqttsn_datagrams_total", []string{"direction", "in", "type", "PUBACK"}, 1},
			{"mqttsn_datagrams_total", []string{"direction", "out", "type", "PUBACK"}, qos1},
			{"mqttsn_datagrams_total", []string{"direction", "out", "type", "PUBLISH"}, 1},
			{"mqttsn_publishes_total", []string{"direction", "up", "qos", "1"}, qos1},
			{"mqttsn_publishes_total", []string{"direction", "up", "qos", "0"}, 1},
			{"mqttsn_publishes_total", []string{"direction", "down", "qos", "1"}, 1},
			{"mqttsn_publishes_total", []string{"direction", "up", "qos", "2"}, 0},
			// CONNACK, REGACK, 3 PUBACK, SUBACK
			{"mqttsn_return_codes_total", []string{"code", "accepted"}, qos1 + 3},
			{"mqttsn_retransmissions_total", nil, 0},
			{"mqttsn_buffered_messages", nil, 0},
			{"mqttsn_malformed_total", []string{"kind", "too_short"}, 0},
			{"mqttsn_dropped_total", []string{"reason", "inbox_full"}, 0},
			{"mqttsn_upstream_connected_sessions", nil, ups},
			{"mqttsn_upstream_connects_total", nil, ups},
		} {
			if got := m.value(c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		if m.value("mqttsn_datagram_bytes_total", "direction", "in", "type", "PUBLISH") <= 0 {
			t.Error("no PUBLISH bytes counted")
		}

		// The broker goes away: not ready, with the reason; the node's
		// upstream connection is lost, then comes back with the broker.
		tg.Stop(t)
		code, body = a.get(t, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "broker") {
			t.Errorf("/readyz with the broker stopped: %d %q", code, body)
		}
		Eventually(t, "upstream connection lost", func() bool {
			m := a.metrics(t)
			return m.value("mqttsn_upstream_connected_sessions") == 0 && m.value("mqttsn_upstream_connections_lost_total") == ups
		})
		tg.Start(t)
		if code, body := a.get(t, "/readyz"); code != http.StatusOK {
			t.Errorf("/readyz with the broker back: %d %q", code, body)
		}
		Eventually(t, "upstream reconnected", func() bool {
			m := a.metrics(t)
			return m.value("mqttsn_upstream_connected_sessions") == ups && m.value("mqttsn_upstream_reconnects_total") == ups
		})

		n.Send(&sn.Disconnect{})
		n.Expect(&sn.Disconnect{})
		m = a.metrics(t)
		if got := m.value("mqttsn_closes_total", "reason", "disconnect"); got != 1 {
			t.Errorf("closes{disconnect} = %v", got)
		}
		if got := m.value("mqttsn_nodes", "state", "active"); got != 0 {
			t.Errorf("active nodes after DISCONNECT: %v", got)
		}
	})
}

// The status page, loaded in a real headless browser after real traffic:
// the overview, the charts, a node found with the search box, node-chosen
// text shown as text, a lost node, and no horizontal scrolling at 1280 px.
func TestAdminStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed: .ci/run installs it (apt-get install chromium)")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	a := runAdminGateway(t, testbroker.EmbeddedTarget(t))
	w := a.Watch(t, "page/#")
	n := a.Node(t)
	n.Connect("page-node-1", true, 60)
	id := n.Register(1, "page/up")
	for i := range 5 {
		n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: uint16(10 + i), Data: []byte("21.5")})
		n.Expect(&sn.Puback{TopicID: id, MsgID: uint16(10 + i), ReturnCode: sn.Accepted})
		w.Next()
	}
	for i := range 30 { // enough nodes for two pages of the table
		o := a.Node(t)
		o.Connect(fmt.Sprintf("other-%02d-with-a-rather-long-client-identifier-that-must-wrap", i), true, 60)
	}
	evil := a.Node(t)
	evil.Connect(`<img src=x onerror=alert(1)>`, true, 60)
	// A node that goes away: lost by its keep-alive (1 s, +50%).
	gone := a.Node(t)
	gone.Connect("page-gone", true, 1)
	Eventually(t, "the node lost", func() bool {
		for _, g := range a.GW.RecentlyGone() {
			if g.ClientID == "page-gone" {
				return true
			}
		}
		return false
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := startBrowser(t, ctx, chromium, 1280)
	b.navigate(a.base + "/")

	var overview string
	b.eval(`document.querySelector('#overview').textContent`, &overview)
	for _, want := range []string{"Build", "commit", "up ", "Ready", "Broker link", "unknown", "Listeners", "udp 127.0.0.1:", "mode: transparent", "32 nodes · 32 active"} {
		if !strings.Contains(overview, want) {
			t.Errorf("overview lacks %q:\n%s", want, overview)
		}
	}
	var lines int
	b.eval(`document.querySelectorAll('#chart-in svg polyline.series').length`, &lines)
	var legend string
	b.eval(`document.querySelector('#chart-in .legend').innerText`, &legend)
	if lines == 0 || !strings.Contains(legend, "QoS 1") || !strings.Contains(legend, "(5 in the hour)") {
		t.Errorf("messages-in chart: %d lines, legend %q", lines, legend)
	}
	var goneText string
	b.eval(`document.querySelector('#gone').innerText`, &goneText)
	if !strings.Contains(goneText, "page-gone") || !strings.Contains(goneText, "keepalive_expired") {
		t.Errorf("recently gone table: %q", goneText)
	}
	var evilShown, evilMarkup bool
	b.eval(`document.querySelector('#nodes').innerText.includes('<img src=x onerror=alert(1)>')`, &evilShown)
	b.eval(`document.querySelector('#nodes img') !== null`, &evilMarkup)
	if !evilShown || evilMarkup {
		t.Errorf("a ClientId chosen by a node: shown as text %v, became markup %v", evilShown, evilMarkup)
	}
	checkNoHorizontalScroll(t, b, "/")

	// The search box, as a user would use it.
	b.eval(`(() => { document.querySelector('input[name=q]').value = 'page-node'; document.querySelector('form.filter').submit(); return true })()`, new(bool))
	b.awaitLoad()
	var rows []string
	b.eval(`Array.from(document.querySelectorAll('#nodes tr.node')).map(r => r.cells[0].innerText + ' ' + r.cells[1].innerText + ' ' + r.cells[9].innerText)`, &rows)
	if len(rows) != 1 || !strings.HasPrefix(rows[0], "page-node-1 active") {
		t.Errorf("searched for page-node: rows %q", rows)
	}
	var loc string
	b.eval(`location.search`, &loc)
	if loc != "?q=page-node&state=" && loc != "?q=page-node" {
		t.Errorf("search URL %q", loc)
	}
	checkNoHorizontalScroll(t, b, "/?q=page-node")
}

// checkNoHorizontalScroll fails if the page is wider than its viewport.
func checkNoHorizontalScroll(t *testing.T, b *browser, page string) {
	t.Helper()
	var widths []int
	b.eval(`[document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]`, &widths)
	t.Logf("%s at 1280 px: scrollWidth %v (clientWidth, innerWidth)", page, widths)
	if len(widths) != 3 || widths[2] != 1280 || widths[0] > 1280 || widths[0] > widths[1] {
		t.Errorf("%s at 1280 px: scrollWidth, clientWidth, innerWidth = %v: it scrolls sideways", page, widths)
	}
}
