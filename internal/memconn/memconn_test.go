package memconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

func pipe(t *testing.T) (a, b net.Conn) {
	t.Helper()
	a, b = Pipe(nil, "a", "b")
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

func TestAddrs(t *testing.T) {
	a, b := pipe(t)
	if a.LocalAddr().String() != "a" || a.RemoteAddr().String() != "b" || b.LocalAddr().String() != "b" || b.RemoteAddr().String() != "a" {
		t.Fatalf("addresses: a %v->%v, b %v->%v", a.LocalAddr(), a.RemoteAddr(), b.LocalAddr(), b.RemoteAddr())
	}
	if a.LocalAddr().Network() != "memory" {
		t.Fatalf("network %q", a.LocalAddr().Network())
	}
}

// A write returns before the peer reads: both ends can write at once, which
// deadlocks net.Pipe.
func TestWriteDoesNotWaitForReader(t *testing.T) {
	a, b := pipe(t)
	if _, err := a.Write([]byte("from a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("from b")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := b.Read(buf)
	if err != nil || string(buf[:n]) != "from a" {
		t.Fatalf("b read %q, %v", buf[:n], err)
	}
	n, err = a.Read(buf)
	if err != nil || string(buf[:n]) != "from b" {
		t.Fatalf("a read %q, %v", buf[:n], err)
	}
}

// A large write goes through in chunks of Limit while the peer reads, in
// order, both ways at once.
func TestLargeTransferBothWays(t *testing.T) {
	a, b := pipe(t)
	data := make([]byte, 3*Limit+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, c := range []net.Conn{a, b} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := c.Write(data); err != nil {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, data) {
				errs <- errors.New("data differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Concurrent writes are not interleaved.
func TestConcurrentWritesWhole(t *testing.T) {
	a, b := pipe(t)
	const writers, size = 8, Limit / 2
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = a.Write(bytes.Repeat([]byte{byte(i)}, size))
		}()
	}
	got := make([]byte, writers*size)
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := 0; i < len(got); i += size {
		if !bytes.Equal(got[i:i+size], bytes.Repeat(got[i:i+1], size)) {
			t.Fatalf("write at %d interleaved", i)
		}
	}
}

func TestCloseSemantics(t *testing.T) {
	a, b := pipe(t)
	if _, err := a.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	// The peer reads what was written, then EOF.
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "last words" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to a closed peer: %v, want EPIPE", err)
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}

// Close wakes a Read and a Write waiting on the same end.
func TestCloseUnblocks(t *testing.T) {
	a, _ := pipe(t)
	rd := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 1)); rd <- err }()
	wr := make(chan error, 1)
	go func() { _, err := a.Write(make([]byte, Limit+1)); wr <- err }()
	_ = a.Close()
	if err := <-rd; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked read: %v", err)
	}
	if err := <-wr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked write: %v", err)
	}
}

// The peer closing wakes a Read (EOF) and a Write (EPIPE) waiting here.
func TestPeerCloseUnblocks(t *testing.T) {
	a, b := pipe(t)
	rd := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 1)); rd <- err }()
	wr := make(chan error, 1)
	go func() { _, err := a.Write(make([]byte, Limit+1)); wr <- err }()
	_ = b.Close()
	if err := <-rd; !errors.Is(err, io.EOF) {
		t.Fatalf("blocked read: %v", err)
	}
	if err := <-wr; !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("blocked write: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

func TestReadDeadline(t *testing.T) {
	a, b := pipe(t)
	// A deadline in the past fails at once.
	_ = a.SetReadDeadline(time.Unix(1, 0))
	if _, err := a.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read past deadline: %v", err)
	}
	// A deadline set while a Read waits ends it.
	_ = a.SetReadDeadline(time.Time{})
	rd := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 1)); rd <- err }()
	_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := <-rd; !isTimeout(err) {
		t.Fatalf("waiting read: %v", err)
	}
	// Cleared, reads work again.
	_ = a.SetReadDeadline(time.Time{})
	if _, err := b.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read after clearing deadline: %d, %v", n, err)
	}
}

// A deadline moved later while a Read waits lets it wait on.
func TestReadDeadlineExtended(t *testing.T) {
	a, b := pipe(t)
	_ = a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	rd := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 1)); rd <- err }()
	_ = a.SetReadDeadline(time.Now().Add(time.Hour))
	_ = a.SetReadDeadline(time.Now().Add(time.Hour)) // again: a no-op
	select {
	case err := <-rd:
		t.Fatalf("read ended: %v", err)
	case <-time.After(50 * time.Millisecond): // past the first deadline
	}
	if _, err := b.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	if err := <-rd; err != nil {
		t.Fatal(err)
	}
}

func TestWriteDeadline(t *testing.T) {
	a, b := pipe(t)
	_ = a.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	n, err := a.Write(make([]byte, Limit+10)) // nobody reads
	if !isTimeout(err) || n != Limit {
		t.Fatalf("write: %d, %v; want %d and a timeout", n, err, Limit)
	}
	// Reading makes room again.
	if _, err := io.ReadFull(b, make([]byte, Limit)); err != nil {
		t.Fatal(err)
	}
	_ = a.SetWriteDeadline(time.Time{})
	if _, err := a.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
}

// A drained direction gives its buffer back: an idle connection holds none.
func TestIdleHoldsNoBuffer(t *testing.T) {
	pool := new(Pool)
	a, b := Pipe(pool, "a", "b")
	defer a.Close()
	defer b.Close()
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	if d := a.(*Conn).wr; d.buf != nil {
		t.Fatalf("drained direction keeps a buffer of %d bytes", cap(d.buf))
	}
}

func BenchmarkSmallWrites(b *testing.B) {
	a, c := Pipe(nil, "a", "b")
	defer a.Close()
	defer c.Close()
	msg := make([]byte, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := a.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	_ = a.Close()
	<-done
}
