package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func sampleNode() *Node {
	return &Node{
		ClientID:      "sensor-1",
		CleanSession:  false,
		KeepAlive:     60 * time.Second,
		SleepDuration: 10 * time.Minute,
		State:         Asleep,
		Addr:          "[fd00::1]:1884",
		Will:          &Message{Topic: "will/sensor-1", Payload: []byte("gone"), QoS: 1, Retain: true},
		Registrations: []Registration{{ID: 1, Name: "a/b"}, {ID: 2, Name: "c/d", Acked: true}},
		Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 2}, {Filter: "ab", QoS: 1, TopicIDType: 2, TopicID: 0x6162}},
		Inflight:      &Message{Topic: "cmd/x", Payload: []byte{0, 1, 2}, QoS: 2},
		InflightMsgID: 77,
		NextMsgID:     78,
		Upstream:      []byte("resume"),
	}
}

func TestNodeEncodingRoundTrip(t *testing.T) {
	t.Parallel()
	for name, n := range map[string]*Node{
		"full":    sampleNode(),
		"minimal": {ClientID: "x", CleanSession: true, State: Active},
		"empty":   {},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := appendNode(nil, n)
			got, err := decodeNode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, n) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, n)
			}
			// Every truncation and a trailing byte are refused, never a panic.
			for i := range b {
				if _, err := decodeNode(b[:i]); !errors.Is(err, errCorrupt) {
					t.Fatalf("prefix of %d/%d bytes: err %v", i, len(b), err)
				}
			}
			if _, err := decodeNode(append(b, 0)); !errors.Is(err, errCorrupt) {
				t.Fatalf("trailing byte: err %v", err)
			}
		})
	}
}

func TestDecodeRefusesUnknownFormatAndHugeCounts(t *testing.T) {
	t.Parallel()
	b := appendNode(nil, sampleNode())
	b[0] = 2
	if _, err := decodeNode(b); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "format 2") {
		t.Fatalf("newer format: %v", err)
	}
	// A length far beyond the input must not allocate it.
	huge := []byte{nodeFormat, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := decodeNode(huge); !errors.Is(err, errCorrupt) {
		t.Fatalf("huge length: %v", err)
	}
	if _, err := decodeMessage([]byte{messageFormat, 1, 'a', 0, 3, 0}); !errors.Is(err, errCorrupt) {
		t.Fatalf("QoS 3 accepted: %v", err)
	}
}

