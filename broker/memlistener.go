package broker

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/memconn"
)

// memListener is a mochi listener with no socket: Dial makes an in-memory
// connection (internal/memconn) and hands its broker end to mochi, which
// serves it like an accepted TCP connection. The gateway's own sessions
// reach the embedded broker this way, without a file descriptor each.
// Close works as tcpListener's: no connection starts once it began, mochi
// disconnects the clients, and Close waits for every connection goroutine.
type memListener struct {
	id   string
	pool memconn.Pool
	seq  atomic.Uint64

	mu        sync.Mutex
	establish listeners.EstablishFn // set by Serve; nil before
	ready     chan struct{}         // closed once Serve has run
	conns     map[net.Conn]struct{} // broker ends
	closed    bool
	wg        sync.WaitGroup // every connection goroutine
}

var _ listeners.Listener = (*memListener)(nil)

func newMemListener(id string) *memListener {
	return &memListener{id: id, ready: make(chan struct{}), conns: make(map[net.Conn]struct{})}
}

func (l *memListener) ID() string              { return l.id }
func (l *memListener) Protocol() string        { return "memory" }
func (l *memListener) Address() string         { return "in-process" }
func (l *memListener) Init(*slog.Logger) error { return nil }

// Serve records mochi's establish function; mochi runs it in a goroutine
// of its own, which may still be starting when the first Dial comes.
func (l *memListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.establish == nil {
		l.establish = establish
		close(l.ready)
	}
}

// errRefused is what Dial returns once the broker is closing or closed: a
// refused connection, as a stopped broker's TCP port gives.
func errRefused(id string) error {
	return &net.OpError{Op: "dial", Net: "memory", Addr: memconn.Addr(id), Err: syscall.ECONNREFUSED}
}

// Dial opens an in-memory connection to the broker, bounded by ctx (which
// only matters while mochi is starting to serve).
func (l *memListener) Dial(ctx context.Context) (net.Conn, error) {
	select {
	case <-l.ready:
	case <-ctx.Done():
		return nil, &net.OpError{Op: "dial", Net: "memory", Addr: memconn.Addr(l.id), Err: ctx.Err()}
	}
	n := strconv.FormatUint(l.seq.Add(1), 10)
	client, srv := memconn.Pipe(&l.pool, memconn.Addr("client-"+n), memconn.Addr(l.id))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errRefused(l.id)
	}
	l.conns[srv] = struct{}{}
	l.wg.Add(1)
	establish := l.establish
	l.mu.Unlock()
	go func() {
		defer l.wg.Done()
		_ = establish(l.id, srv) // errors are the client's (bad CONNECT, EOF)
		l.mu.Lock()
		delete(l.conns, srv)
		l.mu.Unlock()
		_ = srv.Close()
	}()
	return client, nil
}

// open returns the number of connections being served now.
func (l *memListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// Close refuses new connections, lets mochi disconnect its clients
// (publishing wills), closes any remaining connection and waits for the
// connection goroutines.
func (l *memListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	closeClients(l.id)
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
