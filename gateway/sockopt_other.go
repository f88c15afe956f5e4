//go:build !unix

package gateway

import "syscall"

func setBroadcast(_, _ string, _ syscall.RawConn) error { return nil }

func readBufferSize(syscall.Conn) int { return 0 }
