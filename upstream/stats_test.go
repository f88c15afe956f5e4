package upstream

import (
	"context"
	"fmt"
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// The counters follow a session through a broker restart, and Ping tells
// whether the broker is reachable.
func TestStatsAndPing(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.EmbeddedTarget(t)
	u := testUpstream(t, tg.URL)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := u.Ping(ctx); err != nil {
		t.Fatalf("Ping with the broker up: %v", err)
	}
	s := opener(u)(t, gateway.SessionOptions{ClientID: uniqueID("st"), CleanStart: true}, nil)
	if st := u.Stats(); st != (Stats{Connected: 1, Connects: 1}) {
		t.Fatalf("after Open: %+v", st)
	}

	tg.Stop(t)
	if err := u.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with the broker stopped")
	}
	eventually(t, "connection lost and a reconnect attempt failed", func() error {
		if st := u.Stats(); st.Connected != 0 || st.Lost != 1 || st.ConnectFailures == 0 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})

	tg.Start(t)
	eventually(t, "reconnected", func() error {
		if st := u.Stats(); st.Connected != 1 || st.Reconnects != 1 || st.Connects != 2 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	closeSession(t, s)
	if st := u.Stats(); st.Connected != 0 {
		t.Fatalf("after Close: %+v", st)
	}
}
