package dtlstest

import (
	"context"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// Handshake opens a DTLS client over pc to addr and completes the
// handshake within timeout; the connection is closed in t.Cleanup. On a
// failed handshake pc is closed and the error returned.
func Handshake(t testing.TB, pc net.PacketConn, addr string, timeout time.Duration, opts ...dtls.ClientOption) (*dtls.Conn, error) {
	t.Helper()
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dtls.ClientWithOptions(pc, ra, opts...)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, nil
}

// SendHellos sends n cookieless ClientHellos to addr, each from its own
// socket (closed in t.Cleanup): half-open handshakes, as in a flood.
func SendHellos(t testing.TB, addr *net.UDPAddr, n int) {
	t.Helper()
	for range n {
		c, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		var random [32]byte
		_, _ = rand.Read(random[:])
		if _, err := c.Write(ClientHello(random, nil)); err != nil {
			t.Fatal(err)
		}
	}
}
