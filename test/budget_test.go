package test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// The gateway-wide sleep-buffer budget is fair (issue 14, item 4): three
// sleeping nodes fill it, then a fourth sleeping node gets 20 QoS 1
// messages that the broker already counts as delivered. The nodes holding
// the most bytes give back, their oldest first; the fourth node gets all
// 20 on waking. Every drop is counted, and logged rate-limited. One broker
// is enough: the buffers are the gateway's own.
func TestSleepBudgetLargestHolderPays(t *testing.T) {
	const (
		budget   = 64 << 10
		hogs     = 3
		hogMsgs  = 25 // of about 1 KiB each: 3 x 25 KiB fill the 64 KiB budget
		victimN  = 20
		logLine  = "sleep-buffer budget full: message dropped"
		hogBytes = 1000
	)
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(zapcore.NewTee(testgw.Logger(t).Core(), core))
	e := RunGateway(t, testbroker.EmbeddedTarget(t), gateway.Config{MaxBufferedBytes: budget}, gateway.WithLogger(log))
	pub := sleepNewPublisher(t, e)

	census := func() gateway.Census {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		c, err := e.GW.Census(ctx)
		if err != nil {
			t.Fatalf("Census: %v", err)
		}
		return c
	}
	buffered := func(id string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		ci, ok, err := e.GW.Client(ctx, id)
		if err != nil || !ok {
			t.Fatalf("Client(%q): %v, %v", id, ok, err)
		}
		return ci.Buffered
	}

	for i := range hogs {
		n := e.Node(t)
		id := "hog-" + strconv.Itoa(i)
		n.Connect(id, true, 60)
		n.Subscribe(1, "hog/"+strconv.Itoa(i), sn.QoS1)
		sleepFor(n, sleepLong)
	}
	victim := e.Node(t)
	victim.Connect("victim", true, 60)
	sa := victim.Subscribe(1, "victim/t", sn.QoS1)
	sleepFor(victim, sleepLong)

	// The hogs fill the budget: every message is either held or dropped
	// for the budget, and what is held is within the budget.
	big := strings.Repeat("h", hogBytes)
	for k := range hogMsgs {
		for i := range hogs {
			pub.Publish("hog/"+strconv.Itoa(i), strconv.Itoa(k)+big, 1)
		}
	}
	st := e.GW.Stats()
	Eventually(t, "every hog message buffered or dropped", func() bool {
		held := 0
		for i := range hogs {
			held += buffered("hog-" + strconv.Itoa(i))
		}
		return uint64(held)+st.BufferDroppedBudget.Load() == hogs*hogMsgs
	})
	hogDrops := st.BufferDroppedBudget.Load()
	if hogDrops == 0 {
		t.Fatalf("%d hog messages of %d bytes fit a budget of %d: the test does not fill it", hogs*hogMsgs, hogBytes, budget)
	}
	Eventually(t, "the budget given back to its limit", func() bool { return census().BufferedBytes <= budget })

	// The fourth node's messages: the hogs pay for them. Together they are
	// larger than one hog message (so the budget, which may have been left
	// up to one hog message below its limit, is over again) and smaller
	// than the eighth the budget may run over while a hog's worker catches
	// up (so no timing can make the victim pay).
	pad := strings.Repeat("v", 100)
	for k := range victimN {
		pub.Publish("victim/t", "v"+strconv.Itoa(k)+pad, 1)
	}
	Eventually(t, "the victim's 20 messages buffered", func() bool { return buffered("victim") == victimN })
	Eventually(t, "the budget given back to its limit", func() bool { return census().BufferedBytes <= budget })
	if d := st.BufferDroppedBudget.Load(); d <= hogDrops {
		t.Fatalf("budget drops %d, before the victim's messages %d: nobody paid for them", d, hogDrops)
	}

	s := sleepNewNode(t, "victim")
	s.topics[sa.TopicID] = "victim/t"
	got := s.drain(victim, victimN)
	want := make([]string, victimN)
	for k := range want {
		want[k] = "v" + strconv.Itoa(k) + pad
	}
	if p := sleepPayloads(got); !slices.Equal(p, want) {
		t.Fatalf("the victim got %q, want %q", p, want)
	}

	// Counted and logged: every drop in mqttsn_dropped_total's counters,
	// the warning rate-limited (one line per 10 s, not one per drop).
	drops := st.BufferDroppedBudget.Load()
	if all := st.BufferDropped.Load(); all < drops {
		t.Fatalf("BufferDropped %d < BufferDroppedBudget %d", all, drops)
	}
	lines := logs.FilterMessage(logLine).All()
	if len(lines) == 0 || uint64(len(lines)) >= drops {
		t.Fatalf("%d %q lines for %d drops: want rate-limited", len(lines), logLine, drops)
	}
	if f := lines[0].ContextMap(); f["key"] != "sleep.max_buffered_bytes" || !strings.HasPrefix(f["client_id"].(string), "hog-") {
		t.Fatalf("first line %v: want the key and a hog's ClientId", f)
	}
}
