// Package snclient is an MQTT-SN v1.2 client for Go: nodes, simulators,
// tools and the gateway's own tests.
//
// Client (DialClient, NewClient) runs the procedures of spec §6 for you:
// connect with will, register, publish at QoS -1 to 2, subscribe, sleep
// and wake, with retransmission (§6.13). Conn is the raw layer: it sends
// and receives whole MQTT-SN messages over UDP and leaves every procedure
// to the caller, which is what a test that asserts exact datagrams needs.
package snclient

import (
	"errors"
	"net"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Conn is a UDP socket talking MQTT-SN to one gateway.
type Conn struct {
	c   *net.UDPConn
	buf []byte
}

// Dial opens a UDP socket to the gateway at addr (host:port).
func Dial(addr string) (*Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, buf: make([]byte, 65536)}, nil
}

// DialFrom is Dial from the local address local (host or host:port), e.g.
// one of many loopback addresses standing for many nodes in a test.
func DialFrom(local, addr string) (*Conn, error) {
	if _, _, err := net.SplitHostPort(local); err != nil {
		local = net.JoinHostPort(local, "0")
	}
	la, err := net.ResolveUDPAddr("udp", local)
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", la, ua)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, buf: make([]byte, 65536)}, nil
}

// Send encodes p and sends it as one datagram.
func (c *Conn) Send(p snpacket.Packet) error {
	b, err := snpacket.Marshal(p)
	if err != nil {
		return err
	}
	return c.SendRaw(b)
}

// SendRaw sends b as one datagram, as it is.
func (c *Conn) SendRaw(b []byte) error {
	_, err := c.c.Write(b)
	return err
}

// ErrTimeout is returned by Conn.Receive when nothing arrived in time, and
// by Client calls whose retransmissions were exhausted.
var ErrTimeout = errors.New("snclient: timeout")

// Receive waits up to timeout for one datagram and decodes it. The packet
// owns its memory. Datagrams that do not decode are returned as errors
// with the raw bytes available through ReceiveRaw instead.
func (c *Conn) Receive(timeout time.Duration) (snpacket.Packet, error) {
	b, err := c.ReceiveRaw(timeout)
	if err != nil {
		return nil, err
	}
	return snpacket.Unmarshal(b)
}

// ReceiveRaw waits up to timeout for one datagram and returns a copy of it.
func (c *Conn) ReceiveRaw(timeout time.Duration) ([]byte, error) {
	if err := c.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	n, err := c.c.Read(c.buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, ErrTimeout
		}
		return nil, err
	}
	return append([]byte(nil), c.buf[:n]...), nil
}

// LocalAddr is the client's own address.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }
