// Package broker runs the embedded MQTT broker (mochi-mqtt v2) used when no
// broker URL is configured, and in tests. It speaks MQTT 5, 3.1.1 and 3.1
// and allows every client. It serves two listeners: a TCP one, for outside
// MQTT clients (mosquitto_sub, tests' watchers), and an in-process one
// (Dial), through which the gateway's own sessions reach it without a
// socket or file descriptor each.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"
)

// Broker is a running embedded broker.
type Broker struct {
	srv  *mqtt.Server
	addr string
	mem  *memListener

	mu     sync.Mutex
	nextID int // inline subscription identifiers
	closed bool
}

// Start starts a broker listening on addr (host:port; port 0 picks a free
// one). mochi's own logging goes to log at Warn and above; a nil log
// discards it.
func Start(addr string, log *zap.Logger) (*Broker, error) {
	if log == nil {
		log = zap.NewNop()
	}
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       newSlogLogger(log.Named("mochi")),
	})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	tcp := newTCPListener("tcp", addr)
	if err := srv.AddListener(tcp); err != nil { // binds the socket
		_ = srv.Close()
		return nil, fmt.Errorf("broker: listen %s: %w", addr, err)
	}
	mem := newMemListener("in-process")
	if err := srv.AddListener(mem); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.Serve(); err != nil { // starts goroutines and returns
		_ = srv.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return &Broker{srv: srv, addr: tcp.Address(), mem: mem}, nil
}

// Dial opens an in-process connection to the broker: a net.Conn over
// memory (internal/memconn), served by the broker exactly like a TCP
// connection, without a socket. It is upstream.Config.Dial for the
// gateway's sessions. After Close it fails with a refused connection
// (syscall.ECONNREFUSED), and Close ends the connections it made (the
// client reads EOF).
func (b *Broker) Dial(ctx context.Context) (net.Conn, error) {
	return b.mem.Dial(ctx)
}

// InProcessConns returns the number of in-process connections (Dial's)
// the broker serves now.
func (b *Broker) InProcessConns() int { return b.mem.open() }

// Addr returns the bound host:port.
func (b *Broker) Addr() string { return b.addr }

// URL returns "mqtt://" + Addr().
func (b *Broker) URL() string { return "mqtt://" + b.addr }

// Close stops the listener and disconnects every client (their wills are
// published). It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	// mochi can block for ever disconnecting a client whose writes are
	// stuck (seen after its QoS 1 delivery stalled under load): bound it,
	// so that the gateway still exits.
	done := make(chan error, 1)
	go func() { done <- b.srv.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(closeTimeout):
		return fmt.Errorf("broker: close did not finish within %v; giving up on its clients", closeTimeout)
	}
}

// closeTimeout bounds Close.
const closeTimeout = 5 * time.Second

// Subscribe registers fn for messages matching filter, through the broker's
// inline client (no network). fn runs on the publishing client's goroutine
// and must not block. qos is the QoS the message was published with (inline
// subscriptions have no QoS of their own). Subscriptions end with Close.
func (b *Broker) Subscribe(filter string, fn func(topic string, payload []byte, qos byte, retain bool)) error {
	if fn == nil {
		return errors.New("broker: Subscribe: nil handler")
	}
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.mu.Unlock()
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload, pk.FixedHeader.Qos, pk.FixedHeader.Retain)
	})
}

// ClientIDs lists the ClientIDs of the clients connected now.
func (b *Broker) ClientIDs() []string {
	var ids []string
	for id, cl := range b.srv.Clients.GetAll() {
		if !cl.Closed() && !cl.Net.Inline {
			ids = append(ids, id)
		}
	}
	return ids
}

// Publish publishes a message from the broker's inline client.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

// allowAll lets every client connect, publish and subscribe (mochi's
// auth.AllowHook, without the auth package's YAML dependency).
type allowAll struct{ mqtt.HookBase }

func (*allowAll) ID() string { return "allow-all" }

func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (*allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
