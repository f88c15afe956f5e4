package upstream

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// TestMemoryPerSession measures heap plus goroutine stacks per idle
// session (one subscription each). It uses mosquitto when installed, so
// that the broker's memory is not counted; with the embedded broker the
// figure includes mochi's per-client cost.
func TestMemoryPerSession(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	checkLeaks(t)
	var url, name string
	if _, ok := testbroker.MosquittoPath(); ok {
		url, _ = testbroker.Mosquitto(t)
		name = "mosquitto"
	} else {
		url = testbroker.Embedded(t).URL()
		name = "embedded (includes broker memory)"
	}
	for _, proto := range []string{Protocol5, Protocol311} {
		t.Run(proto, func(t *testing.T) { memoryPerSession(t, url, name, proto) })
	}
}

func memoryPerSession(t *testing.T, url, name, proto string) {
	t.Helper()
	u, err := New(Config{URL: url, KeepAlive: time.Minute, ProtocolVersion: proto}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	before := memUse()
	sessions := make([]gateway.Session, 0, n)
	defer func() {
		for _, s := range sessions {
			_ = s.Close(ctx)
		}
	}()
	for i := range n {
		s, err := u.Open(ctx, gateway.SessionOptions{ClientID: fmt.Sprintf("mem-%s-%d", proto, i), CleanStart: true}, func(gateway.Message) {})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
		if _, err := s.Subscribe(ctx, fmt.Sprintf("mem/%d/#", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	after := memUse()
	per := (after - before) / n
	t.Logf("%s, MQTT %s: %d B (%.1f KiB) heap+stack per idle session, %d goroutines for %d sessions",
		name, proto, per, float64(per)/1024, runtime.NumGoroutine(), n)
	if name == "mosquitto" && per > 32<<10 {
		t.Errorf("%d B per session, budget 32 KiB", per)
	}
}

func memUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}
