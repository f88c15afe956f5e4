package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/config"
)

type fakeTarget struct {
	predef map[uint16]string
	allow  []string
	fail   bool
}

func (f *fakeTarget) SetPredefined(m map[uint16]string) error {
	if f.fail {
		return errors.New("refused")
	}
	f.predef = m
	return nil
}

func (f *fakeTarget) SetForwarderAllow(l []string) error { f.allow = l; return nil }

type fakeKeys struct{ reloads int }

func (f *fakeKeys) Reload() error       { f.reloads++; return nil }
func (f *fakeKeys) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1885} }

// SIGHUP applies the log level, predefined topics and forwarder allow-list
// at once, re-reads the PSK file, and warns about each other changed key,
// at every SIGHUP until a restart.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("log:\n  level: info\n")
	running, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	target, keys := &fakeTarget{}, &fakeKeys{}
	r := &reloader{running: running, target: target, lvl: lvl, dtls: []keyReloader{keys}, log: zap.New(core),
		reread: func() (*config.File, error) {
			c, err := config.Load(path)
			if err != nil {
				return nil, err
			}
			return c, c.Check()
		}}

	write(`log:
  level: debug
predefined_topics:
  1: "sensors/temperature"
forwarders:
  allow: ["10.0.0.0/8"]
gateway_id: 9
broker:
  url: "mqtt://127.0.0.1:1883"
`)
	r.reload()
	if lvl.Level() != zapcore.DebugLevel || target.predef[1] != "sensors/temperature" || !reflect.DeepEqual(target.allow, []string{"10.0.0.0/8"}) || keys.reloads != 1 {
		t.Errorf("level %v, predefined %v, allow %v, PSK reloads %d", lvl.Level(), target.predef, target.allow, keys.reloads)
	}
	restart := func() []string {
		var ks []string
		for _, e := range logs.FilterMessage("SIGHUP: configuration key changed: it takes effect after a restart").TakeAll() {
			if e.Level != zapcore.WarnLevel {
				t.Errorf("restart notice at %v, want warn", e.Level)
			}
			ks = append(ks, e.ContextMap()["key"].(string))
		}
		return ks
	}
	if got, want := restart(), []string{"broker.url", "gateway_id"}; !reflect.DeepEqual(got, want) {
		t.Errorf("restart needed for %v, want %v", got, want)
	}
	if n := logs.FilterMessage("SIGHUP: configuration key reloaded").Len(); n != 3 {
		t.Errorf("%d keys reloaded, want 3", n)
	}

	// Again, unchanged: the keys needing a restart are named again, the
	// applied ones not.
	logs.TakeAll()
	r.reload()
	if got := restart(); !reflect.DeepEqual(got, []string{"broker.url", "gateway_id"}) {
		t.Errorf("second SIGHUP: restart needed for %v", got)
	}
	if n := logs.FilterMessage("SIGHUP: configuration key reloaded").Len(); n != 0 {
		t.Errorf("second SIGHUP reloaded %d keys", n)
	}

	// A file with a mistake changes nothing and says why.
	logs.TakeAll()
	write("log:\n  levl: warn\n")
	r.reload()
	if lvl.Level() != zapcore.DebugLevel {
		t.Error("a broken file changed the level")
	}
	if e := logs.FilterMessage("SIGHUP: configuration not reloaded, the running one stays").All(); len(e) != 1 ||
		!strings.Contains(e[0].ContextMap()["error"].(string), `unknown key "levl" in log: did you mean "level"?`) {
		t.Errorf("broken file: %v", e)
	}

	// A value the gateway refuses keeps the running one.
	logs.TakeAll()
	target.fail = true
	write("log:\n  level: debug\npredefined_topics:\n  1: \"other\"\nforwarders:\n  allow: [\"10.0.0.0/8\"]\ngateway_id: 9\nbroker:\n  url: \"mqtt://127.0.0.1:1883\"\n")
	r.reload()
	if target.predef[1] != "sensors/temperature" || r.running.PredefinedTopics[1] != "sensors/temperature" {
		t.Errorf("refused table applied: %v", target.predef)
	}
	if logs.FilterMessage("SIGHUP: configuration key not reloaded, the running value stays").Len() != 1 {
		t.Error("refusal not logged")
	}
}
