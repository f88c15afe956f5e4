package main

import (
	"bytes"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func runArgs(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(testgw.Context(t), args, &o, &e)
	return code, o.String(), e.String()
}

func TestHelp(t *testing.T) {
	code, errOut, stderr := runArgs(t, "--help") // the help is on stdout
	if stderr != "" {
		t.Errorf("--help wrote to stderr: %q", stderr)
	}
	for _, want := range []string{"mosquitto_sub", "-sleep", "-wake-every", "-predefined", "Exit status"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if code != 0 {
		t.Errorf("--help: exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	code, out, stderr := runArgs(t, "--version")
	if code != 0 || stderr != "" || !strings.HasPrefix(out, "mqttsn-sub ") || !strings.Contains(out, "commit") {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "at least one topic"},
		{[]string{"-t", "a", "-q", "-1"}, "QoS must be"},
		{[]string{"-t", "a", "-C", "-2"}, "count"},
		{[]string{"-t", "a", "--wake-every", "1m"}, "needs --sleep"},
		{[]string{"-t", "a", "--sleep", "1m", "--wake-every", "2m"}, "shorter than --sleep"},
		{[]string{"-t", "a", "--sleep", "20h"}, "65535s"},
		{[]string{"-t", "a", "--topic-id", "0"}, "1 to 65534"},
		{[]string{"-t", ""}, "empty topic"},
		{[]string{"-t", "a", "-W", "later"}, "duration"},
		{[]string{"-t", "a", "extra"}, "unexpected argument"},
	}
	for _, tc := range cases {
		code, _, errOut := runArgs(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	cfg, code := parse([]string{"-h", "::1", "-p", "2000", "-t", "a/#", "-t", "ab", "--topic-id", "9", "-q", "2",
		"-v", "-C", "3", "-W", "90", "--sleep", "10m", "-i", "node", "-k", "30", "--predefined", "9=nine"}, io.Discard, io.Discard)
	if cfg == nil {
		t.Fatalf("parse: exit %d", code)
	}
	if cfg.addr != "[::1]:2000" || !reflect.DeepEqual(cfg.filters, []string{"a/#", "ab", snclient.PredefinedID(9)}) ||
		cfg.qos != snpacket.QoS2 || !cfg.verbose || cfg.count != 3 || cfg.timeout != 90*time.Second ||
		cfg.sleep != 10*time.Minute || cfg.wakeEvery != 5*time.Minute {
		t.Errorf("cfg %+v", cfg)
	}
	if o := cfg.opts; o.ClientID != "node" || o.KeepAlive != 30*time.Second || !o.CleanSession ||
		!reflect.DeepEqual(o.Predefined, map[uint16]string{9: "nine"}) {
		t.Errorf("options %+v", o)
	}
}

func TestSubscribeEndToEnd(t *testing.T) {
	port, b := testgw.StartEmbedded(t, gateway.Config{Predefined: map[uint16]string{7: "pre/seven"}})
	// Retained messages arrive as soon as the subscriptions are made.
	for topic, payload := range map[string]string{"e2e/a": "one", "zz": "two", "pre/seven": "three"} {
		if err := b.Publish(topic, []byte(payload), true, 1); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runArgs(t, "-p", port, "-t", "e2e/#", "-t", "zz", "--topic-id", "7", "-q", "1", "-v", "-C", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	slices.Sort(lines)
	if want := []string{"e2e/a one", "predefined:7 three", "zz two"}; !reflect.DeepEqual(lines, want) {
		t.Errorf("output %q, want %q", lines, want)
	}
}

func TestTimeout(t *testing.T) {
	port, _ := testgw.StartEmbedded(t, gateway.Config{})
	start := time.Now()
	code, out, errOut := runArgs(t, "-p", port, "-t", "nothing/here", "-W", "100ms")
	if code != exitTimeout || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d", code, out, errOut, exitTimeout)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("timed out after %v", el)
	}
}

func TestNoGatewayFails(t *testing.T) {
	code, _, errOut := runArgs(t, "-p", testgw.ClosedUDPPort(t), "-t", "a", "--retry-interval", "20ms", "--retry-count", "1")
	if code != 1 || !strings.Contains(errOut, "timeout") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// signalWriter is a stderr that reports when a line containing want was
// written.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	hit  chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.hit) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// A sleeping subscriber gets what was published while it slept at its
// next wake-ups, in order.
func TestSleepingNode(t *testing.T) {
	port, b := testgw.StartEmbedded(t, gateway.Config{})
	stderr := &signalWriter{want: "asleep for", hit: make(chan struct{})}
	var stdout bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(testgw.Context(t), []string{"-p", port, "-i", "sleeper", "-t", "cmd/#", "-q", "1", "-v", "-C", "3",
			"--sleep", "60", "--wake-every", "50ms", "-d"}, &stdout, stderr)
	}()
	select {
	case <-stderr.hit:
	case code := <-done:
		t.Fatalf("exit %d before sleeping: %s", code, stderr)
	case <-time.After(testgw.Wait):
		t.Fatalf("never fell asleep: %s", stderr)
	}
	for i, p := range []string{"a", "b", "c"} {
		if err := b.Publish("cmd/"+p, []byte(p), false, byte(i%2)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	case <-time.After(testgw.Wait):
		t.Fatalf("messages never came: %s", stderr)
	}
	if got, want := stdout.String(), "cmd/a a\ncmd/b b\ncmd/c c\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if !strings.Contains(stderr.String(), "woke up: ") {
		t.Errorf("no wake-up in the debug output: %s", stderr)
	}
}
