package gateway

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// A UDP listener is read in batches; a node on IPv4 and one on IPv6 (a
// socket of each family) are answered, and with limits.read_batch 1 the
// listener is read one datagram at a time.
func TestUDPListenersReadInBatches(t *testing.T) {
	for _, c := range []struct {
		name, listen, network string
		batch                 int
	}{
		{"ipv4", "127.0.0.1:0", "udp4", 0},
		{"ipv6", "[::1]:0", "udp6", 0},
		{"dual-stack", "[::]:0", "udp4", 0},
		{"one-at-a-time", "127.0.0.1:0", "udp4", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, err := New(Config{Listen: []string{c.listen}, ReadBatch: c.batch}, WithUpstream(newFakeUpstream()))
			if err != nil {
				if c.network == "udp6" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); _ = g.Serve(context.Background()) }()
			<-g.Ready()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = g.Shutdown(ctx)
				<-done
			})
			to := g.Addrs()[0].(*net.UDPAddr)
			if c.name == "dual-stack" {
				to = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to.Port}
			}
			conn, err := net.DialUDP(c.network, nil, to)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			b, _ := snpacket.Marshal(&snpacket.Connect{CleanSession: true, Duration: 60, ClientID: "batch-" + c.name})
			if _, err := conn.Write(b); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 512)
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no CONNACK: %v", err)
			}
			if p, err := snpacket.Unmarshal(buf[:n]); err != nil || p.(*snpacket.Connack).ReturnCode != snpacket.Accepted {
				t.Fatalf("got %v %v", p, err)
			}
			st := g.Stats()
			batches, in := st.ReadBatches.Load(), st.DatagramsIn.Load()
			if c.batch == 1 && batches != 0 || c.batch != 1 && (batches == 0 || batches > in) {
				t.Errorf("read_batch %d: %d batched reads for %d datagrams", c.batch, batches, in)
			}
		})
	}
}
