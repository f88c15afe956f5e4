// Command mqttsn-gateway runs the MQTT-SN gateway. With no flags it listens
// for MQTT-SN on UDP 0.0.0.0:1884 and bridges to an embedded MQTT broker on
// 127.0.0.1:1883.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mqttsn-gateway/mqttsn-gateway/admin"
	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/config"
	"github.com/mqttsn-gateway/mqttsn-gateway/store"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream/aggregate"
)

const usage = `mqttsn-gateway: an MQTT-SN v1.2 gateway that bridges sensor nodes to any MQTT broker.

Usage:
  mqttsn-gateway [flags]

With no flags it listens for MQTT-SN on UDP 0.0.0.0:1884 and bridges every
node to an embedded MQTT broker on 127.0.0.1:1883 (watch it with, e.g.,
mosquitto_sub -h 127.0.0.1 -p 1883 -t '#' -v). Give --broker (or broker.url
in the config file) to bridge to your own broker instead. Flags override the
config file. See README.md for every configuration key.

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mqttsn-gateway", flag.ContinueOnError)
	fs.SetOutput(stderr) // flag errors
	fs.Usage = func() {} // --help prints below, on stdout; errors point to it
	var (
		cfgPath     = fs.String("config", "", "YAML configuration `file`")
		checkConfig = fs.String("check-config", "", "validate the configuration `file` and exit")
		listen      = fs.String("listen", "", "UDP `addresses` to listen on, comma separated (listen.udp; default 0.0.0.0:1884)")
		brokerURL   = fs.String("broker", "", "broker `URL`, mqtt://host:port or mqtts://host:port (broker.url; default: embedded broker)")
		embedded    = fs.String("embedded-broker", "", "`address` of the embedded broker when no broker URL is set (embedded_broker.listen; default 127.0.0.1:1883)")
		logLevel    = fs.String("log-level", "", "log `level`: debug, info, warn or error (log.level; default info)")
		logFormat   = fs.String("log-format", "", "log `format`: json or console (log.format; default json, console on a terminal)")
		adminListen = fs.String("admin", "", "admin HTTP `address` for /metrics, /readyz and the status page, e.g. 127.0.0.1:9184 (admin.listen; default off)")
		showVersion = fs.Bool("version", false, "print the version and exit")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintln(stderr, "mqttsn-gateway: see --help")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mqttsn-gateway: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "mqttsn-gateway", buildinfo.Read())
		return 0
	}
	if *checkConfig != "" {
		c, err := config.Load(*checkConfig)
		if err == nil {
			err = c.CheckStart()
		}
		if err != nil {
			fmt.Fprintf(stderr, "mqttsn-gateway: %s:\n  %s\n", *checkConfig, strings.ReplaceAll(err.Error(), "\n", "\n  "))
			return 1
		}
		fmt.Fprintln(stdout, *checkConfig+": ok")
		return 0
	}

	// Flags override the file, at start and at every reload.
	overrides := func(cfg *config.File) {
		if *listen != "" {
			cfg.Listen.UDP = strings.Split(*listen, ",")
		}
		if *brokerURL != "" {
			cfg.Broker.URL = *brokerURL
		}
		if *embedded != "" {
			cfg.EmbeddedBroker.Listen = *embedded
		}
		if *logLevel != "" {
			cfg.Log.Level = *logLevel
		}
		if *logFormat != "" {
			cfg.Log.Format = *logFormat
		}
		if *adminListen != "" {
			cfg.Admin.Listen = *adminListen
		}
	}
	cfg := config.Default()
	var reread func() (*config.File, error) // nil: no file to re-read on SIGHUP
	if *cfgPath != "" {
		c, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "mqttsn-gateway:", err)
			return 1
		}
		cfg = c
		path := *cfgPath
		reread = func() (*config.File, error) {
			c, err := config.Load(path)
			if err != nil {
				return nil, err
			}
			overrides(c)
			return c, c.Check()
		}
	}
	overrides(cfg)
	err := cfg.Check()
	if err == nil {
		err = cfg.CheckStart()
	}
	if err != nil {
		fmt.Fprintln(stderr, "mqttsn-gateway:", err)
		return 1
	}
	log, lvl, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mqttsn-gateway:", err)
		return 1
	}
	defer func() { _ = log.Sync() }()
	bi := buildinfo.Read()
	log.Info("mqttsn-gateway "+bi.String(), zap.String("version", bi.Version), zap.String("commit", bi.Revision),
		zap.String("commit_time", bi.Time), zap.Bool("modified", bi.Modified), zap.String("go", bi.GoVersion))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log, lvl, reread); err != nil {
		log.Error("gateway stopped", zap.Error(err))
		return 1
	}
	return 0
}

// serve wires the parts together and runs until ctx ends. lvl is the
// logger's level, which the admin listener and a reload can change;
// reread, if not nil, reads the configuration again on SIGHUP.
func serve(ctx context.Context, cfg *config.File, log *zap.Logger, lvl zap.AtomicLevel, reread func() (*config.File, error)) error {
	ucfg := cfg.Upstream()
	var embedded *broker.Broker
	if ucfg.URL == "" {
		addr, explicit := cfg.EmbeddedListen()
		b, err := broker.Start(addr, log.Named("broker"))
		if err != nil && !explicit {
			// Another broker (a packaged mosquitto, say) holds the default
			// port: the zero-configuration start still works, elsewhere.
			log.Warn("embedded broker: default address taken, using a free port",
				zap.String("address", addr), zap.Error(err))
			b, err = broker.Start("127.0.0.1:0", log.Named("broker"))
		}
		if err != nil {
			return fmt.Errorf("embedded_broker.listen (--embedded-broker) %q: %w: another broker may run there: "+
				"set broker.url (--broker mqtt://%s) to bridge to it, or give the embedded broker another address", addr, err, addr)
		}
		defer func() { _ = b.Close() }()
		embedded = b
		ucfg.URL = b.URL() // names it (logs, status page); outside clients use it
		// The gateway's own sessions reach it in-process: no socket and
		// no file descriptor per node (issue 12 item 2).
		ucfg.Dial = b.Dial
	}
	up, err := upstream.New(ucfg, log.Named("upstream"))
	if err != nil {
		return err
	}
	// A real CONNECT at start and every broker.probe_interval: its log
	// says at once when the broker refuses the gateway, and why.
	prober := upstream.NewProber(up, upstream.ProbeClientID(cfg.GatewayID), log.Named("probe"))
	prober.SetNodeAuth(cfg.NodeAuth.Required)
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); prober.Run(probeCtx) }()
	defer func() { stopProbe(); <-probeDone }()
	st, err := openStore(cfg.Store.Path, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("store not closed cleanly", zap.String("store.path", cfg.Store.Path), zap.Error(err))
		}
	}()
	var nodesUp gateway.Upstream = up
	var agg *aggregate.Upstream
	if cfg.Aggregating() {
		// Every node over broker.connections shared connections of up.
		agg = aggregate.New(up, cfg.Aggregate(), log.Named("aggregate"))
		if cfg.Store.Path != "" {
			log.Warn("store.path with broker.mode aggregating: node sessions survive a restart, but messages the broker sent while the gateway was down and QoS 2 state on the shared connections do not (README, Durable state); use broker.mode transparent where that matters",
				zap.String("store.path", cfg.Store.Path))
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = agg.Close(cctx)
		}()
		nodesUp = agg
	}
	opts := []gateway.Option{gateway.WithLogger(log.Named("gateway")), gateway.WithUpstream(nodesUp), gateway.WithStore(st)}
	var dtlsTrs []*dtlstransport.Transport
	for _, dc := range cfg.DTLSConfigs() {
		tr, err := dtlstransport.Listen(dc, log.Named("dtls"))
		if err != nil {
			for _, t := range dtlsTrs {
				_ = t.Close()
			}
			return err
		}
		dtlsTrs = append(dtlsTrs, tr) // it logs "DTLS listener started" itself
		opts = append(opts, gateway.WithTransport(tr))
	}
	g, err := gateway.New(cfg.Gateway(), opts...)
	if err != nil {
		for _, t := range dtlsTrs {
			_ = t.Close()
		}
		return err
	}
	if cfg.Admin.Listen != "" {
		stopAdmin, err := startAdmin(cfg, ucfg.URL, g, up, agg, prober, dtlsTrs, &lvl, log.Named("admin"))
		if err != nil {
			_ = g.Shutdown(context.Background())
			return err
		}
		defer stopAdmin()
	}
	if embedded != nil {
		// Said only once the start can no longer fail on a listener.
		log.Info("embedded MQTT broker started: watch it with any MQTT client",
			zap.String("url", embedded.URL()), zap.String("example", watchCommand(embedded.Addr())),
			zap.String("gateway_sessions", "in-process, no sockets"))
	}
	log.Info("mqttsn-gateway starting", zap.Strings("udp", cfg.Listen.UDP), zap.Strings("dtls", cfg.Listen.DTLS), zap.String("broker", upstream.RedactURL(ucfg.URL)), zap.String("mode", cfg.Mode()))
	errc := make(chan error, 1)
	// Serve runs until Shutdown, which drains within shutdown_timeout; a
	// signal must not cut the drain short by ending Serve's context.
	go func() { errc <- g.Serve(context.WithoutCancel(ctx)) }()
	rl := &reloader{running: cfg, reread: reread, target: g, lvl: lvl, log: log}
	for _, t := range dtlsTrs {
		rl.dtls = append(rl.dtls, t)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case err := <-errc:
			if errors.Is(err, gateway.ErrGatewayClosed) {
				return nil
			}
			return err
		case <-hup:
			rl.reload()
		case <-ctx.Done():
			break wait
		}
	}
	log.Info("shutting down", zap.Duration("shutdown_timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := g.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, gateway.ErrGatewayClosed) {
		return err
	}
	return nil
}

// startAdmin starts the admin HTTP listener; stop shuts it down and waits
// for it.
func startAdmin(fc *config.File, brokerURL string, g *gateway.Gateway, up *upstream.Upstream, agg *aggregate.Upstream, prober *upstream.Prober, dtlsTrs []*dtlstransport.Transport, lvl *zap.AtomicLevel, log *zap.Logger) (stop func(), err error) {
	var listeners []admin.Listener
	for i, a := range g.Addrs() {
		if i < len(fc.Listen.UDP) {
			listeners = append(listeners, admin.Listener{Transport: "udp", Addr: a.String()})
		}
	}
	for _, t := range dtlsTrs {
		listeners = append(listeners, admin.Listener{Transport: "dtls", Addr: t.LocalAddr().String()})
	}
	cfg := admin.Config{
		Listeners: listeners,
		Broker:    upstream.RedactURL(brokerURL),
		Listen:    fc.Admin.Listen,
		Pprof:     fc.Admin.Pprof,
		Mode:      modeText(fc),
		Build:     buildinfo.Read(),
		// The broker link probe (broker.probe_interval): /readyz answers
		// 503 with its reason while a real CONNECT fails.
		Link:        func() admin.LinkStatus { return admin.LinkStatus(prober.Status()) },
		Level:       lvl,
		BrokerCheck: up.Ping,
		Upstream:    func() admin.UpstreamStats { return admin.UpstreamStats(up.Stats()) },
	}
	if agg != nil {
		cfg.Aggregate = func() admin.AggregateStats { return admin.AggregateStats(agg.Stats()) }
	}
	if len(dtlsTrs) > 0 {
		cfg.DTLS = func() admin.DTLSStats {
			var d admin.DTLSStats
			for _, t := range dtlsTrs {
				s := t.Stats()
				d.HandshakesOK += s.HandshakesOK.Load()
				d.HandshakesFailed += s.HandshakesFailed.Load()
				d.HandshakesRefused += s.HandshakesRefused.Load()
				d.HandshakesDisplaced += s.HandshakesDisplaced.Load()
				d.Handshaking += s.Handshaking.Load()
				d.Established += s.Established.Load()
			}
			return d
		}
	}
	srv, err := admin.New(cfg, g, log)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(); err != nil {
			log.Error("admin listener stopped", zap.Error(err))
		}
	}()
	endpoints := "status page, /metrics, /healthz, /readyz, /api/clients, /api/gone, /loglevel"
	if cfg.Pprof {
		endpoints += ", /debug/pprof"
	}
	log.Info("admin listener: "+endpoints, zap.String("url", "http://"+srv.Addr().String()+"/"))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("admin listener shutdown", zap.Error(err))
		}
		<-done
	}, nil
}

func newLogger(level, format string, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, lvl, fmt.Errorf("log.level: %w", err)
	}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl) // Lock: several goroutines log, and w may be any writer
	return zap.New(core), lvl, nil
}

// watchCommand is a mosquitto_sub command that shows the embedded broker's
// traffic.
func watchCommand(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return "mosquitto_sub -h " + host + " -p " + port + " -t '#' -v"
}

// openStore opens the durable session store at path, or none when path is
// empty (said once: nothing survives a restart then). Errors name
// store.path and the fix.
func openStore(path string, log *zap.Logger) (store.Store, error) {
	if path == "" {
		log.Info("store.path is empty: sessions are kept in memory only, and a restart loses them (nodes must CONNECT again)")
		return store.Nop{}, nil
	}
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return nil, err
	}
	log.Info("durable session store open", zap.String("store.path", path))
	return st, nil
}

// modeText describes broker.mode for the status page.
func modeText(fc *config.File) string {
	if !fc.Aggregating() {
		return "transparent (one broker connection per node)"
	}
	n := fc.Aggregate().Connections
	if n == 0 {
		n = aggregate.DefaultConnections
	}
	return fmt.Sprintf("aggregating (%d shared broker connections)", n)
}
