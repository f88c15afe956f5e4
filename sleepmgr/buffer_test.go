package sleepmgr

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// item returns an Item whose Size is exactly size (>= 33) with topic name.
func item(name string, qos int8, size int) Item {
	return Item{Topic: name, Payload: make([]byte, size-itemOverhead-len(name)), QoS: qos}
}

func names(b *Buffer) []string {
	var out []string
	for i := range b.n {
		out = append(out, b.items[b.slot(i)].Topic)
	}
	return out
}

type drop struct {
	name   string
	reason DropReason
}

func dropsOf(ds []Drop) []drop {
	var out []drop
	for _, d := range ds {
		out = append(out, drop{d.Item.Topic, d.Reason})
	}
	return out
}

func TestItemSize(t *testing.T) {
	if got := (Item{Topic: "abc", Payload: []byte("hello")}).Size(); got != 3+5+32 {
		t.Fatalf("Size = %d, want 40", got)
	}
	if got := (Item{}).Size(); got != 32 {
		t.Fatalf("empty Size = %d, want 32", got)
	}
}

func TestBufferFIFO(t *testing.T) {
	b := NewBuffer(0, nil)
	if _, ok := b.Peek(); ok {
		t.Fatal("Peek on empty buffer succeeded")
	}
	if _, ok := b.Pop(); ok {
		t.Fatal("Pop on empty buffer succeeded")
	}
	const n = 2500 // over the default limit: check the default too
	var want int64
	for i := range n {
		it := Item{Topic: "t/" + strconv.Itoa(i), Payload: []byte{byte(i)}, QoS: int8(1 + i%2)}
		if d := b.Push(it); d != nil {
			if i < DefaultBufferCount {
				t.Fatalf("push %d dropped %v", i, dropsOf(d))
			}
			continue
		}
		want += int64(it.Size())
	}
	if b.Len() != DefaultBufferCount {
		t.Fatalf("Len = %d, want %d", b.Len(), DefaultBufferCount)
	}
	// Oldest were dropped: the survivors are the last 1000, in order.
	for i := n - DefaultBufferCount; i < n; i++ {
		p, ok := b.Peek()
		it, ok2 := b.Pop()
		if !ok || !ok2 || p.Topic != it.Topic {
			t.Fatalf("Peek/Pop mismatch at %d: %v %v", i, p.Topic, it.Topic)
		}
		if want := "t/" + strconv.Itoa(i); it.Topic != want {
			t.Fatalf("Pop = %q, want %q", it.Topic, want)
		}
	}
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Fatalf("after draining Len=%d Bytes=%d", b.Len(), b.Bytes())
	}
	if b.items != nil {
		t.Errorf("drained buffer keeps %d slots", len(b.items))
	}
}

