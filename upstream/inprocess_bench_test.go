package upstream

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// BenchmarkEmbeddedPublishQoS1 compares a QoS 1 publish through the
// embedded broker (Publish returns after the broker's PUBACK) over
// loopback TCP and over the in-process connection, on both protocol
// versions: one session publishing, and 100 sessions publishing at once
// with one message in flight each (the shape of 100 nodes in transparent
// mode). A subscriber on its own session receives every message, so the
// broker's delivery is in the figure too. See BENCHMARKS.md.
//
//	go test -run '^$' -bench BenchmarkEmbeddedPublishQoS1 -benchtime 3s ./upstream
func BenchmarkEmbeddedPublishQoS1(b *testing.B) {
	br, err := broker.Start("127.0.0.1:0", zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	for _, sessions := range []int{1, 100} {
		for _, proto := range []string{Protocol5, Protocol311} {
			for _, link := range []string{"tcp", "in-process"} {
				b.Run(fmt.Sprintf("sessions=%d/mqtt=%s/%s", sessions, proto, link), func(b *testing.B) {
					benchPublish(b, br, link, proto, sessions)
				})
			}
		}
	}
}

func benchPublish(b *testing.B, br *broker.Broker, link, proto string, sessions int) {
	b.Helper()
	cfg := Config{ProtocolVersion: proto, AckTimeout: time.Minute}
	if link == "tcp" {
		cfg.URL = br.URL()
	} else {
		cfg.Dial = br.Dial
	}
	u, err := New(cfg, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id := uniqueID("bench")
	open := func(name string, deliver func(gateway.Message)) gateway.Session {
		s, err := u.Open(ctx, gateway.SessionOptions{ClientID: id + "-" + name, CleanStart: true}, deliver)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	topic := "bench/" + id
	var received atomic.Int64
	sub := open("sub", func(gateway.Message) { received.Add(1) })
	if _, err := sub.Subscribe(ctx, topic, 1); err != nil {
		b.Fatal(err)
	}
	pubs := make([]gateway.Session, sessions)
	for i := range pubs {
		pubs[i] = open(fmt.Sprint("pub-", i), func(gateway.Message) {})
	}
	msg := gateway.Message{Topic: topic, Payload: make([]byte, 32), QoS: 1}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if sessions == 1 {
		for b.Loop() {
			if err := pubs[0].Publish(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		var next atomic.Int64
		b.SetParallelism((sessions + 1) / 2) // GOMAXPROCS times this many goroutines
		b.RunParallel(func(pb *testing.PB) {
			s := pubs[int(next.Add(1)-1)%sessions]
			for pb.Next() {
				if err := s.Publish(ctx, msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}
