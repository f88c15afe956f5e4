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
	set       connSet               // the broker ends
}

var _ listeners.Listener = (*memListener)(nil)

func newMemListener(id string) *memListener {
	return &memListener{id: id, ready: make(chan struct{})}
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
	establish := l.establish
	l.mu.Unlock()
	if !l.set.serve(l.id, srv, establish) {
		_ = client.Close()
		_ = srv.Close()
		return nil, errRefused(l.id)
	}
	return client, nil
}

// open returns the number of connections being served now.
func (l *memListener) open() int { return l.set.open() }

// Close refuses new connections, lets mochi disconnect its clients
// (publishing wills), closes any remaining connection and waits for the
// connection goroutines.
func (l *memListener) Close(closeClients listeners.CloseFn) {
	if !l.set.shut() {
		return
	}
	closeClients(l.id)
	l.set.closeAll()
}