func TestBufferOverflowPolicy(t *testing.T) {
	type step struct {
		name  string
		qos   int8
		drops []drop
		queue []string // contents after the push, oldest first
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{
			name: "qos0 oldest first, then oldest qos>0, pushed qos0 dropped",
			max:  3,
			steps: []step{
				{"a", 0, nil, []string{"a"}},
				{"b", 1, nil, []string{"a", "b"}},
				{"c", 0, nil, []string{"a", "b", "c"}},
				{"d", 2, []drop{{"a", DropQoS0Overflow}}, []string{"b", "c", "d"}},
				{"e", 1, []drop{{"c", DropQoS0Overflow}}, []string{"b", "d", "e"}},
				{"f", 1, []drop{{"b", DropOverflow}}, []string{"d", "e", "f"}},
				{"g", 0, []drop{{"g", DropQoS0Overflow}}, []string{"d", "e", "f"}},
				{"h", -1, []drop{{"h", DropQoS0Overflow}}, []string{"d", "e", "f"}},
			},
		},
		{
			name: "all qos0: oldest dropped",
			max:  2,
			steps: []step{
				{"a", 0, nil, []string{"a"}},
				{"b", 0, nil, []string{"a", "b"}},
				{"c", 0, []drop{{"a", DropQoS0Overflow}}, []string{"b", "c"}},
			},
		},
		{
			name: "max 1",
			max:  1,
			steps: []step{
				{"a", 1, nil, []string{"a"}},
				{"b", 0, []drop{{"b", DropQoS0Overflow}}, []string{"a"}},
				{"c", 2, []drop{{"a", DropOverflow}}, []string{"c"}},
			},
		},
		{
			name: "qos0 in the middle of a wrapped ring",
			max:  4,
			steps: []step{
				{"a", 1, nil, []string{"a"}},
				{"b", 1, nil, []string{"a", "b"}},
				{"c", 1, nil, []string{"a", "b", "c"}},
				{"d", 0, nil, []string{"a", "b", "c", "d"}},
				{"e", 1, []drop{{"d", DropQoS0Overflow}}, []string{"a", "b", "c", "e"}},
				{"f", 0, []drop{{"f", DropQoS0Overflow}}, []string{"a", "b", "c", "e"}},
				{"g", 1, []drop{{"a", DropOverflow}}, []string{"b", "c", "e", "g"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			budget := NewBudget(0) // unlimited, but counting
			b := NewBuffer(tt.max, budget)
			for _, s := range tt.steps {
				got := dropsOf(b.Push(item(s.name, s.qos, 40)))
				if !slices.Equal(got, s.drops) {
					t.Fatalf("push %s: drops %v, want %v", s.name, got, s.drops)
				}
				if q := names(b); !slices.Equal(q, s.queue) {
					t.Fatalf("push %s: queue %v, want %v", s.name, q, s.queue)
				}
				if b.Bytes() != int64(40*b.Len()) || budget.Used() != b.Bytes() {
					t.Fatalf("push %s: Bytes=%d Used=%d Len=%d", s.name, b.Bytes(), budget.Used(), b.Len())
				}
			}
		})
	}
}

func TestBufferBudgetShared(t *testing.T) {
	budget := NewBudget(400)
	b1 := NewBuffer(100, budget)
	b2 := NewBuffer(100, budget)

	for i := range 5 { // 5*50 = 250
		if d := b1.Push(item("x"+strconv.Itoa(i), 1, 50)); d != nil {
			t.Fatalf("b1 push %d dropped %v", i, dropsOf(d))
		}
	}
	if d := b2.Push(item("q0", 0, 50)); d != nil { // 300
		t.Fatal(dropsOf(d))
	}
	if d := b2.Push(item("y0", 1, 100)); d != nil { // 400: exactly at the limit
		t.Fatal(dropsOf(d))
	}
	if budget.Used() != 400 || b1.Bytes()+b2.Bytes() != 400 {
		t.Fatalf("Used = %d, b1 %d + b2 %d", budget.Used(), b1.Bytes(), b2.Bytes())
	}
	// Over budget: b2's own QoS 0 goes first.
	got := dropsOf(b2.Push(item("y1", 1, 50)))
	if want := []drop{{"q0", DropBudget}}; !slices.Equal(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	// Over again, no QoS 0 in b2: b2's oldest goes (b1 is untouched).
	got = dropsOf(b2.Push(item("y2", 2, 60)))
	if want := []drop{{"y0", DropBudget}}; !slices.Equal(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	if q := names(b2); !slices.Equal(q, []string{"y1", "y2"}) {
		t.Fatalf("b2 = %v", q)
	}
	if budget.Used() != 250+110 || b1.Len() != 5 {
		t.Fatalf("Used = %d, b1.Len = %d", budget.Used(), b1.Len())
	}
	// Pushed item dropped when the buffer has nothing else to give up.
	b3 := NewBuffer(10, budget)
	b3.Push(item("z0", 1, 40)) // 400
	got = dropsOf(b3.Push(item("z1", 0, 40)))
	if want := []drop{{"z1", DropBudget}}; !slices.Equal(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	got = dropsOf(b3.Push(item("z2", 1, 40)))
	if want := []drop{{"z0", DropBudget}}; !slices.Equal(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	// An item larger than the whole budget is refused alone.
	got = dropsOf(b1.Push(item("huge", 2, 401)))
	if want := []drop{{"huge", DropBudget}}; !slices.Equal(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	if b1.Len() != 5 || budget.Used() != 400 {
		t.Fatalf("after huge: b1.Len=%d Used=%d", b1.Len(), budget.Used())
	}

	// Pop and Clear release bytes.
	if _, ok := b1.Pop(); !ok {
		t.Fatal("Pop failed")
	}
	if budget.Used() != 350 || b1.Bytes() != 200 {
		t.Fatalf("after Pop Used=%d b1=%d", budget.Used(), b1.Bytes())
	}
	b1.Clear()
	if budget.Used() != 150 || b1.Len() != 0 || b1.Bytes() != 0 {
		t.Fatalf("after Clear Used=%d b1 Len=%d Bytes=%d", budget.Used(), b1.Len(), b1.Bytes())
	}
	b2.Clear()
	b3.Clear()
	if budget.Used() != 0 {
		t.Fatalf("all cleared, Used = %d", budget.Used())
	}
	// A cleared buffer is still usable, with the same budget: 400/36 = 11.
	for i := range 20 {
		b1.Push(item("r"+strconv.Itoa(i), 1, 36))
	}
	if b1.Len() != 11 || budget.Used() != 11*36 {
		t.Fatalf("reused buffer Len = %d Used = %d, want 11, 396", b1.Len(), budget.Used())
	}
	if it, _ := b1.Peek(); it.Topic != "r9" {
		t.Fatalf("oldest = %q, want r9", it.Topic)
	}
}

func TestBudgetNilAndUnlimited(t *testing.T) {
	var nb *Budget
	if nb.Used() != 0 || nb.Max() != 0 {
		t.Fatal("nil budget not empty")
	}
	for _, bud := range []*Budget{nil, NewBudget(0), NewBudget(-1)} {
		b := NewBuffer(5, bud)
		for i := range 5 {
			if d := b.Push(item("t", 1, 1<<20)); d != nil {
				t.Fatalf("push %d dropped with unlimited budget", i)
			}
		}
		if bud.Used() != b.Bytes() && bud != nil {
			t.Fatalf("Used %d != Bytes %d", bud.Used(), b.Bytes())
		}
		b.Clear()
		if bud.Used() != 0 {
			t.Fatalf("Used after Clear = %d", bud.Used())
		}
	}
}

func TestBufferNoStaleReferences(t *testing.T) {
	b := NewBuffer(8, nil)
	for i := range 6 {
		b.Push(item("p"+strconv.Itoa(i), int8(i%2), 40))
	}
	b.Pop()
	b.Pop()
	b.Push(item("q", 1, 40))
	for range 6 { // force a QoS0 drop from the middle, then overflow
		b.Push(item("r", 1, 40))
	}
	for i := range b.items {
		inQueue := false
		for k := range b.n {
			if b.slot(k) == i {
				inQueue = true
			}
		}
		if !inQueue && (b.items[i].Topic != "" || b.items[i].Payload != nil) {
			t.Fatalf("slot %d outside the queue still holds %q", i, b.items[i].Topic)
		}
	}
}

// TestBufferModel runs random operations against a plain-slice model.
func TestBufferModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		maxCount := 1 + rng.IntN(40)
		budget := NewBudget(int64(40 * (1 + rng.IntN(60))))
		b := NewBuffer(maxCount, budget)
		var model []Item
		modelBytes := func() (n int64) {
			for _, it := range model {
				n += int64(it.Size())
			}
			return n
		}
		for op := range 3000 {
			switch r := rng.IntN(10); {
			case r < 6:
				it := item("m"+strconv.Itoa(op), int8(rng.IntN(3)), 40+rng.IntN(20))
				got := b.Push(it)
				model = append(model, it)
				var want []Drop
				for len(model) > 0 {
					overCount := len(model) > maxCount
					if !overCount && modelBytes() <= budget.Max() {
						break
					}
					v := slices.IndexFunc(model, func(it Item) bool { return it.QoS <= 0 })
					if v < 0 {
						v = 0
					}
					reason := DropBudget
					if overCount {
						reason = DropOverflow
						if model[v].QoS <= 0 {
							reason = DropQoS0Overflow
						}
					}
					want = append(want, Drop{model[v], reason})
					model = slices.Delete(model, v, v+1)
				}
				if !slices.EqualFunc(dropsOf(got), dropsOf(want), func(a, b drop) bool { return a == b }) {
					t.Fatalf("round %d op %d: drops %v, want %v", round, op, dropsOf(got), dropsOf(want))
				}
			case r < 9:
				got, ok := b.Pop()
				if ok != (len(model) > 0) {
					t.Fatalf("round %d op %d: Pop ok=%v with model len %d", round, op, ok, len(model))
				}
				if ok {
					if got.Topic != model[0].Topic {
						t.Fatalf("round %d op %d: Pop %q, want %q", round, op, got.Topic, model[0].Topic)
					}
					model = model[1:]
				}
			default:
				if rng.IntN(20) == 0 {
					b.Clear()
					model = nil
				}
			}
			if b.Len() != len(model) || b.Bytes() != modelBytes() || budget.Used() != b.Bytes() {
				t.Fatalf("round %d op %d: Len=%d/%d Bytes=%d/%d Used=%d", round, op,
					b.Len(), len(model), b.Bytes(), modelBytes(), budget.Used())
			}
			n0 := 0
			for _, it := range model {
				if it.QoS <= 0 {
					n0++
				}
			}
			if b.nQoS0 != n0 {
				t.Fatalf("round %d op %d: nQoS0=%d want %d", round, op, b.nQoS0, n0)
			}
		}
	}
}

func TestBufferPushPopNoAllocs(t *testing.T) {
	b := NewBuffer(100, NewBudget(1<<20))
	it := Item{Topic: "a/b", Payload: []byte("x"), QoS: 1}
	b.Push(it) // allocate the ring
	b.Push(it)
	allocs := testing.AllocsPerRun(1000, func() {
		b.Push(it)
		b.Pop()
	})
	if allocs != 0 {
		t.Fatalf("Push+Pop allocates %v times", allocs)
	}
}

// TestBudgetConcurrent exercises one budget from several owners (run with -race).
func TestBudgetConcurrent(t *testing.T) {
	budget := NewBudget(100 * 40)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			b := NewBuffer(50, budget)
			for i := range 2000 {
				b.Push(item("g"+strconv.Itoa(g), int8(i%3), 40))
				if i%3 == 0 {
					b.Pop()
				}
			}
			b.Clear()
		})
	}
	wg.Wait()
	if budget.Used() != 0 {
		t.Fatalf("Used after all cleared = %d", budget.Used())
	}
}

func BenchmarkBufferPushPop(b *testing.B) {
	buf := NewBuffer(1000, NewBudget(1<<30))
	it := Item{Topic: "sensors/kitchen/temp", Payload: make([]byte, 16), QoS: 1}
	b.ReportAllocs()
	for b.Loop() {
		buf.Push(it)
		buf.Pop()
	}
}

func BenchmarkBufferFillDrain(b *testing.B) {
	buf := NewBuffer(1000, NewBudget(1<<30))
	it := Item{Topic: "sensors/kitchen/temp", Payload: make([]byte, 16), QoS: 1}
	b.ReportAllocs()
	for b.Loop() {
		for range 100 {
			buf.Push(it)
		}
		for range 100 {
			buf.Pop()
		}
	}
}

func BenchmarkBufferOverflowQoS0(b *testing.B) {
	buf := NewBuffer(100, nil)
	q1 := Item{Topic: "a", QoS: 1}
	q0 := Item{Topic: "b", QoS: 0}
	for i := range 100 {
		if i%10 == 9 {
			buf.Push(q0)
		} else {
			buf.Push(q1)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		buf.Push(q0) // drops the oldest QoS 0
	}
}
