package broker

import (
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// connSet is what both listeners need for an orderly Close: the
// connections being served and their goroutines, and a closed flag after
// which none starts. mochi's own listeners start a connection's goroutine,
// which then calls ClientsWg.Add, while Server.Close may already be in
// ClientsWg.Wait (a data race whenever a client connects as the broker
// stops); with connSet, mochi's Wait never overlaps an Add.
type connSet struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // every goroutine started through it
}

// start registers a goroutine (an accept loop); false once closing.
func (s *connSet) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// done ends a goroutine registered by start.
func (s *connSet) done() { s.wg.Done() }

// serve runs establish for c in a goroutine of its own, and closes c when
// it returns. It reports false, having closed nothing, once closing.
func (s *connSet) serve(id string, c net.Conn, establish listeners.EstablishFn) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		_ = establish(id, c) // errors are the client's (bad CONNECT, EOF)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	return true
}

// shut marks the set closed; false if it already was.
func (s *connSet) shut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	return true
}

// closeAll closes the connections still served and waits for every
// goroutine.
func (s *connSet) closeAll() {
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// open is the number of connections being served.
func (s *connSet) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
