package gateway

import (
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

func TestRejectOfCoversEveryViolation(t *testing.T) {
	seen := map[RejectReason]topicreg.Violation{}
	for _, v := range topicreg.Violations() {
		r := rejectOf(v)
		if prev, dup := seen[r]; dup {
			t.Errorf("violations %v and %v share reason %v", prev, v, r)
		}
		seen[r] = v
	}
	names := map[string]bool{}
	for _, r := range RejectReasons() {
		if n := r.String(); n == "unknown" || names[n] {
			t.Errorf("reason %d named %q", r, n)
		}
		names[r.String()] = true
	}
}

func TestCheckReserved(t *testing.T) {
	g := &Gateway{}
	log := zaptest.NewLogger(t)
	for _, c := range []struct {
		name string
		p    snpacket.Packet
		ok   bool
		r    RejectReason
	}{
		{"publish normal", &snpacket.Publish{QoS: snpacket.QoS1}, true, 0},
		{"publish reserved type", &snpacket.Publish{QoS: snpacket.QoS1, TopicIDType: 3}, false, RejectReservedTopicIDType},
		{"subscribe short", &snpacket.Subscribe{TopicIDType: snpacket.TopicShort}, true, 0},
		{"subscribe reserved type", &snpacket.Subscribe{TopicIDType: 3}, false, RejectReservedTopicIDType},
		{"subscribe reserved QoS", &snpacket.Subscribe{QoS: snpacket.QoSMinusOne}, false, RejectReservedQoS},
		{"unsubscribe reserved type", &snpacket.Unsubscribe{TopicIDType: 3}, false, RejectReservedTopicIDType},
		{"other", &snpacket.PingReq{}, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := g.stats.Rejected[c.r].Load()
			if got := g.checkReserved(log, c.p); got != c.ok {
				t.Fatalf("checkReserved = %v, want %v", got, c.ok)
			}
			if n := g.stats.Rejected[c.r].Load() - before; !c.ok && n != 1 {
				t.Fatalf("Rejected[%v] grew by %d", c.r, n)
			}
		})
	}
}
