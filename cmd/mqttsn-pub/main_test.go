package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func runArgs(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(testgw.Context(t), args, strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func TestHelp(t *testing.T) {
	code, errOut, stderr := runArgs(t, "", "--help") // the help is on stdout
	if stderr != "" {
		t.Errorf("--help wrote to stderr: %q", stderr)
	}
	for _, want := range []string{"mosquitto_pub", "QoS -1", "-will-topic", "-predefined", "Exit status"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if code != 0 {
		t.Errorf("--help: exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	code, out, stderr := runArgs(t, "", "--version")
	if code != 0 || stderr != "" || !strings.HasPrefix(out, "mqttsn-pub ") || !strings.Contains(out, "commit") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-m", "x"}, "-t or --topic-id"},
		{[]string{"-t", "a", "--topic-id", "3", "-m", "x"}, "-t or --topic-id"},
		{[]string{"-t", "a"}, "exactly one of"},
		{[]string{"-t", "a", "-m", "x", "-s"}, "exactly one of"},
		{[]string{"-t", "a", "-m", "x", "-q", "3"}, "QoS must be"},
		{[]string{"-t", "a", "-m", "x", "--will-payload", "p"}, "need --will-topic"},
		{[]string{"-t", "ab", "-m", "x", "-q", "-1", "--will-topic", "w"}, "will needs a connection"},
		{[]string{"-t", "a", "-m", "x", "--predefined", "x"}, "id=topic"},
		{[]string{"-t", "a", "-m", "x", "--predefined", "0=a"}, "1 to 65534"},
		{[]string{"--topic-id", "70000", "-m", "x"}, "not a topic id"},
		{[]string{"-t", "a", "-m", "x", "-k", "70000"}, "keep-alive"},
		{[]string{"-t", "a", "-m", "x", "--retry-interval", "soon"}, "duration"},
		{[]string{"-t", "a", "-m", "x", "extra"}, "unexpected argument"},
		{[]string{"--no-such-flag"}, "not defined"},
	}
	for _, tc := range cases {
		code, _, errOut := runArgs(t, "", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	cfg, code := parse([]string{"-h", "gw.local", "-p", "2000", "-i", "n1", "--topic-id", "7", "-n", "-q", "-1",
		"--predefined", "7=a/b", "--predefined", "0x10=c", "-k", "0", "--retry-interval", "2", "--retry-count", "5",
		"--clean=false"}, io.Discard, io.Discard)
	if cfg == nil {
		t.Fatalf("parse: exit %d", code)
	}
	if cfg.addr != "gw.local:2000" || cfg.topic != snclient.PredefinedID(7) || cfg.qos != snpacket.QoSMinusOne ||
		len(cfg.message) != 0 {
		t.Errorf("cfg %+v", cfg)
	}
	want := snclient.Options{ClientID: "n1", KeepAlive: -1, RetryInterval: 2 * time.Second, RetryCount: 5,
		Predefined: map[uint16]string{7: "a/b", 16: "c"}}
	if !reflect.DeepEqual(cfg.opts, want) {
		t.Errorf("options %+v, want %+v", cfg.opts, want)
	}

	cfg, _ = parse([]string{"-t", "a/b", "-m", "hi", "--will-topic", "w", "--will-payload", "bye", "--will-qos", "1",
		"--will-retain", "-r"}, io.Discard, io.Discard)
	if cfg == nil || !cfg.retain || cfg.opts.Will == nil || !reflect.DeepEqual(*cfg.opts.Will, snclient.Will{Topic: "w", Payload: []byte("bye"), QoS: 1, Retain: true}) ||
		cfg.opts.KeepAlive != time.Minute || !cfg.opts.CleanSession || !strings.HasPrefix(cfg.opts.ClientID, "mqttsn-pub-") ||
		cfg.addr != "127.0.0.1:1884" {
		t.Errorf("cfg %+v", cfg)
	}
}

type msg struct {
	topic, payload string
	qos            byte
	retain         bool
}

func TestPublishEndToEnd(t *testing.T) {
	port, b := testgw.StartEmbedded(t, gateway.Config{Predefined: map[uint16]string{7: "pre/seven"}})
	seen := make(chan msg, 100)
	if err := b.Subscribe("#", func(topic string, payload []byte, qos byte, retain bool) {
		seen <- msg{topic, string(payload), qos, retain}
	}); err != nil {
		t.Fatal(err)
	}
	expect := func(want ...msg) {
		t.Helper()
		for _, w := range want {
			select {
			case got := <-seen:
				if got != w {
					t.Errorf("broker got %+v, want %+v", got, w)
				}
			case <-time.After(testgw.Wait):
				t.Fatalf("no message on the broker, want %+v", w)
			}
		}
	}
	pub := func(stdin string, args ...string) {
		t.Helper()
		if code, _, errOut := runArgs(t, stdin, append([]string{"-p", port, "-d"}, args...)...); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errOut)
		}
	}
	pub("", "-t", "e2e/a", "-m", "hello", "-q", "1", "-r", "--will-topic", "e2e/will", "--will-payload", "gone")
	expect(msg{"e2e/a", "hello", 1, true})
	pub("one\n\ntwo\n", "-t", "e2e/lines", "-l", "-q", "2")
	expect(msg{"e2e/lines", "one", 2, false}, msg{"e2e/lines", "two", 2, false})
	pub("all\nof it\n", "-t", "e2e/stdin", "-s")
	expect(msg{"e2e/stdin", "all\nof it\n", 0, false})
	pub("", "-t", "ab", "-m", "short", "-q", "-1")
	expect(msg{"ab", "short", 0, false})
	pub("", "--topic-id", "7", "-m", "by id", "-q", "-1")
	expect(msg{"pre/seven", "by id", 0, false})
	pub("", "--predefined", "7=pre/seven", "-t", "pre/seven", "-n", "-q", "1")
	expect(msg{"pre/seven", "", 1, false})
}

func TestNoGatewayFails(t *testing.T) {
	start := time.Now()
	code, _, errOut := runArgs(t, "", "-p", testgw.ClosedUDPPort(t), "-t", "a/b", "-m", "x", "--retry-interval", "20ms", "--retry-count", "1")
	if code != 1 || !strings.Contains(errOut, "timeout") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Errorf("gave up after %v", el)
	}
}

// The built binary runs as a user would run it.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	port, b := testgw.StartEmbedded(t, gateway.Config{})
	seen := make(chan string, 1)
	if err := b.Subscribe("bin/#", func(topic string, payload []byte, _ byte, _ bool) {
		seen <- topic + " " + string(payload)
	}); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "mqttsn-pub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(testgw.Context(t), bin, "-p", port, "-t", "bin/x", "-m", "from the binary", "-q", "1")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v", err)
	}
	select {
	case got := <-seen:
		if got != "bin/x from the binary" {
			t.Errorf("got %q", got)
		}
	case <-time.After(testgw.Wait):
		t.Fatal("nothing reached the broker")
	}
	var ee *exec.ExitError
	if err := exec.CommandContext(testgw.Context(t), bin, "-t", "x").Run(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("usage error: %v, want exit status 2", err)
	}
}
