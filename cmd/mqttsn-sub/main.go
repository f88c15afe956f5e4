// Command mqttsn-sub subscribes to topics on an MQTT-SN gateway and prints
// the messages, in the spirit of mosquitto_sub. It can also act as a
// sleeping node (spec §6.14).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/cli"

	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

const usage = `mqttsn-sub: subscribe to topics on an MQTT-SN v1.2 gateway and print the messages, in the spirit of mosquitto_sub.

Usage:
  mqttsn-sub [-h host] [-p port] (-t filter | --topic-id id)... [flags]

Examples:
  mqttsn-sub -t 'sensors/#' -v                       every message under sensors/, with its topic
  mqttsn-sub -t sensors/temp -t ab -q 1 -C 1         the next message on either topic, then exit
  mqttsn-sub --predefined 1=sensors/temp -t sensors/temp
  mqttsn-sub --topic-id 1 -v                         predefined id 1, printed as predefined:1 unless named
  mqttsn-sub -i node7 -t cmd/node7 --sleep 5m --wake-every 1m -v
                                                     a sleeping node: the gateway buffers messages
                                                     and hands them over at each wake-up
  mqttsn-sub --dtls --psk-identity node-1 --psk 000102030405060708090a0b0c0d0e0f -t 'cmd/#'

Topics: a two-character topic is subscribed to as a short topic name, a name
given with --predefined (or an id given with --topic-id) as a predefined
topic id, and anything else, wildcards included, by name.

Sleeping (spec §6.14): with --sleep the client subscribes, then tells the
gateway it sleeps for that long (DISCONNECT with a duration) and wakes up
every --wake-every (PINGREQ with its client id) to receive what the gateway
buffered meanwhile. Ctrl-C disconnects.

Output: one line per message, the payload (with -v: the topic, a space and
the payload). Debug output (-d) goes to standard error.

` + cli.DTLSUsage + `
Exit status: 0 after -C messages or on Ctrl-C, 1 when the gateway rejected
a request or stopped answering, 2 on a usage error, 3 when -W ran out first.

Flags:
`

// exitTimeout is the exit status when -W runs out.
const exitTimeout = 3

// disconnectWait bounds the DISCONNECT after Ctrl-C.
const disconnectWait = time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags ask for.
type config struct {
	addr          string
	opts          snclient.Options
	filters       []string // topic filters and PredefinedID pseudo-names
	qos           snpacket.QoS
	verbose       bool
	count         int
	timeout       time.Duration
	sleep         time.Duration
	wakeEvery     time.Duration
	debug         bool
	retryInterval time.Duration
	hint          string // said after a failed DTLS handshake
}

