package topicreg

import (
	"errors"
	"maps"
	"strconv"
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func TestRegisterSameNameSameID(t *testing.T) {
	r := New(0)
	steps := []struct {
		name string
		want uint16
	}{
		{"a", 1}, {"b", 2}, {"a", 1}, {"$SYS/x", 3}, {"b", 2}, {"a/b/c", 4}, {"ab", 5},
	}
	for _, s := range steps {
		id, err := r.Register(s.name)
		if err != nil || id != s.want {
			t.Fatalf("Register(%q) = %d, %v; want %d", s.name, id, err, s.want)
		}
		if !r.Acked(id) {
			t.Errorf("Register(%q): id %d not acked", s.name, id)
		}
		if n, ok := r.Name(id); !ok || n != s.name {
			t.Errorf("Name(%d) = %q, %v", id, n, ok)
		}
		if got, ok := r.ID(s.name); !ok || got != id {
			t.Errorf("ID(%q) = %d, %v", s.name, got, ok)
		}
	}
	if r.Len() != 5 {
		t.Fatalf("Len = %d, want 5", r.Len())
	}
}

func TestRegisterRejects(t *testing.T) {
	tests := []struct {
		name string
		want snpacket.ReturnCode
	}{
		{"", snpacket.RejectedNotSupported},
		{"a/+", snpacket.RejectedNotSupported},
		{"a/#", snpacket.RejectedNotSupported},
		{"#", snpacket.RejectedNotSupported},
		{"a+b", snpacket.RejectedNotSupported},
		{"a\x00", snpacket.RejectedNotSupported},
		{"\xc3\x28", snpacket.RejectedNotSupported},
	}
	for _, tt := range tests {
		r := New(0)
		id, err := r.Register(tt.name)
		if id != 0 || !errors.Is(err, tt.want) {
			t.Errorf("Register(%q) = %d, %v; want 0, %v", tt.name, id, err, tt.want)
		}
		id, acked, err := r.Assign(tt.name)
		if id != 0 || acked || !errors.Is(err, tt.want) {
			t.Errorf("Assign(%q) = %d, %v, %v; want 0, false, %v", tt.name, id, acked, err, tt.want)
		}
		var rc snpacket.ReturnCode
		if !errors.As(err, &rc) || rc != tt.want {
			t.Errorf("errors.As ReturnCode = %v", rc)
		}
		if r.Len() != 0 {
			t.Errorf("rejected name stored")
		}
	}
}

func TestRegisterLimit(t *testing.T) {
	tests := []struct {
		max, want int
	}{
		{3, 3}, {1, 1}, {0, DefaultMax}, {-5, DefaultMax},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.max), func(t *testing.T) {
			r := New(tt.max)
			for i := range tt.want {
				if _, err := r.Register("t/" + strconv.Itoa(i)); err != nil {
					t.Fatalf("Register %d: %v", i, err)
				}
			}
			if _, err := r.Register("one/more"); !errors.Is(err, snpacket.RejectedCongestion) {
				t.Fatalf("Register over limit: %v, want congestion", err)
			}
			if _, _, err := r.Assign("one/more"); !errors.Is(err, snpacket.RejectedCongestion) {
				t.Fatalf("Assign over limit: %v, want congestion", err)
			}
			// Existing names are still served when full.
			if id, err := r.Register("t/0"); err != nil || id != 1 {
				t.Fatalf("Register existing when full = %d, %v", id, err)
			}
			// Room again after a Remove.
			r.Remove(1)
			if _, err := r.Register("one/more"); err != nil {
				t.Fatalf("Register after Remove: %v", err)
			}
			if r.Len() != tt.want {
				t.Fatalf("Len = %d, want %d", r.Len(), tt.want)
			}
		})
	}
}

func TestRegistryLimitCapped(t *testing.T) {
	r := New(1 << 20)
	for i := range maxIDs {
		id, err := r.Register(strconv.Itoa(i))
		if err != nil {
			t.Fatalf("Register %d: %v", i, err)
		}
		if id != uint16(i+1) {
			t.Fatalf("Register %d = id %d", i, id)
		}
	}
	if _, err := r.Register("x"); !errors.Is(err, snpacket.RejectedCongestion) {
		t.Fatalf("65535th topic: %v, want congestion", err)
	}
	if _, ok := r.Name(0); ok {
		t.Error("id 0 in use")
	}
	if _, ok := r.Name(0xFFFF); ok {
		t.Error("id 0xFFFF in use")
	}
	// The only free id after removing one is that one, found by wrapping.
	r.Remove(0x1234)
	if id, err := r.Register("y"); err != nil || id != 0x1234 {
		t.Fatalf("Register in full table = %#x, %v; want 0x1234", id, err)
	}
}

