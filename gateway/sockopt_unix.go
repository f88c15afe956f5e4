//go:build unix

package gateway

import "syscall"

// setBroadcast allows a UDP socket to send to broadcast addresses, for
// ADVERTISE to 255.255.255.255 (Go sets it only on IPv4 sockets, and the
// default listener is dual-stack).
func setBroadcast(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
	}); err != nil {
		return err
	}
	return serr
}
