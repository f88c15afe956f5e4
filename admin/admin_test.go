package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource is a gateway seen through Source.
type fakeSource struct {
	stats gateway.Stats
	ready chan struct{}

	mu      sync.Mutex
	clients []gateway.ClientInfo
	gone    []gateway.GoneNode
	err     error
}

func newFake() *fakeSource { return &fakeSource{ready: make(chan struct{})} }

func (f *fakeSource) Stats() *gateway.Stats       { return &f.stats }
func (f *fakeSource) Ready() <-chan struct{}      { return f.ready }
func (f *fakeSource) setErr(err error)            { f.mu.Lock(); f.err = err; f.mu.Unlock() }
func (f *fakeSource) set(c ...gateway.ClientInfo) { f.mu.Lock(); f.clients = c; f.mu.Unlock() }

func (f *fakeSource) Clients(context.Context) ([]gateway.ClientInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return append([]gateway.ClientInfo(nil), f.clients...), nil
}

func (f *fakeSource) Census(ctx context.Context) (gateway.Census, error) {
	cs, err := f.Clients(ctx)
	if err != nil {
		return gateway.Census{}, err
	}
	c := gateway.Census{ByState: map[string]int{}}
	for _, ci := range cs {
		c.ByState[ci.State]++
		c.Buffered += ci.Buffered
		c.BufferedBytes += ci.BufferedBytes
		if ci.InFlight {
			c.InFlight++
		}
	}
	return c, nil
}

func (f *fakeSource) Client(_ context.Context, id string) (gateway.ClientInfo, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return gateway.ClientInfo{}, false, f.err
	}
	for _, c := range f.clients {
		if c.ClientID == id {
			return c, true, nil
		}
	}
	return gateway.ClientInfo{}, false, nil
}

func (f *fakeSource) QueryClients(ctx context.Context, q gateway.NodeQuery) (gateway.NodePage, error) {
	cs, err := f.Clients(ctx)
	if err != nil {
		return gateway.NodePage{}, err
	}
	var p gateway.NodePage
	for _, c := range cs {
		if (q.State != "" && c.State != q.State) || !strings.Contains(strings.ToLower(c.ClientID), strings.ToLower(q.Search)) {
			continue
		}
		p.Total++
		if p.Total > q.Offset && len(p.Rows) < q.Limit {
			p.Rows = append(p.Rows, gateway.NodeRow{ClientID: c.ClientID, State: c.State, Addr: c.Addr, Transport: c.Transport,
				Buffered: c.Buffered, BufferedBytes: c.BufferedBytes, LastSeen: c.LastSeen, Traffic: c.Traffic})
		}
	}
	return p, nil
}

func (f *fakeSource) RecentlyGone() []gateway.GoneNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gateway.GoneNode(nil), f.gone...)
}

// start runs an admin server on 127.0.0.1:0 until the test ends and
// returns its base URL.
func start(t *testing.T, cfg Config, src Source) (*Server, string) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, src, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, "http://" + s.Addr().String()
}

// get fetches url and returns the status code and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	return do(t, http.MethodGet, u, "")
}

func do(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	src := newFake()
	var brokerErr error
	var mu sync.Mutex
	_, base := start(t, Config{BrokerCheck: func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return brokerErr
	}}, src)

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "not serving") {
		t.Errorf("/readyz before Ready: %d %q", code, body)
	}
	close(src.ready)
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d %q", code, body)
	}
	mu.Lock()
	brokerErr = errors.New("connection refused")
	mu.Unlock()
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "broker: connection refused") {
		t.Errorf("/readyz with the broker down: %d %q", code, body)
	}
	// The status page says so too (it said "Serving").
	if _, body := get(t, base+"/"); !strings.Contains(body, `<span class="err">Not ready</span>: broker: connection refused`) {
		t.Error("status page with the broker down does not say not ready")
	}
}

// stoppingSource is a source that has begun to shut down.
type stoppingSource struct {
	*fakeSource
	stopping chan struct{}
}

