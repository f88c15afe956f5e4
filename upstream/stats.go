package upstream

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Stats is a snapshot of the upstream connections' counters, for metrics.
type Stats struct {
	// Connected is the number of sessions whose broker connection is up.
	Connected int64
	// Connects counts successful CONNECT/CONNACK exchanges (first
	// connections and reconnects).
	Connects uint64
	// ConnectFailures counts failed connection attempts: dial, TLS or
	// CONNACK refused (first connections and reconnect attempts).
	ConnectFailures uint64
	// Reconnects counts sessions reconnected after their connection was
	// lost.
	Reconnects uint64
	// Lost counts connections that failed or that the broker closed.
	Lost uint64
}

// counters are Upstream's live counters.
type counters struct {
	connected       atomic.Int64
	connects        atomic.Uint64
	connectFailures atomic.Uint64
	reconnects      atomic.Uint64
	lost            atomic.Uint64
	takenOver       atomic.Uint64 // see TakenOver
}

// Stats returns the current counters. It is safe to call at any time.
func (u *Upstream) Stats() Stats {
	c := &u.counters
	return Stats{
		Connected:       c.connected.Load(),
		Connects:        c.connects.Load(),
		ConnectFailures: c.connectFailures.Load(),
		Reconnects:      c.reconnects.Load(),
		Lost:            c.lost.Load(),
	}
}

// TakenOver counts sessions that ended because another connection with
// the same ClientID took them over (MQTT 5 DISCONNECT 0x8E): their node
// moved to another gateway, and this one stopped reconnecting them. (Not
// in Stats, whose shape admin.UpstreamStats mirrors.)
func (u *Upstream) TakenOver() uint64 { return u.counters.takenOver.Load() }

// Ping checks that the broker is reachable: it dials it (TCP, plus the TLS
// handshake for mqtts://) and closes the connection without speaking MQTT.
// It is meant for readiness probes; bound it with ctx.
func (u *Upstream) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.ConnectTimeout)
	defer cancel()
	conn, err := u.dial(ctx)
	if err != nil {
		return fmt.Errorf("upstream: broker %s unreachable: %w", u.ep.hostPort, err)
	}
	_ = conn.Close()
	return nil
}
