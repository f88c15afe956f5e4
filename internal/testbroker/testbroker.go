// Package testbroker starts real MQTT brokers for tests: the embedded mochi
// broker always, and Debian's mosquitto when it is installed. Brokers bind
// 127.0.0.1 on a free port and are stopped by t.Cleanup. A Target can be
// stopped and started again on the same port to test reconnects.
package testbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
)

// startTimeout bounds how long a broker may take to accept connections.
const startTimeout = 10 * time.Second

// Target is a broker to run a test against, and how the gateway speaks to
// it.
type Target struct {
	Name string // "embedded", "mosquitto", "mosquitto-3.1.1", "rabbitmq"
	URL  string // mqtt://127.0.0.1:port, unchanged across restarts
	// Protocol is the broker.protocol_version the gateway uses ("":
	// auto).
	Protocol string
	// MaxQoS, if not nil, is the broker.max_qos the gateway uses.
	MaxQoS *byte
	// V311Only is set for brokers that speak MQTT 3.1.1 only (RabbitMQ):
	// test clients must not use MQTT 5 on them.
	V311Only bool
	// Mode is the gateway's broker.mode under test ("" is transparent,
	// "aggregating"); test harnesses set it, testgw honours it.
	Mode string
	ctl  *control
}

// Aggregating is Target.Mode for a gateway in aggregating mode.
const Aggregating = "aggregating"

type control struct {
	mu   sync.Mutex
	name string
	addr string
	emb  *broker.Broker // embedded: current broker, nil while stopped
	mosq *mosquitto     // mosquitto: current process, nil while stopped
	path string         // mosquitto binary
	// external brokers (RabbitMQ) are not ours to stop or start.
	external bool
	conf     string // extra mosquitto configuration lines
}

// All returns the embedded broker and, when mosquitto is installed, a
// mosquitto broker, each already running.
func All(t *testing.T) []Target {
	t.Helper()
	targets := []Target{EmbeddedTarget(t)}
	if path, ok := MosquittoPath(); ok {
		targets = append(targets, mosquittoTarget(t, path))
	} else {
		t.Log("testbroker: mosquitto not installed; embedded broker only")
	}
	return targets
}

// AllVersions returns the targets of the end-to-end suite: the embedded
// broker (protocol auto, which picks MQTT 5), and when mosquitto is
// installed, one mosquitto the gateway speaks MQTT 5 to and one it speaks
// MQTT 3.1.1 to, each already running.
func AllVersions(t *testing.T) []Target {
	t.Helper()
	targets := []Target{EmbeddedTarget(t)}
	if path, ok := MosquittoPath(); ok {
		v5 := mosquittoTarget(t, path)
		v5.Name, v5.Protocol = "mosquitto-5", "5"
		v3 := mosquittoTarget(t, path)
		v3.Name, v3.Protocol = "mosquitto-3.1.1", "3.1.1"
		targets = append(targets, v5, v3)
	} else {
		t.Log("testbroker: mosquitto not installed; embedded broker only")
	}
	return targets
}

