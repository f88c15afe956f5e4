// Package upstream connects gateway sessions to an MQTT broker, MQTT 5 with
// github.com/eclipse/paho.golang or MQTT 3.1.1 with a small engine of its
// own over mochi's packet codec (session311.go, conn311.go). It implements
// gateway.Upstream in transparent mode: one MQTT connection per MQTT-SN
// client. Library types never leave this package.
//
// Each MQTT 5 connection is a raw paho.Client (three goroutines: reader,
// router, pinger), each MQTT 3.1.1 connection one reader goroutine and a
// keep-alive timer; either has a reconnect goroutine that exists only while
// the connection is down. autopaho is not used: it keeps two more
// goroutines per connection and about twice the memory (see libraries.md).
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/eclipse/paho.golang/paho"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// ErrNotConnected is returned (wrapped) by Publish, Subscribe and
// Unsubscribe when the broker connection is down. Nothing was sent, so the
// operation can be retried later without risk of duplicates.
var ErrNotConnected = errors.New("upstream: not connected to broker")

// ErrConnectionLost is returned (wrapped) when the connection was lost
// while waiting for the broker's acknowledgement and nothing will complete
// the exchange: the broker may or may not have the message or subscription.
// A QoS 1/2 Publish waits across a reconnect instead when the broker keeps
// the session (SessionExpiry > 0), since paho resends it then.
var ErrConnectionLost = errors.New("upstream: connection lost before the broker acknowledged")

// ErrClosed is returned (wrapped) for operations on a closed session.
var ErrClosed = errors.New("upstream: session closed")

// Upstream opens MQTT sessions (version 5 or 3.1.1) on one broker. It is
// safe for concurrent use.
type Upstream struct {
	cfg      Config
	ep       endpoint
	log      *zap.Logger
	counters counters
	proto    atomic.Uint32 // negotiated protocol level (5 or 4), 0 while unknown
	refusals *refusalLog
	pacer    *pacer // gateway-wide reconnect limiter (broker.reconnect_rate)
}

var (
	_ gateway.Upstream       = (*Upstream)(nil)
	_ gateway.ReconnectPacer = (*Upstream)(nil)
)

// New validates cfg, fills in defaults and returns an Upstream. It does not
// connect; each Open does. A nil log means no logging.
func New(cfg Config, log *zap.Logger) (*Upstream, error) {
	cfg.setDefaults()
	ep, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Upstream{cfg: cfg, ep: ep, log: log, refusals: newRefusalLog(log, refusalEvery),
		pacer: newPacer(cfg.ReconnectRate)}, nil
}

// Open connects one MQTT session for a node and returns once the broker
// accepted it (CONNACK success), bounded by ctx and Config.ConnectTimeout.
// deliver is called, one message at a time, from the connection's reader
// goroutine; the broker's PUBACK/PUBREC is sent only after deliver returned.
// While deliver blocks, further messages on this connection wait. The
// protocol version is Config.ProtocolVersion's (see protocol.go).
func (u *Upstream) Open(ctx context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	if deliver == nil {
		return nil, errors.New("upstream: Open: deliver is nil")
	}
	if opts.Will != nil && opts.Will.QoS > 2 {
		return nil, fmt.Errorf("upstream: Open: will QoS %d", opts.Will.QoS)
	}
	return u.openNegotiated(ctx, opts, deliver)
}

// openV5 opens an MQTT 5 session.
func (u *Upstream) openV5(ctx context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	s := newSession(u, opts, deliver)
	cli, ca, err := s.connect(ctx, opts.CleanStart)
	if err != nil {
		_ = s.state.Close()
		if !errors.Is(ctx.Err(), context.Canceled) { // not a shutdown
			u.refusals.note(err, s.clientID)
		}
		return nil, err
	}
	if !opts.CleanStart && !ca.SessionPresent && len(s.subs) > 0 {
		// The broker did not keep the session (or never had it, after a
		// gateway restart): subscribe again to what the gateway kept.
		if err := s.resubscribe(ctx, cli); err != nil {
			_ = cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
			_ = s.state.Close()
			return nil, err
		}
	}
	if !s.install(cli, ca) {
		_ = s.state.Close()
		return nil, fmt.Errorf("upstream: connect %s: %w", u.ep.hostPort, errConnDropped)
	}
	s.log.Debug("upstream session open")
	return s, nil
}

// dial opens the network connection (Config.Dial's, TCP or TLS), bounded
// by ctx.
func (u *Upstream) dial(ctx context.Context) (net.Conn, error) {
	var (
		conn net.Conn
		err  error
	)
	switch {
	case u.cfg.Dial != nil:
		conn, err = u.cfg.Dial(ctx)
	case u.ep.tls != nil:
		d := tls.Dialer{Config: u.ep.tls}
		conn, err = d.DialContext(ctx, "tcp", u.ep.hostPort)
	default:
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", u.ep.hostPort)
	}
	if err != nil {
		return nil, err
	}
	if u.cfg.Dial != nil {
		// In-process: a write is a copy, not a system call.
		return &lockedConn{Conn: conn}, nil
	}
	// paho writes packets from several goroutines and serialises them when
	// the connection is a sync.Locker; the coalescing connection also
	// combines the packets written at the same time into one system call.
	return newCoalescingConn(conn), nil
}

// lockedConn is a connection that paho locks around each packet.
type lockedConn struct {
	net.Conn
	sync.Mutex
}

func secondsU32(d time.Duration) uint32 {
	s := d / time.Second
	switch {
	case s <= 0:
		return 0
	case s >= 0xFFFFFFFF:
		return 0xFFFFFFFF
	}
	return uint32(s)
}
