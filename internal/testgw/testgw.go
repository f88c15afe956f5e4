// Package testgw starts a real gateway for tests, bridged to a real broker
// (see internal/testbroker), and stops it when the test ends. The
// end-to-end harness, the client package's tests and the CLI tools' tests
// all use it.
package testgw

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream/aggregate"
)

// Wait bounds every wait for an event. It is generous: a test waits on the
// event itself, so a slow machine only makes it slower, never red.
const Wait = 10 * time.Second

// Start runs a gateway bridged to tg, on 127.0.0.1:0 unless cfg.Listen
// says otherwise, waits until it serves, and shuts it down in t.Cleanup.
// opts may add transports (DTLS).
func Start(t testing.TB, tg testbroker.Target, cfg gateway.Config, opts ...gateway.Option) *gateway.Gateway {
	t.Helper()
	return StartWith(t, tg, cfg, upstream.Config{}, opts...)
}

// StartWith is Start with upstream settings: ucfg's URL and reconnect
// backoff are filled in when empty.
func StartWith(t testing.TB, tg testbroker.Target, cfg gateway.Config, ucfg upstream.Config, opts ...gateway.Option) *gateway.Gateway {
	t.Helper()
	return start(t, tg, cfg, ucfg, nil, opts...)
}

// StartAggregating runs a gateway in aggregating mode: its nodes share
// acfg.Connections broker connections.
func StartAggregating(t testing.TB, tg testbroker.Target, cfg gateway.Config, acfg aggregate.Config, opts ...gateway.Option) (*gateway.Gateway, *aggregate.Upstream) {
	t.Helper()
	var agg *aggregate.Upstream
	g := start(t, tg, cfg, upstream.Config{}, func(up gateway.Upstream) gateway.Upstream {
		agg = aggregated(t, up, acfg)
		return agg
	}, opts...)
	return g, agg
}

// ForMode returns up for a gateway in tg's mode: up itself in transparent
// mode, an aggregator over two shared sessions of up (closed in t.Cleanup)
// in aggregating mode. Tests that make their own upstream pass it through
// ForMode to run in both modes.
func ForMode(t testing.TB, tg testbroker.Target, up gateway.Upstream) gateway.Upstream {
	t.Helper()
	if tg.Mode != testbroker.Aggregating {
		return up
	}
	return aggregated(t, up, aggregate.Config{Connections: 2, ClientID: SharedClientID(t)})
}

// aggregated wraps up in an aggregator closed in t.Cleanup.
func aggregated(t testing.TB, up gateway.Upstream, acfg aggregate.Config) *aggregate.Upstream {
	t.Helper()
	agg := aggregate.New(up, acfg, Logger(t).Named("aggregate"))
	t.Cleanup(func() { // runs after the gateway's Shutdown
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if err := agg.Close(ctx); err != nil {
			t.Errorf("aggregate Close: %v", err)
		}
	})
	return agg
}

// SharedClientID names a gateway's shared connections in aggregating
// mode: short, valid on every broker, and different per gateway (a test
// may run two on one broker).
func SharedClientID(t testing.TB) string {
	t.Helper()
	h := fnv.New32a()
	_, _ = h.Write([]byte(t.Name()))
	return fmt.Sprintf("agg-%08x-%d", h.Sum32(), sharedSeq.Add(1))
}

// sharedSeq numbers the gateways of this test binary.
var sharedSeq atomic.Uint64 //nolint:gochecknoglobals // a process-wide counter of test gateways

func start(t testing.TB, tg testbroker.Target, cfg gateway.Config, ucfg upstream.Config, wrap func(gateway.Upstream) gateway.Upstream, opts ...gateway.Option) *gateway.Gateway {
	t.Helper()
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	ucfg = UpstreamConfig(tg, ucfg)
	up, err := upstream.New(ucfg, Logger(t).Named("upstream"))
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	var gu gateway.Upstream
	if wrap != nil {
		gu = wrap(up)
	} else {
		gu = ForMode(t, tg, up)
	}
	return StartUpstream(t, gu, cfg, opts...)
}

