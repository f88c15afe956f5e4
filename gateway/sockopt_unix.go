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

// readBufferSize is the socket's receive buffer as the kernel reports it
// (Linux reports twice what it grants for bookkeeping), or 0 if unknown.
func readBufferSize(c syscall.Conn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		if err == nil {
			n = v / 2
		}
	})
	return n
}
