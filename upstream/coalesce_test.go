package upstream

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedConn records each Write; the write numbered gateAt (from 0) blocks
// until gate is closed, and is recorded as its bytes are when it returns.
type gatedConn struct {
	net.Conn
	gate   chan struct{}
	gateAt int
	mu     sync.Mutex
	calls  int
	writes []string
	fail   error
	closed bool
}

func (g *gatedConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	n := g.calls
	g.calls++
	fail := g.fail
	g.mu.Unlock()
	if n == g.gateAt && g.gate != nil {
		<-g.gate
	}
	g.mu.Lock()
	g.writes = append(g.writes, string(p))
	g.mu.Unlock()
	if fail != nil {
		return 0, fail
	}
	return len(p), nil
}

func (g *gatedConn) started() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

func (g *gatedConn) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return nil
}

// Packets written while a write is in progress go out together in the
// next one, each whole (paho writes a packet's parts under the lock).
func TestCoalescingConnCombinesConcurrentPackets(t *testing.T) {
	g := &gatedConn{gate: make(chan struct{})}
	c := newCoalescingConn(g)
	first := make(chan error, 1)
	go func() { _, err := c.Write([]byte("[first]")); first <- err }()
	waitUntil(t, "the first write is in progress", func() bool { return g.started() == 1 })

	const n = 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Lock()
			_, _ = fmt.Fprintf(c, "[p%d", i)
			_, _ = c.Write([]byte("]"))
			c.Unlock()
		}()
	}
	waitUntil(t, "every packet appended", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return strings.Count(string(c.pending), "]") == n
	})
	close(g.gate)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if len(g.writes) != 2 {
		t.Fatalf("%d writes, want 2 (the first, then all %d packets at once): %q", len(g.writes), n, g.writes)
	}
	got := strings.SplitAfter(g.writes[1], "]")
	got = got[:len(got)-1]
	sort.Strings(got)
	for i := range n {
		if want := fmt.Sprintf("[p%d]", i); !sortedContains(got, want) {
			t.Fatalf("packet %s not whole in %q", want, g.writes[1])
		}
	}
}

// Bytes being written are never the buffer the next writers append to,
// whatever came before (an empty flush used to make the two share memory).
func TestCoalescingConnNeverOverwritesAWriteInProgress(t *testing.T) {
	g := &gatedConn{gate: make(chan struct{}), gateAt: 1}
	c := newCoalescingConn(g)
	if _, err := c.Write([]byte("A")); err != nil {
		t.Fatal(err)
	}
	if err := c.writePending(); err != nil { // nothing pending
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _, _ = c.Write([]byte("B")) }()
	waitUntil(t, "B is being written", func() bool { return g.started() == 2 })
	c.Lock()
	_, _ = c.Write([]byte("C"))
	unlocked := make(chan struct{})
	go func() { defer close(unlocked); c.Unlock() }()
	waitUntil(t, "C appended", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return string(c.pending) == "C" })
	close(g.gate)
	<-done
	<-unlocked
	if strings.Join(g.writes, "|") != "A|B|C" {
		t.Fatalf("writes %q, want A, B, C", g.writes)
	}
}

// waitUntil polls cond (there is no event to wait on) for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func sortedContains(s []string, v string) bool {
	i := sort.SearchStrings(s, v)
	return i < len(s) && s[i] == v
}

// A failed write fails the writes after it and closes the connection, so
// that the session's reader sees it end.
func TestCoalescingConnFailure(t *testing.T) {
	boom := errors.New("boom")
	g := &gatedConn{fail: boom}
	c := newCoalescingConn(g)
	if _, err := c.Write([]byte("x")); !errors.Is(err, boom) {
		t.Fatalf("Write: %v", err)
	}
	if _, err := c.Write([]byte("y")); !errors.Is(err, boom) {
		t.Fatalf("second Write: %v", err)
	}
	if !g.closed {
		t.Fatal("connection not closed")
	}
}
