// Command mqttsn-bench is a load generator for MQTT-SN gateways. It
// simulates many nodes over UDP (one socket per node, as real nodes have
// one address each, or --nodes-per-socket nodes behind each simulated
// forwarder, as behind an 802.15.4 border router) and watches the MQTT broker behind the gateway with
// its own MQTT client, so that it can tell what was offered, what the
// gateway acknowledged and what actually reached the broker.
//
// Scenarios:
//
//	connect  N nodes CONNECT at a rate; connect latency, time to all connected,
//	         gateway memory per node (with --gateway-pid); with --sleepers,
//	         that many of them then sleep and wake as in sleepy
//	publish  N nodes publish at QoS -1/0/1/2, at a rate or as fast as the
//	         in-flight window allows; an MQTT subscriber counts deliveries,
//	         loss and duplicates (sequence numbers) and end-to-end latency
//	direct   the ceiling: N MQTT publishers straight to the broker, same
//	         QoS, same payload, same subscriber
//	fanout   N nodes subscribe to a wildcard; an MQTT publisher publishes;
//	         deliveries, loss and duplicates are counted at the nodes
//	sleepy   N nodes cycle connect, subscribe, sleep; one message per node
//	         is published while they sleep; they wake with PINGREQ(ClientId)
//	         and must receive it
//
// Helpers: "freeport tcp|udp" prints a free loopback port; "report FILE..."
// prints a markdown table of --json results.
//
// Every run ends by itself (--duration or --count, then --drain).
package main

import (
	"context"
	"encoding/json"
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

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo"
)

type config struct {
	scenario    string
	gateway     string
	broker      string
	n           int
	rate        float64
	connectRate float64
	qos         int
	payload     int
	duration    time.Duration
	count       int
	window      int
	drain       time.Duration
	retry       time.Duration
	retries     int
	keepAlive   time.Duration
	prefix      string
	idPrefix    string
	label       string
	jsonOut     bool
	gatewayPID  int
	admin       string
	hold        time.Duration
	cycles      int
	sleep       time.Duration
	settle      time.Duration
	workers     int
	subQoS      int
	// nodesPerSocket > 1 puts that many nodes behind each simulated
	// forwarder socket (spec §5.5 encapsulation).
	nodesPerSocket int
	sleepers       int
}

const usage = `mqttsn-bench: load generator for MQTT-SN gateways

Usage:
  mqttsn-bench SCENARIO [flags]      SCENARIO: connect, publish, direct, fanout, sleepy
  mqttsn-bench freeport tcp|udp      print a free port on 127.0.0.1
  mqttsn-bench report FILE.json...   markdown table of --json results

Run "mqttsn-bench SCENARIO --help" for the flags.
`

// scenario returns the run function of a scenario, or nil.
func scenario(name string) func(context.Context, *config) (*Result, error) {
	switch name {
	case "connect":
		return runConnect
	case "publish":
		return runPublish
	case "direct":
		return runDirect
	case "fanout":
		return runFanout
	case "sleepy":
		return runSleepy
	default:
		return nil
	}
}