func (s stoppingSource) Stopping() <-chan struct{} { return s.stopping }

func TestReadyzWhileStopping(t *testing.T) {
	src := stoppingSource{fakeSource: newFake(), stopping: make(chan struct{})}
	close(src.ready)
	_, base := start(t, Config{}, src)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz before shutdown: %d", code)
	}
	close(src.stopping)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while shutting down: %d %q", code, body)
	}
}

func TestAPIClients(t *testing.T) {
	src := newFake()
	close(src.ready)
	_, base := start(t, Config{}, src)

	if code, body := get(t, base+"/api/clients"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("no nodes: %d %q", code, body)
	}
	odd := "a/b c?<é>"
	src.set(
		gateway.ClientInfo{ClientID: "n1", State: "active", Addr: "127.0.0.1:5000", Transport: "udp",
			Traffic: gateway.Traffic{DatagramsIn: 7, Uplinked: [4]uint64{0, 0, 3, 0}}},
		gateway.ClientInfo{ClientID: odd, State: "asleep"},
	)
	code, body := get(t, base+"/api/clients")
	var list []gateway.ClientInfo
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list) != 2 {
		t.Fatalf("list: %d %v %q", code, err, body)
	}
	if list[0].ClientID != "n1" || list[0].Traffic.DatagramsIn != 7 || list[0].Traffic.Uplinked[2] != 3 {
		t.Errorf("list[0] %+v", list[0])
	}

	code, body = get(t, base+"/api/clients/"+url.PathEscape(odd))
	var one gateway.ClientInfo
	if err := json.Unmarshal([]byte(body), &one); code != 200 || err != nil || one.ClientID != odd || one.State != "asleep" {
		t.Errorf("one: %d %v %q", code, err, body)
	}
	if code, body := get(t, base+"/api/clients/nobody"); code != 404 || !strings.Contains(body, "nobody") {
		t.Errorf("unknown: %d %q", code, body)
	}

	src.setErr(gateway.ErrNotServing)
	if code, _ := get(t, base+"/api/clients"); code != 503 {
		t.Errorf("not serving: %d", code)
	}
	if code, _ := get(t, base+"/api/clients/n1"); code != 503 {
		t.Errorf("not serving: %d", code)
	}
	if code, _ := do(t, http.MethodPost, base+"/api/clients", ""); code != 405 {
		t.Errorf("POST: %d", code)
	}
}

// The status page escapes what nodes choose, and shows datagrams per
// delivered message.
func TestStatusPage(t *testing.T) {
	src := newFake()
	close(src.ready)
	_, base := start(t, Config{}, src)
	evil := `<script>alert("x")</script>`
	src.set(gateway.ClientInfo{ClientID: evil, State: "active", Addr: "[::1]:1", Transport: "udp", Buffered: 3,
		Traffic: gateway.Traffic{
			Delivered: [4]uint64{0, 0, 2, 0}, DownlinkDatagrams: [4]uint64{0, 0, 5, 0},
			Uplinked: [4]uint64{0, 4, 0, 0}, UplinkDatagrams: [4]uint64{0, 4, 0, 0},
		}})
	code, body := get(t, base+"/")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if strings.Contains(body, "<script>") {
		t.Error("ClientId not escaped")
	}
	for _, want := range []string{"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "down QoS 1: 2.50 (2)", "up QoS 0: 1.00 (4)", "1 nodes", "1 active", "buffered 3 messages",
		`id="chart-in"`, `id="chart-out"`, `id="chart-drops"`, "no drops in the last hour", "Broker link", "unknown", "None since start."} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if code, _ := get(t, base+"/nothing-here"); code != 404 {
		t.Errorf("unknown path: %d", code)
	}

	src.setErr(gateway.ErrNotServing)
	if code, body := get(t, base+"/"); code != 200 || !strings.Contains(body, "not serving") {
		t.Errorf("not serving: %d %s", code, body)
	}
}

