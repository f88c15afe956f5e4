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
	if code, out, _ := runArgs("--version"); code != 0 || !strings.HasPrefix(out, "mqttsn-gateway ") {
		t.Errorf("--version: %d %q", code, out)
	}
	code, _, errOut := runArgs("--help")
	if code != 0 || !strings.Contains(errOut, "MQTT-SN") || !strings.Contains(errOut, "-broker") || !strings.Contains(errOut, "embedded") {
		t.Errorf("--help: %d %q", code, errOut)
	}
	if code, _, _ := runArgs("--no-such-flag"); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
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
}

// The built binary serves with the embedded broker, answers a node, and
// shuts down cleanly on SIGTERM.
func TestBinaryServesAndStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mqttsn-gateway")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--embedded-broker", "127.0.0.1:0", "--log-format", "json")
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
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, `"addrs":["`); i >= 0 && strings.Contains(line, "gateway serving") {
				rest := line[i+len(`"addrs":["`):]
				addrc <- rest[:strings.Index(rest, `"`)]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
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

	// SIGHUP reloads; it must not stop the gateway.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
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
	go func() { done <- serve(ctx, cfg, log, zap.NewAtomicLevel()) }()
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