// parseArgs parses the command line of one scenario run.
func parseArgs(args []string, stderr io.Writer) (*config, error) {
	if len(args) == 0 {
		return nil, errors.New("no scenario given")
	}
	cfg := &config{scenario: args[0]}
	if scenario(cfg.scenario) == nil {
		return nil, fmt.Errorf("unknown scenario %q", cfg.scenario)
	}
	fs := flag.NewFlagSet("mqttsn-bench "+cfg.scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.gateway, "gateway", "127.0.0.1:1884", "gateway UDP address")
	fs.StringVar(&cfg.broker, "broker", "127.0.0.1:1883", "MQTT broker behind the gateway (host:port or mqtt://host:port), for the subscriber, the publisher and direct clients")
	fs.IntVar(&cfg.n, "n", 100, "number of nodes (or direct MQTT publishers)")
	fs.Float64Var(&cfg.rate, "rate", 0, "publish, direct: messages/s offered in total (0: as fast as the window allows); connect: CONNECTs/s; fanout: messages/s of the MQTT publisher; sleepy: wake-ups/s (0: --connect-rate)")
	fs.Float64Var(&cfg.connectRate, "connect-rate", 2000, "CONNECTs/s while setting nodes up (publish, fanout, sleepy)")
	fs.IntVar(&cfg.qos, "qos", 1, "QoS: -1 (publish only), 0, 1 or 2")
	fs.IntVar(&cfg.payload, "payload", 64, "payload size in bytes (at least 16: source, sequence number, timestamp)")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to offer load")
	fs.IntVar(&cfg.count, "count", 0, "messages per node or publisher (0: until --duration); fanout: messages in total")
	fs.IntVar(&cfg.window, "window", 1, "QoS 1/2 messages in flight per node (the spec: 1)")
	fs.DurationVar(&cfg.drain, "drain", 10*time.Second, "how long to wait for outstanding acks and deliveries after the load")
	fs.DurationVar(&cfg.retry, "retry", 5*time.Second, "retransmission interval (Tretry) of the simulated nodes")
	fs.IntVar(&cfg.retries, "retries", 3, "retransmissions (Nretry) before a node gives up on a request")
	fs.DurationVar(&cfg.keepAlive, "keepalive", 10*time.Minute, "keep-alive the nodes announce in CONNECT")
	fs.StringVar(&cfg.prefix, "topic-prefix", "", "topic prefix (default bench/<scenario>/<random>)")
	fs.StringVar(&cfg.idPrefix, "id-prefix", "", "ClientId prefix (default b<random>-)")
	fs.StringVar(&cfg.label, "label", "", "label stored in the result")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the result as JSON on stdout (the summary goes to stderr)")
	fs.IntVar(&cfg.gatewayPID, "gateway-pid", 0, "gateway process id: report its memory (VmRSS) before and after")
	fs.StringVar(&cfg.admin, "admin", "", "gateway admin address (host:port): report its drop counters")
	fs.DurationVar(&cfg.hold, "hold", 2*time.Second, "connect: how long nodes stay connected before memory is read")
	fs.IntVar(&cfg.cycles, "cycles", 2, "sleepy: sleep/wake cycles, one message per node each")
	fs.DurationVar(&cfg.sleep, "sleep", 10*time.Minute, "sleepy: sleep duration announced in DISCONNECT")
	fs.DurationVar(&cfg.settle, "settle", time.Second, "sleepy: pause between publishing and waking the nodes")
	fs.IntVar(&cfg.subQoS, "sub-qos", -1, "QoS of the watching MQTT subscriber (default: the scenario's QoS, at least 0)")
	fs.IntVar(&cfg.nodesPerSocket, "nodes-per-socket", 1, "nodes per UDP socket: 1 gives each node its own socket; K > 1 puts K nodes behind each simulated forwarder, which encapsulates their messages with a Wireless Node Id (spec 5.5), so 100,000 nodes fit in 100,000/K descriptors")
	fs.IntVar(&cfg.sleepers, "sleepers", 0, "connect: this many of the nodes subscribe, then sleep and wake in --cycles cycles with one --qos message each, while the others stay connected")
	fs.IntVar(&cfg.workers, "publishers", 16, "sleepy, fanout: concurrent publishes of the MQTT publisher")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *config) validate() error {
	switch {
	case c.n < 1:
		return errors.New("-n must be at least 1")
	case c.qos < -1 || c.qos > 2:
		return fmt.Errorf("-qos %d: want -1, 0, 1 or 2", c.qos)
	case c.qos == -1 && c.scenario != "publish":
		return errors.New("-qos -1 exists only for publish")
	case c.payload < payloadHeader:
		return fmt.Errorf("-payload %d: at least %d", c.payload, payloadHeader)
	case c.payload > 60000:
		return fmt.Errorf("-payload %d: at most 60000", c.payload)
	case c.window < 1:
		return errors.New("-window must be at least 1")
	case c.window > 1000:
		return errors.New("-window at most 1000")
	case c.rate < 0 || c.connectRate <= 0:
		return errors.New("-rate must be >= 0 and -connect-rate > 0")
	case c.duration <= 0 && c.count <= 0:
		return errors.New("give -duration or -count")
	case c.retry <= 0 || c.retries < 0:
		return errors.New("-retry must be positive, -retries >= 0")
	case c.keepAlive < time.Second || c.keepAlive > 65535*time.Second:
		return errors.New("-keepalive between 1s and 65535s")
	case c.sleep < time.Second || c.sleep > 65535*time.Second:
		return errors.New("-sleep between 1s and 65535s")
	case c.cycles < 1:
		return errors.New("-cycles must be at least 1")
	case c.subQoS < -1 || c.subQoS > 2:
		return fmt.Errorf("-sub-qos %d: want 0, 1 or 2", c.subQoS)
	case c.workers < 1:
		return errors.New("-publishers must be at least 1")
	case c.nodesPerSocket < 1 || c.nodesPerSocket > 65535:
		return errors.New("-nodes-per-socket between 1 and 65535")
	case c.sleepers < 0 || c.sleepers > c.n:
		return errors.New("-sleepers between 0 and -n")
	case c.sleepers > 0 && c.scenario != "connect":
		return errors.New("-sleepers exists only for connect (the sleepy scenario makes every node sleepy)")
	}
	c.broker = strings.TrimPrefix(c.broker, "mqtt://")
	tag := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	if c.prefix == "" {
		c.prefix = "bench/" + c.scenario + "/" + tag
	}
	if c.idPrefix == "" {
		c.idPrefix = "b" + tag + "-"
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, "mqttsn-bench", buildinfo.Read())
		return 0
	case "freeport":
		return freePort(args[1:], stdout, stderr)
	case "report":
		return report(args[1:], stdout, stderr)
	}
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mqttsn-bench: %v\n", err)
		return 2
	}
	raiseFileLimit((cfg.n+cfg.nodesPerSocket-1)/cfg.nodesPerSocket+1024, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := scenario(cfg.scenario)(ctx, cfg)
	if res != nil {
		res.finish(cfg)
		res.print(stderr)
		if cfg.jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(res)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mqttsn-bench: %v\n", err)
		return 1
	}
	return 0
}

// raiseFileLimit raises RLIMIT_NOFILE so that one socket per node fits:
// the soft limit up to the hard one, and the hard one too when allowed.
func raiseFileLimit(want int, stderr io.Writer) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur >= uint64(want) {
		return
	}
	if lim.Max < uint64(want) {
		raised := syscall.Rlimit{Cur: uint64(want), Max: uint64(want)}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < uint64(want) {
		fmt.Fprintf(stderr, "mqttsn-bench: warning: open files limited to %d, %d wanted\n", lim.Cur, want)
	}
}

func freePort(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || (args[0] != "tcp" && args[0] != "udp") {
		fmt.Fprintln(stderr, "usage: mqttsn-bench freeport tcp|udp")
		return 2
	}
	var port int
	if args[0] == "tcp" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	} else {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		port = c.LocalAddr().(*net.UDPAddr).Port
		_ = c.Close()
	}
	fmt.Fprintln(stdout, port)
	return 0
}