// parse reads the flags; it returns a nil config and an exit code when
// the command should stop (help, usage error).
func parse(args []string, stdout, stderr io.Writer) (*config, int) {
	fs := flag.NewFlagSet("mqttsn-sub", flag.ContinueOnError)
	fs.SetOutput(stderr) // flag errors
	fs.Usage = func() {} // --help prints below, on stdout
	showVersion := fs.Bool("version", false, "print the version and exit")
	cfg := &config{retryInterval: snclient.DefaultRetryInterval}
	predef := cli.PredefinedFlag{}
	var dtlsFlags cli.DTLSFlags
	dtlsFlags.Register(fs)
	var (
		topics     listFlag
		ids        idListFlag
		host       = fs.String("h", "127.0.0.1", "gateway `host`")
		port       = fs.Int("p", 0, "gateway `port` (default 1884, or 1885 with --dtls)")
		id         = fs.String("i", "", "client `id` (default: the DTLS identity, else mqttsn-sub- and random hex)")
		qos        = fs.Int("q", 0, "`qos` of the subscriptions: 0, 1 or 2")
		keepAlive  = fs.Int("k", 60, "keep-alive in `seconds` (0: none)")
		clean      = fs.Bool("clean", true, "clean session; --clean=false keeps the previous session's subscriptions and buffered messages")
		retryCount = fs.Int("retry-count", snclient.DefaultRetryCount, "Nretry: retransmissions before giving up")
	)
	fs.Var(&topics, "t", "topic `filter` to subscribe to (repeatable; + and # wildcards allowed)")
	fs.Var(&ids, "topic-id", "predefined topic `id` to subscribe to (repeatable)")
	fs.BoolVar(&cfg.verbose, "v", false, "print the topic before each payload")
	fs.IntVar(&cfg.count, "C", 0, "exit after `count` messages")
	fs.Var(cli.DurationFlag{D: &cfg.timeout}, "W", "exit with status 3 after this `duration` (seconds, or e.g. 90s, 5m)")
	fs.Var(cli.DurationFlag{D: &cfg.sleep}, "sleep", "act as a sleeping node, announcing this sleep `duration` (seconds, or e.g. 10m)")
	fs.Var(cli.DurationFlag{D: &cfg.wakeEvery}, "wake-every", "with --sleep, wake up every `interval` to collect messages (default half of --sleep)")
	fs.BoolVar(&cfg.debug, "d", false, "print the protocol exchange on standard error")
	fs.Var(predef, "predefined", "predefined topic `id=name`, as configured on the gateway (repeatable)")
	fs.Var(cli.DurationFlag{D: &cfg.retryInterval}, "retry-interval", "Tretry: wait this `duration` for an answer before retransmitting")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil, 0
		}
		fmt.Fprintln(stderr, "mqttsn-sub: see --help")
		return nil, 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "mqttsn-sub", buildinfo.Read())
		return nil, 0
	}
	bad := func(format string, a ...any) (*config, int) {
		fmt.Fprintf(stderr, "mqttsn-sub: "+format+" (see --help)\n", a...)
		return nil, 2
	}
	dial, err := dtlsFlags.Resolve(fs, port, id)
	if err != nil {
		return bad("%v", err)
	}
	if cfg.sleep > 0 && cfg.wakeEvery == 0 {
		cfg.wakeEvery = cfg.sleep / 2
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case len(topics) == 0 && len(ids) == 0:
		return bad("give at least one topic with -t or --topic-id")
	case *qos < 0 || *qos > 2:
		return bad("-q %d: QoS must be 0, 1 or 2", *qos)
	case cfg.count < 0:
		return bad("-C %d: count must be positive", cfg.count)
	case *keepAlive < 0 || *keepAlive > 65535:
		return bad("-k %d: keep-alive must be 0 to 65535 seconds", *keepAlive)
	case *port <= 0 || *port > 65535:
		return bad("-p %d is not a port", *port)
	case cfg.wakeEvery > 0 && cfg.sleep == 0:
		return bad("--wake-every needs --sleep")
	case cfg.sleep > 65535*time.Second:
		return bad("--sleep %v: at most 65535s", cfg.sleep)
	case cfg.sleep > 0 && cfg.sleep < time.Second:
		return bad("--sleep %v: at least 1s", cfg.sleep)
	case cfg.sleep > 0 && cfg.wakeEvery >= cfg.sleep:
		return bad("--wake-every %v must be shorter than --sleep %v, or the gateway considers the node lost", cfg.wakeEvery, cfg.sleep)
	}
	cfg.addr = net.JoinHostPort(*host, strconv.Itoa(*port))
	cfg.hint = dtlsFlags.ServerNameHint(*host)
	cfg.filters = topics
	for _, id := range ids {
		cfg.filters = append(cfg.filters, snclient.PredefinedID(id))
	}
	cfg.qos = snpacket.QoS(*qos)
	cfg.opts = snclient.Options{
		ClientID:      *id,
		CleanSession:  *clean,
		KeepAlive:     time.Duration(*keepAlive) * time.Second,
		RetryInterval: cfg.retryInterval,
		RetryCount:    *retryCount,
		Predefined:    predef,
		Dial:          dial,
	}
	if *keepAlive == 0 {
		cfg.opts.KeepAlive = -1
	}
	if *retryCount == 0 {
		cfg.opts.RetryCount = -1
	}
	if cfg.opts.ClientID == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		cfg.opts.ClientID = "mqttsn-sub-" + hex.EncodeToString(b[:])
	}
	return cfg, -1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	stderr = &cli.SyncWriter{W: stderr}
	cfg, code := parse(args, stdout, stderr)
	if cfg == nil {
		return code
	}
	code, err := subscribe(ctx, cfg, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mqttsn-sub:", err)
		if cfg.hint != "" && strings.Contains(err.Error(), "handshake") {
			fmt.Fprintln(stderr, "mqttsn-sub:", cfg.hint)
		}
	}
	return code
}

