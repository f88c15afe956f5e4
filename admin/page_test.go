package admin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
)

func TestStatusPageOverviewAndTable(t *testing.T) {
	src := newFake()
	close(src.ready)
	var cs []gateway.ClientInfo
	for i := range 120 {
		cs = append(cs, gateway.ClientInfo{ClientID: fmt.Sprintf("node-%03d", i), State: "active", Addr: "10.0.0.1:1", Transport: "udp"})
	}
	cs[7].State = "asleep"
	src.set(cs...)
	src.gone = []gateway.GoneNode{{ClientID: "went-away", Event: "lost", Reason: "keepalive_expired", At: time.Now(), Addr: "10.0.0.9:1", Transport: "dtls"}}
	link := LinkStatus{Up: false, Protocol: "3.1.1", LastError: "not authorized: check broker.username", Since: time.Now().Add(-time.Minute), Checked: time.Now()}
	_, base := start(t, Config{
		Build:     buildinfo.Info{Version: "v9.9.9", Revision: "0123456789abcdef", Time: "2026-11-30T10:00:00Z", GoVersion: "go1.26.8"},
		Listeners: []Listener{{"udp", "0.0.0.0:1884"}, {"dtls", "0.0.0.0:1885"}},
		Broker:    "mqtt://broker.example:1883",
		Mode:      "transparent",
		Link:      func() LinkStatus { return link },
	}, src)

	_, body := get(t, base+"/")
	for _, want := range []string{
		"v9.9.9", "commit 0123456789ab, 2026-11-30T10:00:00Z", "up ", // build and uptime
		"udp 0.0.0.0:1884", "dtls 0.0.0.0:1885", "mqtt://broker.example:1883", "mode: transparent",
		`<span class="down">down</span>, MQTT 3.1.1`, "not authorized: check broker.username", // the link
		"Not ready", "broker link down", // readiness follows the link
		"120 nodes · 119 active · 1 asleep",
		"1–50 of 120", `href="/?page=2"`, // pagination
		"went-away", "keepalive_expired",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if n := strings.Count(body, `<tr class="node">`); n != 50 {
		t.Errorf("%d rows on the first page, want 50", n)
	}

	_, body = get(t, base+"/?page=3")
	if !strings.Contains(body, "101–120 of 120") || !strings.Contains(body, `href="/?page=2"`) || strings.Contains(body, "next ›") {
		t.Errorf("last page wrong")
	}
	_, body = get(t, base+"/?q=NODE-11&state=active")
	if n := strings.Count(body, `<tr class="node">`); n != 10 || !strings.Contains(body, "node-115") || !strings.Contains(body, `value="NODE-11"`) {
		t.Errorf("search: %d rows", n)
	}
	_, body = get(t, base+"/?state=asleep")
	if n := strings.Count(body, `<tr class="node">`); n != 1 || !strings.Contains(body, "node-007") || !strings.Contains(body, `<option value="asleep" selected>`) {
		t.Errorf("state filter: %d rows", n)
	}
	_, body = get(t, base+"/?q=nothing-like-it")
	if !strings.Contains(body, "No nodes match.") {
		t.Errorf("no match not said")
	}
	// Sort links: the current column flips, the others sort largest first.
	_, body = get(t, base+"/?sort=last_seen&desc=1")
	if !strings.Contains(body, `href="/?sort=last_seen"`) || !strings.Contains(body, "Last seen ▼") || !strings.Contains(body, `href="/?desc=1&amp;sort=buffered"`) {
		t.Errorf("sort links wrong")
	}
	link.Up = true
	_, body = get(t, base+"/")
	if !strings.Contains(body, `<span class="up">up</span>, MQTT 3.1.1, since 1m0s ago`) || !strings.Contains(body, ">Ready<") {
		t.Errorf("link up not shown")
	}
}

// The charts show rates computed from the sampler's ring.
func TestRateCharts(t *testing.T) {
	var st gateway.Stats
	s := newSampler(&st, 10*time.Second)
	t0 := time.Unix(1_000_000, 0)
	s.take(t0)
	st.PublishesUpQoS[2].Add(100) // QoS 1: 100 messages in 10 s
	st.InboxDropped.Add(20)
	s.take(t0.Add(10 * time.Second))
	st.PublishesUpQoS[2].Add(50)
	w := s.window(t0.Add(20 * time.Second)) // plus the counters now
	if len(w) != 3 {
		t.Fatalf("%d samples", len(w))
	}
	cs := charts(w, t0.Add(20*time.Second))
	in := cs[0].Series[2]
	if in.Name != "QoS 1" || len(in.Points) != 2 || in.Points[0].rate != 10 || in.Points[1].rate != 5 || in.Total != 150 || in.Last != 5 {
		t.Errorf("QoS 1 series %+v", in)
	}
	drops := cs[2]
	if len(drops.Series) != 1 || drops.Series[0].Name != "inbox_full" || drops.Series[0].Total != 20 {
		t.Errorf("drop series %+v", drops.Series)
	}
	svg := string(cs[0].SVG())
	if !strings.Contains(svg, "<polyline") || !strings.Contains(svg, ">10/s<") {
		t.Errorf("svg %s", svg)
	}
	// Samples older than the window fall out; the ring holds one window.
	s.take(t0.Add(2 * time.Hour))
	if w := s.window(t0.Add(2 * time.Hour)); len(w) != 1 {
		t.Errorf("window after an hour: %d samples", len(w))
	}
	for i := range 1000 {
		s.take(t0.Add(3*time.Hour + time.Duration(i)*10*time.Second))
	}
	if s.n != len(s.ring) || len(s.ring) != 361 {
		t.Errorf("ring %d of %d", s.n, len(s.ring))
	}
	if m := (chart{Series: []series{{Points: []point{{rate: 0.3}}}}}).Max(); m != 0.5 {
		t.Errorf("Max = %v", m)
	}
}
