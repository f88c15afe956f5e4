package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream/aggregate"
)

// BenchmarkEmbeddedGatewayQoS1 is QoS 1 from 100 nodes, one message in
// flight each (PUBLISH, then wait for PUBACK), through a real gateway to
// its embedded broker: in transparent mode (a broker connection per node)
// and in aggregating mode (4 shared connections), each over loopback TCP
// and over the in-process connection. Nothing logs. See BENCHMARKS.md.
//
//	go test -run '^$' -bench BenchmarkEmbeddedGatewayQoS1 -benchtime 5s ./test
func BenchmarkEmbeddedGatewayQoS1(b *testing.B) {
	for _, mode := range []string{"transparent", "aggregating"} {
		for _, link := range []string{"tcp", "in-process"} {
			b.Run(mode+"/"+link, func(b *testing.B) { benchGateway(b, mode, link) })
		}
	}
}

func benchGateway(b *testing.B, mode, link string) {
	b.Helper()
	const nodes = 100
	tg := testbroker.EmbeddedTarget(b)
	ucfg := upstream.Config{}
	if link == "tcp" {
		ucfg.URL = tg.URL
	}
	up, err := upstream.New(testgw.UpstreamConfig(tg, ucfg), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	var gu gateway.Upstream = up
	if mode == "aggregating" {
		agg := aggregate.New(up, aggregate.Config{ClientID: "bench-gw"}, zap.NewNop())
		b.Cleanup(func() { _ = agg.Close(context.Background()) }) // after the gateway's Shutdown
		gu = agg
	}
	g, err := gateway.New(gateway.Config{Listen: []string{"127.0.0.1:0"}}, gateway.WithUpstream(gu), gateway.WithLogger(zap.NewNop()))
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(context.Background()) }()
	select {
	case <-g.Ready():
	case <-time.After(Wait):
		b.Fatal("gateway not ready")
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		_ = g.Shutdown(ctx)
		if err := <-served; !errors.Is(err, gateway.ErrGatewayClosed) {
			b.Errorf("Serve: %v", err)
		}
	})
	addr := g.Addrs()[0].String()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	clients := make([]*snclient.Client, nodes)
	for i := range clients {
		c, err := snclient.DialClient(ctx, addr, snclient.Options{ClientID: fmt.Sprintf("bench-%s-%s-%d", mode, link, i), CleanSession: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		if err := c.Connect(ctx); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	payload := make([]byte, 64)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(nodes / 2) // 2 cores: one goroutine per node
	b.ResetTimer()
	start, writes := time.Now(), writeSyscalls()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % nodes
		c := clients[i]
		topic := fmt.Sprintf("bench/%d", i)
		for pb.Next() {
			if err := c.Publish(ctx, topic, payload, sn.QoS1, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
	if w := writeSyscalls(); w > 0 {
		// The process's write system calls (gateway, broker and nodes
		// together) per message: fewer when writes are coalesced.
		b.ReportMetric(float64(w-writes)/float64(b.N), "writes/msg")
	}
}

// writeSyscalls is the process's count of write system calls so far
// (/proc/self/io syscw; 0 where there is none).
func writeSyscalls() uint64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}
