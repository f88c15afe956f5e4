package upstream

import (
	"net"
	"sync"
	"sync/atomic"
)

// coalescingConn combines the packets that several goroutines write at the
// same time into one write on the connection (issue 12: in aggregating
// mode hundreds of nodes publish over one shared connection, and a system
// call per packet was the largest cost in its profile).
//
// Writers append to a pending buffer; the first to need a flush writes
// everything pending, and those that appended meanwhile find their bytes
// already written or write the next batch. A write returns only once its
// bytes were handed to the connection, so the order and the back-pressure
// of a plain connection hold.
//
// paho locks the connection (it is a sync.Locker) around the parts of one
// packet: while it is held the parts are only appended, and Unlock
// flushes. The 3.1.1 engine writes a packet in one Write, which flushes.
type coalescingConn struct {
	net.Conn

	pkt  sync.Mutex  // held by paho around one packet
	held atomic.Bool // pkt is held: Write only appends

	mu      sync.Mutex // guards pending, spare, err
	pending []byte
	spare   []byte
	err     error

	flush sync.Mutex // one flusher at a time
}

// maxSpare bounds the write buffer kept between bursts.
const maxSpare = 64 << 10

func newCoalescingConn(c net.Conn) *coalescingConn { return &coalescingConn{Conn: c} }

// Lock implements sync.Locker for paho.
func (c *coalescingConn) Lock() {
	c.pkt.Lock()
	c.held.Store(true)
}

// Unlock ends a packet and writes it (with whatever else is pending).
func (c *coalescingConn) Unlock() {
	c.held.Store(false)
	c.pkt.Unlock()
	_ = c.writePending()
}

// Write appends p; outside a packet lock it also flushes.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	c.pending = append(c.pending, p...)
	c.mu.Unlock()
	if c.held.Load() {
		return len(p), nil
	}
	if err := c.writePending(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writePending writes everything appended so far (by any goroutine) and
// returns the connection's error, if it failed.
func (c *coalescingConn) writePending() error {
	c.flush.Lock()
	defer c.flush.Unlock()
	c.mu.Lock()
	if c.err != nil || len(c.pending) == 0 {
		err := c.err
		c.mu.Unlock()
		return err // nothing left: a batch before ours carried it
	}
	// Writers append to the spare buffer while buf is written; the two
	// never share memory.
	buf := c.pending
	c.pending, c.spare = c.spare[:0], nil
	c.mu.Unlock()
	_, err := c.Conn.Write(buf)
	c.mu.Lock()
	if cap(buf) <= maxSpare {
		c.spare = buf[:0]
	}
	if err != nil && c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	if err != nil {
		// The reader sees the connection end and the session reconnects.
		_ = c.Close()
	}
	return err
}
