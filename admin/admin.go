// Package admin is the gateway's HTTP admin listener: Prometheus metrics,
// health and readiness probes, a JSON view of the nodes, a read-only status
// page and, when given the logger's level, run-time log-level changes.
//
// It reads the gateway through the small Source interface, which
// *gateway.Gateway satisfies. Metrics are read from the gateway's atomic
// counters when Prometheus scrapes, so serving them costs the datagram path
// nothing. The listener has no authentication: bind it to loopback or a
// management network.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
)

// Source is what the admin listener reads. *gateway.Gateway satisfies it.
type Source interface {
	Stats() *gateway.Stats
	Clients(ctx context.Context) ([]gateway.ClientInfo, error)
	Census(ctx context.Context) (gateway.Census, error)
	Client(ctx context.Context, clientID string) (gateway.ClientInfo, bool, error)
	QueryClients(ctx context.Context, q gateway.NodeQuery) (gateway.NodePage, error)
	RecentlyGone() []gateway.GoneNode
	Ready() <-chan struct{}
}

// stopper is implemented by sources that say when they begin to shut down
// (*gateway.Gateway does); /readyz then fails while they drain.
type stopper interface {
	Stopping() <-chan struct{}
}

var _ Source = (*gateway.Gateway)(nil)

// UpstreamStats are the broker connections' counters (upstream.Stats
// converts directly).
type UpstreamStats struct {
	Connected       int64  // sessions whose broker connection is up
	Connects        uint64 // successful CONNECT/CONNACK exchanges
	ConnectFailures uint64 // failed connection attempts
	Reconnects      uint64 // sessions reconnected after a loss
	Lost            uint64 // connections lost or closed by the broker
}

// AggregateStats are aggregating mode's gauges and counters
// (aggregate.Stats converts directly).
type AggregateStats struct {
	Connections, ConnectionsUp int    // shared connections, and those open
	Filters                    int    // filters subscribed at the broker
	Nodes, Parked              int    // node sessions, and those disconnected but kept
	Delivered                  uint64 // messages handed to nodes
	Unrouted                   uint64 // messages for no held filter
	ParkedDropped              uint64 // messages dropped from a full parked session
}

// DTLSStats are a DTLS listener's handshake counters.
type DTLSStats struct {
	HandshakesOK        uint64
	HandshakesFailed    uint64 // timeout, bad key, bad certificate...
	HandshakesRefused   uint64 // too many handshakes in progress
	HandshakesDisplaced uint64 // unverified handshakes closed to make room
	Handshaking         int64  // gauge: handshakes in progress
	Established         int64  // gauge: established connections
}

// LinkStatus is the state of the gateway's own link to the broker, as a
// readiness probe sees it (a real MQTT CONNECT with the gateway's
// credentials, repeated every broker.probe_interval).
type LinkStatus struct {
	Up        bool
	Protocol  string    // MQTT version negotiated: "5", "3.1.1", or "" if unknown
	LastError string    // why the last probe failed ("" when Up)
	Since     time.Time // when Up last changed
	Checked   time.Time // when the last probe finished
}

// Listener is one of the gateway's listeners.
type Listener struct {
	Transport string // "udp", "dtls"
	Addr      string
}

// Config configures the admin listener. Only Listen is required.
type Config struct {
	// Listen is the TCP address to serve on, e.g. 127.0.0.1:9184.
	Listen string
	// Level, if set, is served at /loglevel: GET shows it, PUT changes it
	// ({"level":"debug"} as JSON or as curl -d sends it, level=debug, or
	// debug).
	Level *zap.AtomicLevel
	// BrokerCheck, if set, must succeed for /readyz to report ready (for
	// example upstream.(*Upstream).Ping).
	BrokerCheck func(ctx context.Context) error
	// Link, if set, reports the broker link's state: the status page shows
	// it (nil: "unknown"), and /readyz answers 503 with LastError while it
	// is down. It must return quickly: it is called on every request.
	Link func() LinkStatus
	// Mode is the gateway's bridging mode, shown on the status page
	// ("transparent": one broker connection per node).
	Mode string
	// Build is the running build, shown on the status page and exported as
	// mqttsn_build_info (zero: buildinfo.Read()).
	Build buildinfo.Info
	// Listeners are the gateway's listeners, shown on the status page.
	Listeners []Listener
	// Broker names the broker the gateway bridges to (a URL without its
	// password), shown on the status page.
	Broker string
	// Started is when the gateway started, for the uptime (zero: when New
	// was called).
	Started time.Time
	// SampleInterval is how often the status page's rate charts sample
	// the counters (default 10s; the charts span the last hour).
	SampleInterval time.Duration
	// Upstream, if set, reports the broker connections' counters.
	Upstream func() UpstreamStats
	// Aggregate, if set (broker.mode: aggregating), reports the shared
	// connections' gauges and counters.
	Aggregate func() AggregateStats
	// DTLS, if set, reports the DTLS listener's handshake counters.
	DTLS func() DTLSStats
	// Pprof serves the Go profiler (net/http/pprof) at /debug/pprof/.
	Pprof bool
	// CheckTimeout bounds BrokerCheck and the node snapshots taken for a
	// request or a scrape (default 5s).
	CheckTimeout time.Duration
}

