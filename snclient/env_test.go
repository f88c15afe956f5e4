package snclient_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// wait bounds every wait for an event; tests wait on the event itself, so
// a slow machine makes them slower, never red.
const wait = 10 * time.Second

// env is a real gateway bridged to the embedded broker.
type env struct {
	addr   string
	broker *broker.Broker
}

// startGateway runs a gateway on 127.0.0.1:0 against a fresh embedded
// broker; both stop in t.Cleanup.
func startGateway(t *testing.T, cfg gateway.Config) *env {
	t.Helper()
	tg := testbroker.EmbeddedTarget(t)
	g := testgw.Start(t, tg, cfg)
	return &env{addr: g.Addrs()[0].String(), broker: tg.Broker()}
}

// received is a message seen on the broker or by a handler.
type received struct {
	topic   string
	payload string
	qos     int
	retain  bool
}

// watch subscribes to filter on the broker, inline.
func (e *env) watch(t *testing.T, filter string) <-chan received {
	t.Helper()
	ch := make(chan received, 1000)
	err := e.broker.Subscribe(filter, func(topic string, payload []byte, qos byte, retain bool) {
		select {
		case ch <- received{topic, string(payload), int(qos), retain}:
		default:
		}
	})
	if err != nil {
		t.Fatalf("broker subscribe: %v", err)
	}
	return ch
}

// publish publishes on the broker, inline.
func (e *env) publish(t *testing.T, topic, payload string, qos byte, retain bool) {
	t.Helper()
	if err := e.broker.Publish(topic, []byte(payload), retain, qos); err != nil {
		t.Fatalf("broker publish: %v", err)
	}
}

// client dials addr and closes the client in t.Cleanup.
func client(t *testing.T, addr string, opts snclient.Options) *snclient.Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t).Named(opts.ClientID)
	}
	c, err := snclient.DialClient(ctx(t), addr, opts)
	if err != nil {
		t.Fatalf("DialClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ctx is a context bounded by wait and canceled at the end of the test.
func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

func next[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// collector is a Handler that sends what it receives to a channel.
func collector() (snclient.Handler, <-chan received) {
	ch := make(chan received, 1000)
	return func(m snclient.Message) {
		ch <- received{m.Topic, string(m.Payload), int(m.QoS), m.Retain}
	}, ch
}

// relay forwards datagrams between one client and the gateway, and drops
// those from the client that drop says to.
type relay struct {
	conn *net.UDPConn
	gw   *net.UDPAddr

	mu     sync.Mutex
	drop   func(p snpacket.Packet) bool
	seen   []snpacket.Packet // from the client, dropped or not
	client net.Addr
}

func newRelay(t *testing.T, gwAddr string) *relay {
	t.Helper()
	gw, err := net.ResolveUDPAddr("udp", gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{conn: conn, gw: gw}
	done := make(chan struct{})
	go r.serve(done)
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return r
}

func (r *relay) addr() string { return r.conn.LocalAddr().String() }

func (r *relay) setDrop(f func(snpacket.Packet) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop = f
}

// sent returns the client's datagrams of type typ so far.
func (r *relay) sent(typ snpacket.MsgType) []snpacket.Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []snpacket.Packet
	for _, p := range r.seen {
		if p.Type() == typ {
			out = append(out, p)
		}
	}
	return out
}

func (r *relay) serve(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 65536)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		if ua, ok := from.(*net.UDPAddr); ok && ua.Port == r.gw.Port && ua.IP.Equal(r.gw.IP) {
			r.mu.Lock()
			to := r.client
			r.mu.Unlock()
			if to != nil {
				_, _ = r.conn.WriteTo(b, to)
			}
			continue
		}
		p, err := snpacket.Unmarshal(b)
		if err != nil {
			continue
		}
		r.mu.Lock()
		r.client = from
		r.seen = append(r.seen, p)
		drop := r.drop != nil && r.drop(p)
		r.mu.Unlock()
		if !drop {
			_, _ = r.conn.WriteTo(b, r.gw)
		}
	}
}
