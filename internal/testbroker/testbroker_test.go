package testbroker_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

func TestAllRestart(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })

	targets := testbroker.All(t)
	if targets[0].Name != "embedded" || targets[0].Broker() == nil {
		t.Fatalf("first target %q, broker %v", targets[0].Name, targets[0].Broker())
	}
	for _, tg := range targets {
		t.Run(tg.Name, func(t *testing.T) {
			addr := strings.TrimPrefix(tg.URL, "mqtt://")
			if addr != tg.Addr() {
				t.Fatalf("URL %q, Addr %q", tg.URL, tg.Addr())
			}
			dial(t, addr, true)
			tg.Stop(t)
			dial(t, addr, false)
			tg.Start(t)
			dial(t, addr, true)
			tg.Restart(t)
			dial(t, addr, true)
		})
	}
}

func TestMosquitto(t *testing.T) {
	url, stop := testbroker.Mosquitto(t)
	addr := strings.TrimPrefix(url, "mqtt://")
	dial(t, addr, true)
	stop()
	dial(t, addr, false)
}

func dial(t *testing.T, addr string, want bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
	}
	if (err == nil) != want {
		t.Fatalf("dial %s: %v, want reachable=%v", addr, err, want)
	}
}