// DefaultCheckTimeout is Config.CheckTimeout's default.
const DefaultCheckTimeout = 5 * time.Second

// Server is the admin HTTP listener.
type Server struct {
	cfg   Config
	src   Source
	log   *zap.Logger
	ln    net.Listener
	srv   *http.Server
	page  *pageRenderer
	rates *sampler

	mu     sync.Mutex    // guards closed, and orders wg.Add before wg.Wait
	closed bool          // Shutdown was called
	quit   chan struct{} // closed by Shutdown: stops the sampler
	wg     sync.WaitGroup
}

// New validates cfg, binds cfg.Listen and builds the handlers. Call Serve
// to start answering. A nil log means no logging.
func New(cfg Config, src Source, log *zap.Logger) (*Server, error) {
	if cfg.Listen == "" {
		return nil, errors.New("admin.listen: empty")
	}
	if src == nil {
		return nil, errors.New("admin: no source")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.Build.Version == "" {
		cfg.Build = buildinfo.Read()
	}
	if cfg.Started.IsZero() {
		cfg.Started = time.Now()
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = DefaultSampleInterval
	}
	if log == nil {
		log = zap.NewNop()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %q: %w", cfg.Listen, err)
	}
	s := &Server{cfg: cfg, src: src, log: log, ln: ln, page: newPageRenderer(),
		rates: newSampler(src.Stats(), cfg.SampleInterval), quit: make(chan struct{})}
	s.rates.take(time.Now()) // the charts' first point

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(src, cfg, log),
	)

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      zap.NewStdLog(log),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /api/clients", s.clients)
	mux.HandleFunc("GET /api/clients/{id...}", s.client)
	mux.HandleFunc("GET /api/gone", s.gone)
	mux.HandleFunc("GET /{$}", s.status)
	if cfg.Level != nil {
		mux.Handle("/loglevel", levelHandler(cfg.Level))
	}
	writeTimeout := 30 * time.Second
	if cfg.Pprof {
		registerPprof(mux)
		// Room for the default 30 s CPU profile and traces up to 110 s.
		writeTimeout = 2 * time.Minute
	}
	s.srv = &http.Server{
		Handler:           securityHeaders(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(log),
	}
	return s, nil
}

// Addr returns the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve() error {
	s.log.Info("admin listener serving", zap.Stringer("addr", s.ln.Addr()))
	s.mu.Lock()
	if !s.closed {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.rates.run(s.quit) }()
	}
	s.mu.Unlock()
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// Shutdown stops the listener and waits for requests in progress until ctx
// ends. It is safe to call before Serve and more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.quit)
	}
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	_ = s.ln.Close() // Serve may never have been called
	s.wg.Wait()
	return err
}

// securityHeaders keeps browsers from sniffing, framing or running scripts
// in anything served here (ClientIds are chosen by the nodes).
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz reports ready when the gateway reads its transports and, if a
// BrokerCheck is set, the broker answers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) ready(ctx context.Context) error {
	select {
	case <-s.src.Ready():
	default:
		return errors.New("gateway listeners not serving yet")
	}
	if st, ok := s.src.(stopper); ok {
		select {
		case <-st.Stopping():
			return errors.New("gateway shutting down")
		default:
		}
	}
	if s.cfg.Link != nil {
		if l := s.cfg.Link(); !l.Up {
			reason := l.LastError
			if reason == "" {
				reason = "no successful probe yet"
			}
			return fmt.Errorf("broker link down: %s", reason)
		}
	}
	if s.cfg.BrokerCheck == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
	defer cancel()
	if err := s.cfg.BrokerCheck(ctx); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

func (s *Server) clients(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	cs, err := s.src.Clients(ctx)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err)
		return
	}
	if cs == nil {
		cs = []gateway.ClientInfo{}
	}
	writeJSON(w, cs)
}

func (s *Server) client(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	id := r.PathValue("id")
	c, ok, err := s.src.Client(ctx, id)
	switch {
	case err != nil:
		httpError(w, http.StatusServiceUnavailable, err)
	case !ok:
		httpError(w, http.StatusNotFound, fmt.Errorf("no client %q", id))
	default:
		writeJSON(w, c)
	}
}

// gone lists the recently lost or forgotten nodes, newest first.
func (s *Server) gone(w http.ResponseWriter, _ *http.Request) {
	g := s.src.RecentlyGone()
	if g == nil {
		g = []gateway.GoneNode{}
	}
	writeJSON(w, g)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
