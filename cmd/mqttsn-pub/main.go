// Command mqttsn-pub publishes messages to an MQTT-SN gateway from a
// terminal, in the spirit of mosquitto_pub.
package main

import (
	"bufio"
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

const usage = `mqttsn-pub: publish messages to an MQTT-SN v1.2 gateway, in the spirit of mosquitto_pub.

Usage:
  mqttsn-pub [-h host] [-p port] (-t topic | --topic-id id) (-m message | -s | -l | -n) [flags]

Examples:
  mqttsn-pub -t sensors/temp -m 21.5                 connect, register the topic, publish at QoS 0
  mqttsn-pub -t sensors/temp -m 21.5 -q 2 -r         QoS 2, retained
  mqttsn-pub -t ab -m hello -q -1                    QoS -1: no connection at all, short topic "ab"
  mqttsn-pub --predefined 1=sensors/temp -t sensors/temp -m 21.5 -q -1
  mqttsn-pub --topic-id 1 -m 21.5 -q -1              predefined topic id 1 (named on the gateway)
  tail -f app.log | mqttsn-pub -t logs/app -l -q 1   one message per line
  mqttsn-pub -t a/b -m up --will-topic a/status --will-payload down -k 30
  mqttsn-pub --dtls --psk-identity node-1 --psk 000102030405060708090a0b0c0d0e0f -t a/b -m secret
  mqttsn-pub --dtls -h gw.example.com --cafile ca.pem -i node-1 -t a/b -m signed

Topics: a two-character topic is sent as a short topic name, a name given
with --predefined (or an id given with --topic-id) as a predefined topic id,
and any other name is registered with the gateway first (REGISTER). QoS -1
(spec §6.8) needs no connection and takes only short and predefined topics.

Retransmission (spec §6.13): a request the gateway does not answer is sent
again every --retry-interval, --retry-count times, then mqttsn-pub fails.

` + cli.DTLSUsage + `
Exit status: 0 when every message was sent (at QoS 1 and 2: acknowledged),
1 when the gateway rejected a request or stopped answering, 2 on a usage
error.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags ask for.
type config struct {
	addr          string
	opts          snclient.Options
	topic         string
	qos           snpacket.QoS
	retain        bool
	message       []byte
	stdin, lines  bool
	debug         bool
	retryInterval time.Duration
	hint          string // said after a failed DTLS handshake
}

// parse reads the flags; it returns a nil config and an exit code when
// the command should stop (help, usage error).
func parse(args []string, stdout, stderr io.Writer) (*config, int) {
	fs := flag.NewFlagSet("mqttsn-pub", flag.ContinueOnError)
	fs.SetOutput(stderr) // flag errors
	fs.Usage = func() {} // --help prints below, on stdout
	showVersion := fs.Bool("version", false, "print the version and exit")
	cfg := &config{retryInterval: snclient.DefaultRetryInterval}
	predef := cli.PredefinedFlag{}
	var dtlsFlags cli.DTLSFlags
	dtlsFlags.Register(fs)
	var (
		host        = fs.String("h", "127.0.0.1", "gateway `host`")
		port        = fs.Int("p", 0, "gateway `port` (default 1884, or 1885 with --dtls)")
		id          = fs.String("i", "", "client `id` (default: the DTLS identity, else mqttsn-pub- and random hex)")
		topic       = fs.String("t", "", "`topic` to publish to")
		topicID     = fs.Uint("topic-id", 0, "predefined topic `id` to publish to, instead of -t")
		message     = fs.String("m", "", "`message` to publish")
		null        = fs.Bool("n", false, "publish an empty message")
		qos         = fs.Int("q", 0, "`qos`: -1, 0, 1 or 2")
		willTopic   = fs.String("will-topic", "", "will `topic`, published by the gateway if the client is lost")
		willPayload = fs.String("will-payload", "", "will `message`")
		willQoS     = fs.Int("will-qos", 0, "will `qos`: 0, 1 or 2")
		willRetain  = fs.Bool("will-retain", false, "retain the will")
		keepAlive   = fs.Int("k", 60, "keep-alive in `seconds` (0: none)")
		clean       = fs.Bool("clean", true, "clean session; --clean=false keeps the previous session's state")
		retryCount  = fs.Int("retry-count", snclient.DefaultRetryCount, "Nretry: retransmissions before giving up")
	)
	fs.BoolVar(&cfg.stdin, "s", false, "publish all of standard input as one message")
	fs.BoolVar(&cfg.lines, "l", false, "publish each line of standard input as a message (blank lines are skipped)")
	fs.BoolVar(&cfg.retain, "r", false, "retain the message")
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
		fmt.Fprintln(stderr, "mqttsn-pub: see --help")
		return nil, 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "mqttsn-pub", buildinfo.Read())
		return nil, 0
	}
	bad := func(format string, a ...any) (*config, int) {
		fmt.Fprintf(stderr, "mqttsn-pub: "+format+" (see --help)\n", a...)
		return nil, 2
	}
	dial, err := dtlsFlags.Resolve(fs, port, id)
	if err != nil {
		return bad("%v", err)
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	sources := 0
	for _, set := range []bool{isSet(fs, "m"), *null, cfg.stdin, cfg.lines} {
		if set {
			sources++
		}
	}
	switch {
	case sources != 1:
		return bad("give exactly one of -m, -n, -s and -l")
	case (*topic == "") == (*topicID == 0):
		return bad("give a topic with -t or --topic-id (not both)")
	case *topicID > 0xFFFE:
		return bad("--topic-id %d is not a topic id (1 to 65534)", *topicID)
	case *qos < -1 || *qos > 2:
		return bad("-q %d: QoS must be -1, 0, 1 or 2", *qos)
	case *willQoS < 0 || *willQoS > 2:
		return bad("--will-qos %d: QoS must be 0, 1 or 2", *willQoS)
	case *keepAlive < 0 || *keepAlive > 65535:
		return bad("-k %d: keep-alive must be 0 to 65535 seconds", *keepAlive)
	case *port <= 0 || *port > 65535:
		return bad("-p %d is not a port", *port)
	case *willTopic == "" && (isSet(fs, "will-payload") || isSet(fs, "will-qos") || *willRetain):
		return bad("--will-payload, --will-qos and --will-retain need --will-topic")
	case *willTopic != "" && *qos == -1:
		return bad("a will needs a connection, and QoS -1 publishes without one")
	}
	cfg.addr = net.JoinHostPort(*host, strconv.Itoa(*port))
	cfg.hint = dtlsFlags.ServerNameHint(*host)
	cfg.topic = *topic
	if *topicID != 0 {
		cfg.topic = snclient.PredefinedID(uint16(*topicID))
	}
	cfg.qos = snpacket.QoS(*qos)
	cfg.message = []byte(*message)
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
		cfg.opts.ClientID = randomID("mqttsn-pub-")
	}
	if *willTopic != "" {
		cfg.opts.Will = &snclient.Will{Topic: *willTopic, Payload: []byte(*willPayload),
			QoS: snpacket.QoS(*willQoS), Retain: *willRetain}
	}
	return cfg, -1
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	stderr = &cli.SyncWriter{W: stderr}
	cfg, code := parse(args, stdout, stderr)
	if cfg == nil {
		return code
	}
	if err := publish(ctx, cfg, stdin, stderr); err != nil {
		fmt.Fprintln(stderr, "mqttsn-pub:", err)
		if cfg.hint != "" && strings.Contains(err.Error(), "handshake") {
			fmt.Fprintln(stderr, "mqttsn-pub:", cfg.hint)
		}
		return 1
	}
	return 0
}

// disconnectWait bounds the DISCONNECT sent on an interrupted or failed
// run: Ctrl-C returns within it even when the gateway is gone.
const disconnectWait = time.Second

func publish(ctx context.Context, cfg *config, stdin io.Reader, stderr io.Writer) (err error) {
	cfg.opts.Logger = cli.NewLogger(cfg.debug, stderr)
	c, err := snclient.DialClient(ctx, cfg.addr, cfg.opts)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	connected := cfg.qos != snpacket.QoSMinusOne
	if connected {
		if err := c.Connect(ctx); err != nil {
			if ctx.Err() != nil {
				// Ctrl-C while connecting: the gateway may have accepted
				// the CONNECT already; say DISCONNECT so that it does not
				// keep the node until its keep-alive runs out.
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectWait)
				_ = c.Disconnect(dctx)
				cancel()
			}
			return fmt.Errorf("connect to %s: %w", cfg.addr, err)
		}
		// Every exit once connected says DISCONNECT, so the gateway does
		// not wait for the keep-alive to run out (and publish the will).
		defer func() {
			if err == nil && ctx.Err() == nil {
				if derr := c.Disconnect(ctx); derr != nil {
					err = fmt.Errorf("disconnect: %w", derr)
				}
				return
			}
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectWait)
			defer cancel()
			_ = c.Disconnect(dctx)
		}()
	}
	pub := func(payload []byte) error {
		return c.Publish(ctx, cfg.topic, payload, cfg.qos, cfg.retain)
	}
	switch {
	case cfg.lines:
		return publishLines(ctx, stdin, pub)
	case cfg.stdin:
		b, err := io.ReadAll(io.LimitReader(stdin, 65536))
		if err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
		return pub(b)
	default:
		return pub(cfg.message)
	}
}

// publishLines publishes each non-empty line of r until it ends, a publish
// fails or ctx ends (Ctrl-C: a success when no publish was cut short). Lines are read in a goroutine of their own, so Ctrl-C
// is not held up by a read that waits for input (tail -f).
func publishLines(ctx context.Context, r io.Reader, pub func([]byte) error) error {
	type line struct {
		b   []byte
		err error // set on the last one; io.EOF at the end of input
	}
	lines := make(chan line)
	done := make(chan struct{})
	defer close(done)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 4096), 65535)
		send := func(l line) bool {
			select {
			case lines <- l:
				return true
			case <-done:
				return false
			}
		}
		for sc.Scan() {
			if len(sc.Bytes()) > 0 && !send(line{b: append([]byte(nil), sc.Bytes()...)}) {
				return
			}
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		send(line{err: err})
	}()
	for {
		select {
		case <-ctx.Done():
			return nil // Ctrl-C between lines: everything read was sent
		case l := <-lines:
			switch {
			case errors.Is(l.err, io.EOF):
				return nil
			case l.err != nil:
				return fmt.Errorf("reading standard input: %w", l.err)
			}
			if err := pub(l.b); err != nil {
				return err
			}
		}
	}
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func randomID(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