func TestLogLevel(t *testing.T) {
	src := newFake()
	lvl := zap.NewAtomicLevelAt(zap.InfoLevel)
	_, base := start(t, Config{Level: &lvl}, src)
	if code, body := get(t, base+"/loglevel"); code != 200 || !strings.Contains(body, `"info"`) {
		t.Errorf("GET: %d %q", code, body)
	}
	if code, body := do(t, http.MethodPut, base+"/loglevel", `{"level":"debug"}`); code != 200 || lvl.Level() != zap.DebugLevel {
		t.Errorf("PUT: %d %q, level %v", code, body, lvl.Level())
	}
	// README's command: curl -X PUT -d '{"level":"debug"}' sends the JSON
	// with a form content type.
	for _, c := range []struct{ ctype, body string }{
		{"application/x-www-form-urlencoded", `{"level":"warn"}`},
		{"application/json", `{"level":"error"}`},
		{"application/x-www-form-urlencoded", `level=info`},
		{"text/plain", "warn\n"},
	} {
		req, err := http.NewRequest(http.MethodPut, base+"/loglevel", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", c.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), lvl.Level().String()) {
			t.Errorf("PUT %s %q: %d %s", c.ctype, c.body, resp.StatusCode, b)
		}
	}
	if lvl.Level() != zap.WarnLevel {
		t.Errorf("level %v after the PUTs, want warn", lvl.Level())
	}
	lvl.SetLevel(zap.DebugLevel)
	if code, _ := do(t, http.MethodPut, base+"/loglevel", `{"level":"loud"}`); code != 400 || lvl.Level() != zap.DebugLevel {
		t.Errorf("bad PUT: %d, level %v", code, lvl.Level())
	}

	_, other := start(t, Config{}, src)
	if code, _ := get(t, other+"/loglevel"); code != 404 {
		t.Errorf("without Level: %d", code)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}, newFake(), nil); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Errorf("empty listen: %v", err)
	}
	if _, err := New(Config{Listen: "nohost"}, newFake(), nil); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Errorf("bad listen: %v", err)
	}
	s, err := New(Config{Listen: "127.0.0.1:0"}, newFake(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Shutdown before Serve releases the port; twice is fine.
	for range 2 {
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
}

// /debug/pprof exists only with Config.Pprof.
func TestPprof(t *testing.T) {
	_, off := start(t, Config{}, newFake())
	if code, _ := get(t, off+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof off: %d", code)
	}
	_, on := start(t, Config{Pprof: true}, newFake())
	if code, body := get(t, on+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof index: %d %.200s", code, body)
	}
	if code, body := get(t, on+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("goroutine profile: %d %.200s", code, body)
	}
	if code, _ := get(t, on+"/debug/pprof/cmdline"); code != 200 {
		t.Errorf("cmdline: %d", code)
	}
}

// With a Link, /readyz follows the broker link probe and says why it is
// down.
func TestReadyzFollowsLink(t *testing.T) {
	src := newFake()
	close(src.ready)
	var mu sync.Mutex
	link := LinkStatus{Up: false, LastError: "not authorized (0x87): check broker.username and broker.password"}
	_, base := start(t, Config{Link: func() LinkStatus { mu.Lock(); defer mu.Unlock(); return link }}, src)
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "not authorized (0x87)") {
		t.Errorf("/readyz with the link down: %d %q", code, body)
	}
	mu.Lock()
	link = LinkStatus{Up: true, Protocol: "5", Since: time.Now()}
	mu.Unlock()
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz with the link up: %d %q", code, body)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	b := buildinfo.Info{Version: "v1.2.3", Revision: "abc", Time: "2026-11-30T10:00:00Z", Modified: true, GoVersion: "go1.26.8"}
	_, base := start(t, Config{Build: b}, newFake())
	_, body := get(t, base+"/metrics")
	want := `mqttsn_build_info{goversion="go1.26.8",modified="true",revision="abc",vcs_time="2026-11-30T10:00:00Z",version="v1.2.3"} 1`
	if !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
