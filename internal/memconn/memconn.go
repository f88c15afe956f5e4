// Package memconn is an in-memory, buffered, full-duplex net.Conn pair:
// the gateway's connections to its embedded broker, which need no socket
// and no file descriptor.
//
// Unlike net.Pipe, a write does not wait for the peer to read it: it is
// copied into the direction's buffer and returns, as a TCP write returns
// once the kernel has the bytes. Only a write that finds Limit unread bytes
// ahead of it waits (for the reader, a deadline or a close), which is TCP's
// back-pressure without its syscalls. Both ends writing while neither reads
// (an MQTT broker and client under load) is what deadlocks net.Pipe; here
// it only fills buffers.
//
// An idle connection holds no buffer: a direction's buffer goes back to the
// Pool when the reader drains it, so 100,000 idle connections cost their
// structs, not 100,000 buffers.
package memconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Limit is the number of unread bytes one direction holds before a write
// waits for the reader (the role of a TCP socket's buffers).
const Limit = 256 << 10

// pooledCap is the capacity of the buffers the pool keeps; a direction
// whose backlog grew beyond it drops the larger buffer when drained.
const pooledCap = 4 << 10

// Pool recycles direction buffers among the connections that share it.
// The zero value is ready to use.
type Pool struct{ p sync.Pool }

func (p *Pool) get() []byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, pooledCap)
}

func (p *Pool) put(b []byte) {
	if cap(b) != pooledCap {
		return
	}
	b = b[:0]
	p.p.Put(&b)
}

// Addr is the address of an in-memory connection's end.
type Addr string

// Network returns "memory".
func (Addr) Network() string { return "memory" }

func (a Addr) String() string { return string(a) }

// Pipe returns the two ends of a new connection. Addresses name the ends
// (LocalAddr of one is RemoteAddr of the other). Buffers come from pool,
// which may be shared by many connections; a nil pool gives the
// connection one of its own.
func Pipe(pool *Pool, addrA, addrB Addr) (a, b net.Conn) {
	if pool == nil {
		pool = new(Pool)
	}
	ab := &direction{pool: pool, readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
	ba := &direction{pool: pool, readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
	ca := &Conn{rd: ba, wr: ab, local: addrA, remote: addrB}
	cb := &Conn{rd: ab, wr: ba, local: addrB, remote: addrA}
	return ca, cb
}

// direction is the bytes one end writes and the other reads.
type direction struct {
	pool *Pool

	mu      sync.Mutex
	buf     []byte // unread bytes are buf[off:]
	off     int
	wclosed bool // the writing end closed: reads drain, then io.EOF
	rclosed bool // the reading end closed: writes fail
	rdl     deadline
	wdl     deadline

	// readable and writable wake the one waiting reader or writer (each
	// end serialises its reads and its writes): data came or space freed,
	// an end closed, or a deadline changed.
	readable chan struct{}
	writable chan struct{}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// deadline is one end's read or write deadline, and the timer that wakes
// a waiter when it passes (armed lazily, reused, so that setting a deadline
// before every packet, as mochi does, allocates nothing).
type deadline struct {
	at    time.Time
	timer *time.Timer
	armed time.Time // when timer fires; zero if not armed
}

// set changes the deadline and wakes the waiter so that it looks again.
func (d *deadline) set(t time.Time, wake chan struct{}) {
	d.at = t
	signal(wake)
}

// check returns os.ErrDeadlineExceeded if the deadline passed, and
// otherwise makes sure the timer wakes the waiter by then.
func (d *deadline) check(wake chan struct{}) error {
	if d.at.IsZero() {
		return nil
	}
	until := time.Until(d.at)
	if until <= 0 {
		return os.ErrDeadlineExceeded
	}
	if d.armed.Equal(d.at) {
		return nil
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(until, func() { signal(wake) })
	} else {
		d.timer.Reset(until)
	}
	d.armed = d.at
	return nil
}

func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

// Conn is one end of an in-memory connection. It is safe for concurrent
// use; concurrent writes are not interleaved with each other.
type Conn struct {
	rd, wr        *direction
	local, remote Addr

	rmu sync.Mutex // serialises Read
	wmu sync.Mutex // serialises Write
}

var _ net.Conn = (*Conn)(nil)

// Read reads what the peer wrote. It returns io.EOF once the peer closed
// and everything it wrote was read, net.ErrClosed after Close, and
// os.ErrDeadlineExceeded when the read deadline passes.
func (c *Conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	d := c.rd
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		switch {
		case d.rclosed:
			return 0, c.opErr("read", net.ErrClosed)
		case d.off < len(d.buf):
			if len(b) == 0 {
				return 0, nil
			}
			n := copy(b, d.buf[d.off:])
			d.off += n
			if d.off == len(d.buf) {
				d.pool.put(d.buf)
				d.buf, d.off = nil, 0
			}
			signal(d.writable)
			return n, nil
		case d.wclosed:
			return 0, io.EOF
		}
		if err := d.rdl.check(d.readable); err != nil {
			return 0, c.opErr("read", err)
		}
		d.mu.Unlock()
		<-d.readable
		d.mu.Lock()
	}
}

// Write copies b into the connection and returns once the peer may read
// all of it; it waits only while Limit bytes are unread. It fails with
// net.ErrClosed after Close, with syscall.EPIPE once the peer closed, and
// with os.ErrDeadlineExceeded when the write deadline passes (then part of
// b may have been written, as n says).
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	d := c.wr
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for {
		switch {
		case d.wclosed:
			return n, c.opErr("write", net.ErrClosed)
		case d.rclosed:
			return n, c.opErr("write", syscall.EPIPE)
		case n == len(b):
			return n, nil
		}
		if err := d.wdl.check(d.writable); err != nil {
			return n, c.opErr("write", err)
		}
		if room := Limit - (len(d.buf) - d.off); room > 0 {
			chunk := b[n:min(len(b), n+room)]
			if d.buf == nil {
				d.buf = d.pool.get()
			} else if d.off > 0 && len(d.buf)+len(chunk) > cap(d.buf) {
				// Slide the unread bytes down before growing.
				d.buf = d.buf[:copy(d.buf, d.buf[d.off:])]
				d.off = 0
			}
			d.buf = append(d.buf, chunk...)
			n += len(chunk)
			signal(d.readable)
			continue
		}
		d.mu.Unlock()
		<-d.writable
		d.mu.Lock()
	}
}

// Close closes this end: its own reads and writes fail with
// net.ErrClosed, the peer reads what was already written and then io.EOF,
// and the peer's writes fail. Close is idempotent.
func (c *Conn) Close() error {
	for _, d := range []*direction{c.rd, c.wr} {
		d.mu.Lock()
		if d == c.rd {
			d.rclosed = true
			if d.buf != nil { // nobody will read it
				d.pool.put(d.buf)
				d.buf, d.off = nil, 0
			}
			d.rdl.stop()
		} else {
			d.wclosed = true
			d.wdl.stop()
		}
		signal(d.readable)
		signal(d.writable)
		d.mu.Unlock()
	}
	return nil
}

// LocalAddr returns this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; a zero t means none. A Read
// waiting now sees the new deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	d := c.rd
	d.mu.Lock()
	d.rdl.set(t, d.readable)
	d.mu.Unlock()
	return nil
}

// SetWriteDeadline sets the write deadline; a zero t means none. A Write
// waiting now sees the new deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	d := c.wr
	d.mu.Lock()
	d.wdl.set(t, d.writable)
	d.mu.Unlock()
	return nil
}

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "memory", Source: c.local, Addr: c.remote, Err: err}
}
