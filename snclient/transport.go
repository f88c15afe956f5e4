package snclient

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// Transport carries whole MQTT-SN datagrams between a Client and one
// gateway: each Write sends one datagram, each Read returns one.
//
// A client talks to a single gateway, so the interface is that of a
// connected socket rather than a net.PacketConn: a *net.UDPConn from
// net.DialUDP satisfies it, and so does any net.Conn with datagram
// semantics, such as the *dtls.Conn that pion/dtls's Client returns. Close
// must make a blocked Read return.
type Transport interface {
	Read(b []byte) (int, error)
	Write(b []byte) (int, error)
	Close() error
}

var _ Transport = (*net.UDPConn)(nil)

// DialFunc opens a Transport to the gateway at addr.
type DialFunc func(ctx context.Context, addr string) (Transport, error)

// DialUDP is the default DialFunc: a connected UDP socket to addr
// (host:port).
func DialUDP(ctx context.Context, addr string) (Transport, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}

// transient reports whether a socket error only means that the last
// datagram went nowhere (ICMP port unreachable on a connected UDP socket):
// datagram semantics, handled by retransmission, not a broken transport.
func transient(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