// UpstreamConfig fills in what tests leave out of ucfg: the target's URL,
// protocol version and QoS cap, and short reconnect backoffs. A test that
// leaves URL and Dial empty on the embedded broker gets what the gateway
// gets with no broker.url: the in-process connection (tg.Dial), with the
// URL only naming the broker. Outside clients (watchers) still reach it
// over TCP at tg.URL; a test that sets URL itself dials TCP too.
func UpstreamConfig(tg testbroker.Target, ucfg upstream.Config) upstream.Config {
	if ucfg.URL == "" && ucfg.Dial == nil && tg.InProcess() {
		ucfg.Dial = tg.Dial
	}
	if ucfg.URL == "" {
		ucfg.URL = tg.URL
	}
	if ucfg.ProtocolVersion == "" {
		ucfg.ProtocolVersion = tg.Protocol
	}
	if ucfg.MaxQoS == nil {
		ucfg.MaxQoS = tg.MaxQoS
	}
	if ucfg.ReconnectBackoffMin == 0 {
		ucfg.ReconnectBackoffMin, ucfg.ReconnectBackoffMax = 50*time.Millisecond, 500*time.Millisecond
	}
	return ucfg
}

// StartUpstream runs a gateway bridged through up (which the test made,
// with the settings and logger it needs), on 127.0.0.1:0 unless cfg.Listen
// says otherwise, and shuts it down in t.Cleanup.
func StartUpstream(t testing.TB, up gateway.Upstream, cfg gateway.Config, opts ...gateway.Option) *gateway.Gateway {
	t.Helper()
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"127.0.0.1:0"}
	}
	log := Logger(t)
	opts = append([]gateway.Option{gateway.WithUpstream(up), gateway.WithLogger(log.Named("gateway"))}, opts...)
	g, err := gateway.New(cfg, opts...)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := g.Serve(context.Background()); !errors.Is(err, gateway.ErrGatewayClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	select {
	case <-g.Ready():
	case <-time.After(Wait):
		t.Fatal("gateway not ready")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-stopped
	})
	return g
}

// StartEmbedded runs a gateway against a fresh embedded broker and returns
// the gateway's UDP port and the broker, for tests that drive it from
// outside (the CLI tools).
func StartEmbedded(t testing.TB, cfg gateway.Config) (port string, b *broker.Broker) {
	t.Helper()
	tg := testbroker.EmbeddedTarget(t)
	g := Start(t, tg, cfg)
	return strconv.Itoa(g.Addrs()[0].(*net.UDPAddr).Port), tg.Broker()
}

// StartDTLS runs a gateway with a PSK DTLS listener holding keys (identity
// to key) against a fresh embedded broker, and returns the DTLS port and
// the broker.
func StartDTLS(t testing.TB, keys map[string][]byte) (port string, b *broker.Broker) {
	t.Helper()
	tr, err := dtlstransport.Listen(dtlstransport.Config{Listen: "127.0.0.1:0",
		PSKFile: dtlstest.PSKFile(t, t.TempDir(), keys)}, zaptest.NewLogger(t).Named("dtls"))
	if err != nil {
		t.Fatalf("dtlstransport.Listen: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	tg := testbroker.EmbeddedTarget(t)
	g := Start(t, tg, gateway.Config{}, gateway.WithTransport(tr))
	return strconv.Itoa(g.Addrs()[1].(*net.UDPAddr).Port), tg.Broker()
}

// ClosedUDPPort is a UDP port on 127.0.0.1 where nothing listens.
func ClosedUDPPort(t testing.TB) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	_ = c.Close()
	return port
}

// Context is bounded by Wait and canceled at the end of the test.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	t.Cleanup(cancel)
	return ctx
}

// Logger logs to the test like zaptest, and drops what is logged once the
// test's cleanups have run: paho starts goroutines of its own (error
// reporting on a closed connection) that may still log a moment after the
// session that owned them closed, and testing forbids logging then.
func Logger(t testing.TB) *zap.Logger {
	t.Helper()
	g := &gatedCore{Core: zaptest.NewLogger(t).Core(), state: &gate{}}
	t.Cleanup(func() { // registered first, so it runs after every later cleanup
		g.state.mu.Lock()
		g.state.closed = true
		g.state.mu.Unlock()
	})
	return zap.New(g)
}

type gate struct {
	mu     sync.Mutex
	closed bool
}

// gatedCore writes through Core until its gate closes.
type gatedCore struct {
	zapcore.Core
	state *gate
}

func (c *gatedCore) With(fields []zap.Field) zapcore.Core {
	return &gatedCore{Core: c.Core.With(fields), state: c.state}
}

func (c *gatedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *gatedCore) Write(e zapcore.Entry, fields []zap.Field) error {
	c.state.mu.Lock()
	defer c.state.mu.Unlock()
	if c.state.closed {
		return nil
	}
	return c.Core.Write(e, fields)
}