// Embedded starts the embedded broker on a free 127.0.0.1 port; it is
// closed by t.Cleanup.
func Embedded(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Start("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// EmbeddedTarget starts the embedded broker as a restartable Target.
func EmbeddedTarget(t testing.TB) Target {
	t.Helper()
	b, err := broker.Start("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	c := &control{name: "embedded", addr: b.Addr(), emb: b}
	t.Cleanup(func() { c.stop(t) })
	return Target{Name: c.name, URL: "mqtt://" + c.addr, ctl: c}
}

// Mosquitto starts mosquitto on a free 127.0.0.1 port and returns its URL
// and a stop function (also registered with t.Cleanup). The test is skipped
// when mosquitto is not installed.
func Mosquitto(t testing.TB) (url string, stop func()) {
	t.Helper()
	path, ok := MosquittoPath()
	if !ok {
		t.Skip("testbroker: mosquitto not installed")
	}
	tg := mosquittoTarget(t, path)
	return tg.URL, func() { tg.ctl.stop(t) }
}

// MosquittoPath finds the mosquitto binary on PATH or in /usr/sbin (which
// is often not on a non-root PATH).
func MosquittoPath() (string, bool) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, true
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// MosquittoWithUsers starts mosquitto with allow_anonymous false and a
// password file (made with mosquitto_passwd) holding users (name to
// password). The test is skipped when mosquitto or mosquitto_passwd is not
// installed.
func MosquittoWithUsers(t testing.TB, users map[string]string) Target {
	t.Helper()
	path, ok := MosquittoPath()
	if !ok {
		t.Skip("testbroker: mosquitto not installed")
	}
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Skip("testbroker: mosquitto_passwd not installed")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	for user, pass := range users {
		if out, err := exec.Command(passwd, "-b", file, user, pass).CombinedOutput(); err != nil {
			t.Fatalf("testbroker: mosquitto_passwd %s: %v\n%s", user, err, out)
		}
	}
	conf := "allow_anonymous false\npassword_file " + file + "\n"
	if os.Geteuid() == 0 {
		// Started as root, mosquitto drops to its own user before reading
		// the password file, which lives in the test's private directory.
		conf += "user root\n"
	}
	return mosquittoTargetConf(t, path, conf)
}

func mosquittoTarget(t testing.TB, path string) Target {
	t.Helper()
	return mosquittoTargetConf(t, path, "allow_anonymous true\n")
}

func mosquittoTargetConf(t testing.TB, path, conf string) Target {
	t.Helper()
	c := &control{name: "mosquitto", path: path, addr: freeAddr(t), conf: conf}
	c.start(t)
	t.Cleanup(func() { c.stop(t) })
	return Target{Name: c.name, URL: "mqtt://" + c.addr, ctl: c}
}

// Output returns what the running mosquitto logged so far ("New client
// connected ... u'alice'"), or "" for the embedded broker.
func (tg Target) Output() string {
	tg.ctl.mu.Lock()
	defer tg.ctl.mu.Unlock()
	if tg.ctl.mosq == nil {
		return ""
	}
	return tg.ctl.mosq.out.String()
}

// Addr returns the broker's host:port.
func (tg Target) Addr() string { return tg.ctl.addr }

// InProcess reports whether the target is the embedded broker, which
// Dial reaches without a socket.
func (tg Target) InProcess() bool { return tg.ctl != nil && tg.ctl.path == "" && !tg.ctl.external }

// Dial opens an in-process connection to the running embedded broker (an
// upstream.Config.Dial), as the gateway does with no broker.url. While
// the broker is stopped it fails as a stopped broker's port does
// (connection refused), and it reaches the broker started again after a
// restart. For other targets it always fails.
func (tg Target) Dial(ctx context.Context) (net.Conn, error) {
	if !tg.InProcess() {
		return nil, fmt.Errorf("testbroker: %s is not reachable in-process", tg.Name)
	}
	tg.ctl.mu.Lock()
	b := tg.ctl.emb
	tg.ctl.mu.Unlock()
	if b == nil {
		return nil, &net.OpError{Op: "dial", Net: "memory", Err: syscall.ECONNREFUSED}
	}
	return b.Dial(ctx)
}

// Broker returns the running embedded broker (for inline Subscribe and
// Publish), or nil for mosquitto or while stopped.
func (tg Target) Broker() *broker.Broker {
	tg.ctl.mu.Lock()
	defer tg.ctl.mu.Unlock()
	return tg.ctl.emb
}

// Stop stops the broker; clients see their connection drop. The broker's
// sessions are lost (neither broker persists here).
func (tg Target) Stop(t testing.TB) {
	t.Helper()
	tg.ctl.stop(t)
}

// Start starts the broker again on the same address.
func (tg Target) Start(t testing.TB) {
	t.Helper()
	tg.ctl.start(t)
}

// Restart stops and starts the broker on the same address.
func (tg Target) Restart(t testing.TB) {
	t.Helper()
	tg.ctl.stop(t)
	tg.ctl.start(t)
}

func (c *control) start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.external:
		t.Fatalf("testbroker: %s is external: it cannot be started by a test", c.name)
	case c.emb != nil || c.mosq != nil:
		t.Fatalf("testbroker: %s already running", c.name)
	case c.path == "":
		b, err := broker.Start(c.addr, zap.NewNop())
		if err != nil {
			t.Fatalf("testbroker: restart embedded on %s: %v", c.addr, err)
		}
		c.emb = b
	default:
		m, err := startMosquitto(t, c.path, c.addr, c.conf)
		if err != nil {
			t.Fatalf("testbroker: %v", err)
		}
		c.mosq = m
	}
}

func (c *control) stop(t testing.TB) {
	t.Helper()
	if c.external {
		t.Fatalf("testbroker: %s is external: it cannot be stopped by a test", c.name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.emb != nil {
		_ = c.emb.Close()
		c.emb = nil
	}
	if c.mosq != nil {
		c.mosq.stop(t)
		c.mosq = nil
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

type mosquitto struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	out     *syncBuffer
	waitErr error
}

func startMosquitto(t testing.TB, path, addr, extra string) (*mosquitto, error) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	text := fmt.Sprintf("listener %s %s\n%smax_queued_messages 100000\npersistence false\nlog_dest stderr\n", port, host, extra)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	m := &mosquitto{out: new(syncBuffer), exited: make(chan struct{})}
	m.cmd = exec.Command(path, "-c", conf)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("mosquitto exited before listening on %s: %w\n%s", addr, m.waitErr, m.out)
		case <-deadline.C:
			m.stop(t)
			return nil, fmt.Errorf("mosquitto not listening on %s after %v\n%s", addr, startTimeout, m.out)
		case <-tick.C:
		}
	}
}

// stop terminates mosquitto (SIGTERM, then SIGKILL after 5s) and waits.
func (m *mosquitto) stop(t testing.TB) {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	kill := time.NewTimer(5 * time.Second)
	defer kill.Stop()
	select {
	case <-m.exited:
	case <-kill.C:
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	var ee *exec.ExitError
	if m.waitErr != nil && !errors.As(m.waitErr, &ee) {
		t.Logf("testbroker: mosquitto: %v", m.waitErr)
	}
	if t.Failed() {
		t.Logf("testbroker: mosquitto output:\n%s", strings.TrimSpace(m.out.String()))
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