func TestAssignAck(t *testing.T) {
	r := New(0)
	id, acked, err := r.Assign("s/1")
	if err != nil || id != 1 || acked {
		t.Fatalf("Assign new = %d, %v, %v; want 1, false, nil", id, acked, err)
	}
	if r.Acked(id) {
		t.Fatal("Acked before Ack")
	}
	// Asking again (e.g. a second publication before REGACK) gives the same id.
	if id2, acked, _ := r.Assign("s/1"); id2 != id || acked {
		t.Fatalf("Assign again = %d, %v", id2, acked)
	}
	r.Ack(id)
	if !r.Acked(id) {
		t.Fatal("not Acked after Ack")
	}
	if id2, acked, _ := r.Assign("s/1"); id2 != id || !acked {
		t.Fatalf("Assign after Ack = %d, %v; want %d, true", id2, acked, id)
	}

	// A node REGISTERing a name the gateway assigned makes it known.
	id, _, _ = r.Assign("s/2")
	if id2, err := r.Register("s/2"); err != nil || id2 != id || !r.Acked(id) {
		t.Fatalf("Register of assigned = %d, %v, acked %v", id2, err, r.Acked(id))
	}

	// Rejected REGISTER: the node REGACKs with an error, the gateway removes.
	id, _, _ = r.Assign("s/3")
	r.Remove(id)
	if _, ok := r.Name(id); ok || r.Acked(id) {
		t.Fatal("removed id still present")
	}
	if _, ok := r.ID("s/3"); ok {
		t.Fatal("removed name still present")
	}

	// Unknown ids are ignored.
	r.Ack(999)
	r.Remove(999)
	if r.Acked(999) || r.Len() != 2 {
		t.Fatalf("unknown id changed state: Len %d", r.Len())
	}
}

func TestRegistryNoImmediateReuse(t *testing.T) {
	r := New(0)
	a, _ := r.Register("a")
	r.Remove(a)
	b, _ := r.Register("b")
	if b == a {
		t.Fatalf("removed id %d reused immediately", a)
	}
	if _, ok := r.Name(a); ok {
		t.Fatal("stale id resolves")
	}
	// Re-registering a removed name gets a fresh id, too.
	if a2, _ := r.Register("a"); a2 == a {
		t.Fatalf("re-registered name got its old id %d", a)
	}
	r.Reset()
	if c, _ := r.Register("c"); c <= b {
		t.Fatalf("id %d after Reset reuses an id of the old session", c)
	}
}

func TestRegistryWrapNeverReserved(t *testing.T) {
	r := New(10)
	seen := make(map[uint16]int)
	live := make([]uint16, 0, 10)
	for i := range 300_000 { // wraps the 16-bit id space several times
		id, err := r.Register("n/" + strconv.Itoa(i))
		if err != nil {
			t.Fatalf("Register %d: %v", i, err)
		}
		if id == 0 || id == 0xFFFF {
			t.Fatalf("Register %d returned reserved id %#x", i, id)
		}
		seen[id]++
		live = append(live, id)
		if len(live) == 10 {
			// Remove all but the oldest two, which stay across the wrap
			// and must be skipped.
			for _, old := range live[2:] {
				r.Remove(old)
			}
			live = live[:2]
		}
	}
	if r.Len() != len(live) {
		t.Fatalf("Len = %d, want %d", r.Len(), len(live))
	}
	if seen[live[0]] != 1 || seen[live[1]] != 1 {
		t.Errorf("ids held across the wrap were handed out again: %d, %d", seen[live[0]], seen[live[1]])
	}
	if len(seen) != maxIDs {
		t.Errorf("%d distinct ids used, want %d", len(seen), maxIDs)
	}
}