// subscribe runs the subscriber until it is done; it returns the exit
// status.
func subscribe(ctx context.Context, cfg *config, stdout, stderr io.Writer) (int, error) {
	debugf := func(format string, a ...any) {
		if cfg.debug {
			fmt.Fprintf(stderr, "mqttsn-sub: "+format+"\n", a...)
		}
	}
	enough := make(chan struct{})
	lost := make(chan error, 1)
	printed := 0 // touched only by the handler, which the client runs one at a time
	handler := func(m snclient.Message) {
		if cfg.count > 0 && printed >= cfg.count {
			return
		}
		if cfg.verbose {
			fmt.Fprintf(stdout, "%s %s\n", displayTopic(m.Topic), m.Payload)
		} else {
			fmt.Fprintf(stdout, "%s\n", m.Payload)
		}
		printed++
		if cfg.count > 0 && printed == cfg.count {
			close(enough)
		}
	}
	cfg.opts.Logger = cli.NewLogger(cfg.debug, stderr)
	cfg.opts.DefaultHandler = handler // a persistent session's leftovers
	cfg.opts.OnConnectionLost = func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	c, err := snclient.DialClient(ctx, cfg.addr, cfg.opts)
	if err != nil {
		return 1, err
	}
	defer func() { _ = c.Close() }()
	if err := c.Connect(ctx); err != nil {
		return 1, fmt.Errorf("connect to %s: %w", cfg.addr, err)
	}
	// A failure once connected (a refused SUBSCRIBE, a failed wake-up)
	// still says DISCONNECT, briefly; the normal exits do below.
	disconnected := false
	defer func() {
		if !disconnected {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectWait)
			defer cancel()
			_ = c.Disconnect(dctx)
		}
	}()
	for _, f := range cfg.filters {
		if err := c.Subscribe(ctx, f, cfg.qos, handler); err != nil {
			if ctx.Err() != nil {
				return 0, nil // Ctrl-C; the deferred DISCONNECT follows
			}
			return 1, fmt.Errorf("subscribe: %w", err)
		}
		debugf("subscribed to %s", displayTopic(f))
	}

	var timeout <-chan time.Time
	if cfg.timeout > 0 {
		t := time.NewTimer(cfg.timeout)
		defer t.Stop()
		timeout = t.C
	}
	var wake <-chan time.Time
	if cfg.sleep > 0 {
		select {
		case <-enough:
		default:
			if err := c.Sleep(ctx, cfg.sleep); err != nil {
				return 1, fmt.Errorf("sleep: %w", err)
			}
			debugf("asleep for %v, waking every %v", cfg.sleep, cfg.wakeEvery)
			tick := time.NewTicker(cfg.wakeEvery)
			defer tick.Stop()
			wake = tick.C
		}
	}
	code := 0
loop:
	for {
		select {
		case <-enough:
			break loop
		case <-ctx.Done():
			break loop
		case <-timeout:
			debugf("timed out after %v", cfg.timeout)
			code = exitTimeout
			break loop
		case err := <-lost:
			return 1, fmt.Errorf("connection lost: %w", err)
		case <-wake:
			n, err := c.Wake(ctx)
			switch {
			case errors.Is(err, snclient.ErrTimeout):
				debugf("no answer to the wake-up; asleep until the next one")
			case err != nil && ctx.Err() == nil:
				return 1, fmt.Errorf("wake up: %w", err)
			default:
				debugf("woke up: %d messages", n)
			}
		}
	}
	// After Ctrl-C the DISCONNECT waits at most disconnectWait, so the
	// command returns at once even when the gateway is gone; otherwise it
	// is retransmitted like any request.
	wait := cfg.retryInterval * time.Duration(max(cfg.opts.RetryCount, 0)+1)
	if ctx.Err() != nil {
		wait = disconnectWait
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	disconnected = true
	if err := c.Disconnect(dctx); err != nil && code == 0 && ctx.Err() == nil {
		return 1, fmt.Errorf("disconnect: %w", err)
	}
	return code, nil
}

// displayTopic prints a predefined id without a name as "predefined:N".
func displayTopic(topic string) string {
	if id, ok := snclient.ParsePredefinedID(topic); ok {
		return "predefined:" + strconv.Itoa(int(id))
	}
	return topic
}
