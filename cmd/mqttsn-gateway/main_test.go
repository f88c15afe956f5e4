package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestVersionAndHelp(t *testing.T) {
	if code, out, _ := runArgs("--version"); code != 0 || !strings.HasPrefix(out, "mqttsn-gateway ") || !strings.Contains(out, "(commit ") {
		t.Errorf("--version: %d %q", code, out)
	}
	code, out, errOut := runArgs("--help")
	if code != 0 || errOut != "" || !strings.Contains(out, "MQTT-SN") || !strings.Contains(out, "-broker") || !strings.Contains(out, "embedded") {
		t.Errorf("--help: %d stdout %q stderr %q", code, out, errOut)
	}
	if code, out, errOut := runArgs("--no-such-flag"); code != 2 || out != "" || !strings.Contains(errOut, "no-such-flag") || !strings.Contains(errOut, "--help") {
		t.Errorf("unknown flag: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestCheckConfig(t *testing.T) {
	if code, out, errOut := runArgs("--check-config", "../../examples/gateway.yaml"); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("example: %d %q %q", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("retry:\n  count: -2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runArgs("--check-config", bad); code != 1 || !strings.Contains(errOut, "retry.count") {
		t.Errorf("bad config: %d %q", code, errOut)
	}
	if code, _, errOut := runArgs("--config", bad); code != 1 || !strings.Contains(errOut, "retry.count") {
		t.Errorf("bad config: %d %q", code, errOut)
	}
	if code, _, errOut := runArgs("--broker", "http://x"); code != 1 || !strings.Contains(errOut, "broker.url") {
		t.Errorf("bad broker flag: %d %q", code, errOut)
	}
	if code, _, errOut := runArgs("--broker", "127.0.0.1:1883"); code != 1 || !strings.Contains(errOut, "use mqtt://127.0.0.1:1883") {
		t.Errorf("broker without scheme: %d %q", code, errOut)
	}
	// README's old dual listener example: --check-config now says why it
	// cannot start.
	dual := filepath.Join(t.TempDir(), "dual.yaml")
	if err := os.WriteFile(dual, []byte("listen:\n  udp: [\"0.0.0.0:1884\", \"[::]:1884\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runArgs("--check-config", dual); code != 1 || strings.Contains(out, "ok") || !strings.Contains(errOut, "overlap") {
		t.Errorf("overlapping listeners: %d %q %q", code, out, errOut)
	}
	// A missing PSK file is found by --check-config, not by the start.
	psk := filepath.Join(t.TempDir(), "psk.yaml")
	if err := os.WriteFile(psk, []byte("listen:\n  dtls: \"127.0.0.1:0\"\ndtls:\n  psk_file: missing.txt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runArgs("--check-config", psk); code != 1 || !strings.Contains(errOut, "dtls.psk_file") || !strings.Contains(errOut, filepath.Join(filepath.Dir(psk), "missing.txt")) {
		t.Errorf("missing PSK file: %d %q", code, errOut)
	}
}

// An embedded broker address given explicitly is used as given: when it
// is taken the start fails and says what to do, and logs no "started".
func TestExplicitEmbeddedBrokerAddressTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, errOut := runArgs("--listen", "127.0.0.1:0", "--embedded-broker", l.Addr().String(), "--log-format", "json")
	if code != 1 || !strings.Contains(errOut, "embedded_broker.listen (--embedded-broker)") || !strings.Contains(errOut, "--broker mqtt://"+l.Addr().String()) {
		t.Errorf("exit %d, stderr %s", code, errOut)
	}
	if strings.Contains(errOut, "embedded MQTT broker started") {
		t.Errorf("a failed start logged that the broker started:\n%s", errOut)
	}
	// The broker starts, then the UDP listener fails: still no "started".
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	code, _, errOut = runArgs("--listen", u.LocalAddr().String(), "--embedded-broker", "127.0.0.1:0", "--log-format", "json")
	if code != 1 || !strings.Contains(errOut, "listen.udp") || strings.Contains(errOut, "embedded MQTT broker started") {
		t.Errorf("UDP port taken: exit %d, stderr %s", code, errOut)
	}
}

// The built binary serves with the embedded broker, answers a node, and
// shuts down cleanly on SIGTERM.
func TestBinaryServesAndStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mqttsn-gateway")
	// -buildvcs=auto: stamp the revision even where GOFLAGS turns it off.
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ver, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(ver), "mqttsn-gateway ") {
		t.Fatalf("--version: %v %q", err, ver)
	}
	// The go command stamps a checkout whose .git is a folder; a git
	// worktree (.git is a file) is not stamped.
	if st, err := os.Stat("../../.git"); err != nil || !st.IsDir() {
		t.Logf("not a plain git checkout: the revision is not stamped: %s", ver)
	} else if rev, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if short := strings.TrimSpace(string(rev))[:12]; !strings.Contains(string(ver), "commit "+short) {
			t.Errorf("--version %q does not name commit %s", ver, short)
		}
	}
	cfgFile := filepath.Join(t.TempDir(), "gateway.yaml")
	// At debug: a node's "connected" line is a routine per-node event.
	if err := os.WriteFile(cfgFile, []byte("log:\n  level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgFile, "--listen", "127.0.0.1:0", "--embedded-broker", "127.0.0.1:0", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// The log line "gateway serving" names the bound address.
	addrc := make(chan string, 1)
	firstc := make(chan string, 1)
	connectedc := make(chan string, 1)
	reloadc := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		for first := true; sc.Scan(); first = false {
			line := sc.Text()
			if first {
				firstc <- line
			}
			if strings.Contains(line, `"msg":"SIGHUP: configuration key`) {
				reloadc <- line
			}
			if strings.Contains(line, `"msg":"connected"`) {
				select {
				case connectedc <- line:
				default:
				}
			}
			if i := strings.Index(line, `"addrs":["`); i >= 0 && strings.Contains(line, "gateway serving") {
				rest := line[i+len(`"addrs":["`):]
				addrc <- rest[:strings.Index(rest, `"`)]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	// The first log line says which build runs.
	select {
	case first := <-firstc:
		if !strings.Contains(first, `"msg":"mqttsn-gateway `+strings.TrimPrefix(strings.TrimSpace(string(ver)), "mqttsn-gateway ")) || !strings.Contains(first, `"commit":`) {
			t.Errorf("first log line %s does not say the version %q", first, ver)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gateway logged nothing")
	}
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not log that it is serving")
	}
	c, err := snclient.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(&snpacket.Connect{CleanSession: true, Duration: 30, ClientID: "bin"}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Receive(10 * time.Second)
	if ca, ok := p.(*snpacket.Connack); err != nil || !ok || ca.ReturnCode != snpacket.Accepted {
		t.Fatalf("CONNACK: %v %v", p, err)
	}

	// The "connected" line says which transport the node came over.
	select {
	case line := <-connectedc:
		if !strings.Contains(line, `"transport":"udp"`) {
			t.Errorf("connected line without the transport: %s", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no \"connected\" log line")
	}

	// SIGHUP reloads; it must not stop the gateway. The predefined topics
	// change at once; gateway_id needs a restart, which is said at warn.
	if err := os.WriteFile(cfgFile, []byte("log:\n  level: debug\npredefined_topics:\n  5: bin/five\ngateway_id: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"level":"info","ts":`, `"level":"warn"`} {
		select {
		case line := <-reloadc:
			switch {
			case strings.Contains(line, `"key":"predefined_topics"`) && strings.Contains(line, "reloaded") && strings.Contains(line, `"level":"info"`):
			case strings.Contains(line, `"key":"gateway_id"`) && strings.Contains(line, "after a restart") && strings.Contains(line, `"level":"warn"`):
			default:
				t.Errorf("reload line %s", line)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no reload line (%s)", want)
		}
	}
	if err := c.Send(&snpacket.PingReq{}); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Receive(10 * time.Second); err != nil || p.Type() != snpacket.TypePingResp {
		t.Fatalf("after SIGHUP: %v %v", p, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// With another broker on the default embedded-broker port, the
// zero-configuration start still serves, on a free port.
func TestEmbeddedBrokerFallsBackWhenDefaultPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", config.DefaultEmbeddedBroker)
	if err != nil {
		t.Skipf("default port not free for the test: %v", err)
	}
	defer l.Close()
	fellBack, serving := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	log := zaptest.NewLogger(t).WithOptions(zap.Hooks(func(e zapcore.Entry) error {
		switch {
		case strings.HasPrefix(e.Message, "embedded broker: default address taken"):
			once1.Do(func() { close(fellBack) })
		case e.Message == "gateway serving":
			once2.Do(func() { close(serving) })
		}
		return nil
	}))
	cfg := config.Default()
	cfg.Listen.UDP = []string{"127.0.0.1:0"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, zap.NewAtomicLevel(), nil) }()
	for _, c := range []chan struct{}{fellBack, serving} {
		select {
		case <-c:
		case err := <-done:
			t.Fatalf("serve stopped: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("gateway did not fall back and serve")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
