package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/admin"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
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
	up, err := upstream.New(upstream.Config{URL: tg.URL, ReconnectBackoffMin: 50 * time.Millisecond, ReconnectBackoffMax: 500 * time.Millisecond},
		zaptest.NewLogger(t).Named("upstream"))
	if err != nil {
		t.Fatal(err)
	}
	e := RunGateway(t, tg, gateway.Config{}, gateway.WithUpstream(up))
	srv, err := admin.New(admin.Config{
		Listen:      "127.0.0.1:0",
		BrokerCheck: up.Ping,
		Upstream:    func() admin.UpstreamStats { return admin.UpstreamStats(up.Stats()) },
	}, e.GW, zaptest.NewLogger(t).Named("admin"))
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
			{"mqttsn_upstream_connected_sessions", nil, 1},
			{"mqttsn_upstream_connects_total", nil, 1},
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
			return m.value("mqttsn_upstream_connected_sessions") == 0 && m.value("mqttsn_upstream_connections_lost_total") == 1
		})
		tg.Start(t)
		if code, body := a.get(t, "/readyz"); code != http.StatusOK {
			t.Errorf("/readyz with the broker back: %d %q", code, body)
		}
		Eventually(t, "upstream reconnected", func() bool {
			m := a.metrics(t)
			return m.value("mqttsn_upstream_connected_sessions") == 1 && m.value("mqttsn_upstream_reconnects_total") == 1
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

// The status page, loaded in a real headless browser, lists a connected
// node with its state and shows node-chosen text as text.
func TestAdminStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed: .ci/run installs it (apt-get install chromium)")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	a := runAdminGateway(t, testbroker.EmbeddedTarget(t))
	n := a.Node(t)
	n.Connect("page-node-1", true, 60)
	evil := a.Node(t)
	evil.Connect(`<img src=x onerror=alert(1)>`, true, 60)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", a.base+"/")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(stdout.String(), "</html>") {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
	}
	dom := stdout.String()
	for _, want := range []string{"page-node-1", `<td class="l state-active">active`, "&lt;img src=x onerror=alert(1)&gt;", "2 nodes"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page in chromium lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "<img") {
		t.Errorf("a ClientId became markup:\n%s", dom)
	}
}
