package broker

import (
	"log/slog"
	"net"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener is mochi's TCP listener with an orderly Close (connSet):
// Close stops accepting, closes every connection it accepted and waits for
// the accept loop and their goroutines.
type tcpListener struct {
	id   string
	addr string
	ln   net.Listener
	set  connSet
}

var _ listeners.Listener = (*tcpListener)(nil)

func newTCPListener(id, addr string) *tcpListener {
	return &tcpListener{id: id, addr: addr}
}

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Protocol() string { return "tcp" }

func (l *tcpListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

// Init binds the address.
func (l *tcpListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

// Serve accepts connections until Close; mochi runs it in a goroutine.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	if !l.set.start() {
		return
	}
	defer l.set.done()
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		if !l.set.serve(l.id, conn, establish) {
			_ = conn.Close()
			return
		}
	}
}

// Close stops accepting, lets mochi disconnect its clients (publishing
// wills), closes any remaining connection and waits for all goroutines.
func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	if !l.set.shut() {
		return
	}
	if l.ln != nil {
		_ = l.ln.Close()
	}
	closeClients(l.id)
	l.set.closeAll()
}