func TestRegistryResetAndTopics(t *testing.T) {
	r := New(0)
	if m := r.Topics(); m == nil || len(m) != 0 {
		t.Fatalf("empty Topics = %#v", m)
	}
	r.Register("a")
	r.Assign("b")
	got := r.Topics()
	if !maps.Equal(got, map[uint16]string{1: "a", 2: "b"}) {
		t.Fatalf("Topics = %v", got)
	}
	got[3] = "c" // a copy
	if r.Len() != 2 {
		t.Fatal("Topics is not a copy")
	}
	r.Reset()
	if r.Len() != 0 || r.byID != nil || r.byName != nil {
		t.Fatalf("after Reset Len = %d, maps %v %v", r.Len(), r.byID, r.byName)
	}
	if _, ok := r.ID("a"); ok {
		t.Fatal("name survives Reset")
	}
	// Maps are released when the last topic is removed.
	id, _ := r.Register("x")
	r.Remove(id)
	if r.byID != nil || r.byName != nil {
		t.Fatal("maps kept after removing the last topic")
	}
}

func TestRegistryLookupNoAllocs(t *testing.T) {
	r := New(0)
	r.Register("sensors/kitchen/temp")
	allocs := testing.AllocsPerRun(100, func() {
		r.Register("sensors/kitchen/temp")
		r.ID("sensors/kitchen/temp")
		r.Name(1)
		r.Acked(1)
		r.Assign("sensors/kitchen/temp")
	})
	if allocs != 0 {
		t.Fatalf("lookups allocate %v times", allocs)
	}
}

func benchNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "sensors/node" + strconv.Itoa(i) + "/temperature"
	}
	return names
}

func BenchmarkRegisterNew(b *testing.B) {
	names := benchNames(DefaultMax)
	r := New(0)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(names) {
			r.Reset()
			i = 0
		}
		if _, err := r.Register(names[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkRegisterExisting(b *testing.B) {
	names := benchNames(100)
	r := New(0)
	for _, n := range names {
		r.Register(n)
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		r.Register(names[i%len(names)])
		i++
	}
}

func BenchmarkID(b *testing.B) {
	names := benchNames(100)
	r := New(0)
	for _, n := range names {
		r.Register(n)
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		r.ID(names[i%len(names)])
		i++
	}
}

func BenchmarkName(b *testing.B) {
	r := New(0)
	for _, n := range benchNames(100) {
		r.Register(n)
	}
	var id uint16
	b.ReportAllocs()
	for b.Loop() {
		r.Name(1 + id%100)
		id++
	}
}

func TestUnack(t *testing.T) {
	r := New(0)
	a, _ := r.Register("u/a")
	b, _, _ := r.Assign("u/b")
	r.Ack(b)
	c, _, _ := r.Assign("u/c") // never acked
	r.Unack(a)
	if r.Acked(a) || !r.Acked(b) {
		t.Fatalf("after Unack(a): a %v, b %v", r.Acked(a), r.Acked(b))
	}
	if name, ok := r.Name(a); !ok || name != "u/a" {
		t.Fatalf("Unack lost the name: %q %v", name, ok)
	}
	r.Ack(a)
	r.UnackAll()
	for _, id := range []uint16{a, b, c} {
		if r.Acked(id) {
			t.Errorf("id %d acked after UnackAll", id)
		}
	}
	// The same name keeps its id, and the node's REGISTER makes it known.
	if id, acked, _ := r.Assign("u/b"); id != b || acked {
		t.Fatalf("Assign after UnackAll = %d, %v", id, acked)
	}
	if id, _ := r.Register("u/a"); id != a || !r.Acked(a) {
		t.Fatalf("Register after UnackAll = %d, acked %v", id, r.Acked(a))
	}
	r.Unack(999) // unknown: ignored
	if r.Len() != 3 {
		t.Fatalf("Len = %d", r.Len())
	}
}

// Bytes follows every way a name enters or leaves the registry.
func TestRegistryBytes(t *testing.T) {
	r := New(10)
	if _, err := r.Register("a/bc"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register("a/bc"); err != nil { // same name: not counted twice
		t.Fatal(err)
	}
	id, _, err := r.Assign("xyz")
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes() != 7 {
		t.Fatalf("bytes %d, want 7", r.Bytes())
	}
	r.Remove(id)
	if r.Bytes() != 4 {
		t.Fatalf("after Remove: bytes %d, want 4", r.Bytes())
	}
	r.Reset()
	if r.Bytes() != 0 {
		t.Fatalf("after Reset: bytes %d, want 0", r.Bytes())
	}
}