func FuzzDecodeNode(f *testing.F) {
	f.Add(appendNode(nil, sampleNode()))
	f.Add(appendNode(nil, &Node{ClientID: "x"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeNode(b)
		if err != nil {
			return
		}
		again, err := decodeNode(appendNode(nil, n))
		if err != nil || !reflect.DeepEqual(again, n) {
			t.Fatalf("re-encoding a decoded node changed it: %v", err)
		}
	})
}

func openTemp(t *testing.T) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func loadAll(t *testing.T, s Store) map[string]*Record {
	t.Helper()
	got := map[string]*Record{}
	if err := s.Load(func(r *Record) error { got[r.Node.ClientID] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestBoltCommitAndReload(t *testing.T) {
	t.Parallel()
	s, path := openTemp(t)
	ctx := context.Background()
	var b Batch
	n := sampleNode()
	b.PutNode(n)
	b.PutNode(&Node{ClientID: "sensor-10", State: Active}) // its keys share a prefix with sensor-1's
	for i := range uint64(5) {
		b.PutMessage("sensor-1", i, Message{Topic: "t", Payload: []byte{byte(i)}, QoS: 1})
		b.PutMessage("sensor-10", i, Message{Topic: "u", QoS: 0})
	}
	b.PutQoS2("sensor-1", QoS2{MsgID: 9, Forwarded: true, UpstreamID: 300})
	b.PutQoS2("sensor-1", QoS2{MsgID: 10})
	b.PutPacket("sensor-1", 300, []byte{0x62, 0x02, 0x01, 0x2c})
	b.PutPacket("sensor-1", 301, []byte{0x34})
	b.PutQoS2("sensor-10", QoS2{MsgID: 9})
	if err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.DeleteMessage("sensor-1", 0)
	b.DeleteQoS2("sensor-1", 10)
	b.DeletePacket("sensor-1", 301)
	if err := s.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &b); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}

	s2, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got := loadAll(t, s2)
	r := got["sensor-1"]
	if r == nil || !reflect.DeepEqual(&r.Node, n) {
		t.Fatalf("node: %+v", r)
	}
	if len(r.Buffer) != 4 || r.Buffer[0].Seq != 1 || r.Buffer[3].Seq != 4 || r.Buffer[3].Msg.Payload[0] != 4 {
		t.Fatalf("buffer: %+v", r.Buffer)
	}
	if !reflect.DeepEqual(r.QoS2, []QoS2{{MsgID: 9, Forwarded: true, UpstreamID: 300}}) {
		t.Fatalf("qos2: %+v", r.QoS2)
	}
	if !reflect.DeepEqual(r.Packets, []Packet{{ID: 300, Data: []byte{0x62, 0x02, 0x01, 0x2c}}}) {
		t.Fatalf("packets: %+v", r.Packets)
	}
	if r10 := got["sensor-10"]; r10 == nil || len(r10.Buffer) != 5 || len(r10.QoS2) != 1 {
		t.Fatalf("sensor-10: %+v", r10)
	}

	// Deleting a node removes its buffer and QoS 2 state, not its neighbour's.
	b.Reset()
	b.DeleteNode("sensor-1")
	if err := s2.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	got = loadAll(t, s2)
	if _, ok := got["sensor-1"]; ok || len(got) != 1 || len(got["sensor-10"].Buffer) != 5 || len(got["sensor-10"].QoS2) != 1 {
		t.Fatalf("after DeleteNode: %+v", got)
	}
	if err := s2.db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket([]byte(bucketBuffer)).Cursor().Seek(nodeKey(nil, "sensor-1")); k != nil && strings.HasPrefix(string(k), string(nodeKey(nil, "sensor-1"))) {
			return fmt.Errorf("buffer key %q left behind", k)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Concurrent commits are grouped into few transactions, and each returns
// only once its writes are stored.
func TestBoltGroupCommit(t *testing.T) {
	t.Parallel()
	s, _ := openTemp(t)
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("n%d", w)
			for i := range each {
				var b Batch
				b.PutMessage(id, uint64(i), Message{Topic: "t", QoS: 1})
				if err := s.Commit(context.Background(), &b); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := 0
	if err := s.db.View(func(tx *bbolt.Tx) error { total = tx.Bucket([]byte(bucketBuffer)).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	if total != writers*each {
		t.Fatalf("stored %d of %d messages", total, writers*each)
	}
}

// A batch that cannot be stored fails alone, not the others grouped with it.
func TestBoltFailedBatchFailsAlone(t *testing.T) {
	t.Parallel()
	s, _ := openTemp(t)
	var good, bad Batch
	good.PutNode(&Node{ClientID: "good"})
	bad.PutNode(&Node{ClientID: ""}) // bbolt refuses an empty key
	errs := make(chan error, 2)
	go func() { errs <- s.Commit(context.Background(), &bad) }()
	go func() { errs <- s.Commit(context.Background(), &good) }()
	failed := 0
	for range 2 {
		if err := <-errs; err != nil {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d commits failed, want 1", failed)
	}
	if got := loadAll(t, s); got["good"] == nil || len(got) != 1 {
		t.Fatalf("stored %+v", got)
	}
}

func TestBoltOpenDamaged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newer := filepath.Join(dir, "newer.db")
	{
		s, err := Open(newer, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), []byte{Schema + 1})
		}); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
	}
	foreign := filepath.Join(dir, "foreign.db")
	{
		db, err := bbolt.Open(foreign, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
		_ = db.Close()
	}
	locked := filepath.Join(dir, "locked.db")
	holder, err := Open(locked, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing folder", filepath.Join(dir, "nope", "state.db"), "does not exist: create it"},
		{"a folder", dir, "is a folder"},
		{"garbage", write("garbage.db", []byte(strings.Repeat("not a database ", 1000))), "not a readable gateway store"},
		{"truncated", write("short.db", []byte{1, 2, 3}), "not a readable gateway store"},
		{"newer schema", newer, "written by a newer gateway"},
		{"foreign bbolt file", foreign, "not a gateway store"},
		{"locked by another instance", locked, "locked by another process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path, Options{NoSync: true, LockTimeout: 50 * time.Millisecond})
			if err == nil {
				_ = s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), "store.path") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name store.path and %q", err, tc.want)
			}
		})
	}
}

// A damaged record stops Load with an error naming the client and the fix,
// rather than starting with part of the state.
func TestBoltLoadCorruptRecord(t *testing.T) {
	t.Parallel()
	s, _ := openTemp(t)
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(bucketNodes)).Put([]byte("bad"), []byte{nodeFormat, 9})
	}); err != nil {
		t.Fatal(err)
	}
	err := s.Load(func(*Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `client "bad"`) || !strings.Contains(err.Error(), "store.path") {
		t.Fatalf("Load: %v", err)
	}
}

func TestNop(t *testing.T) {
	t.Parallel()
	var s Store = Nop{}
	var b Batch
	b.PutNode(&Node{ClientID: "x"})
	if err := s.Commit(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if len(loadAll(t, s)) != 0 {
		t.Fatal("Nop stored something")
	}
}

// BenchmarkCommitParallel measures grouped commits of one buffered message
// each, with fsync (the production setting), from many goroutines.
func BenchmarkCommitParallel(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.db")
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := make([]byte, 100)
	b.ReportAllocs()
	b.SetParallelism(32)
	var seq sync.Mutex
	next := uint64(0)
	b.RunParallel(func(pb *testing.PB) {
		var batch Batch
		for pb.Next() {
			seq.Lock()
			next++
			i := next
			seq.Unlock()
			batch.Reset()
			batch.PutMessage("bench-node", i, Message{Topic: "bench/topic", Payload: payload, QoS: 1})
			if err := s.Commit(context.Background(), &batch); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncodeNode(b *testing.B) {
	n := sampleNode()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendNode(buf[:0], n)
	}
}
