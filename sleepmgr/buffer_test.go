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
	budget := NewBudget(400) // Ceiling 450
	b1 := NewBuffer(100, budget)
	b2 := NewBuffer(100, budget)
	b1.SetOwner("b1")
	b2.SetOwner("b2")

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
	if budget.Used() != 400 || b1.Bytes()+b2.Bytes() != 400 || budget.Over() {
		t.Fatalf("Used = %d, b1 %d + b2 %d, Over %v", budget.Used(), b1.Bytes(), b2.Bytes(), budget.Over())
	}
	// Over the limit, within the ceiling: the receiving buffer keeps
	// everything, and the largest holder (b1, 250 against 200) is the one
	// asked to give back, by at most its 50-byte lead before b2 is as large.
	if d := b2.Push(item("y1", 1, 50)); d != nil {
		t.Fatalf("push within the ceiling dropped %v", dropsOf(d))
	}
	if !budget.Over() {
		t.Fatalf("Used %d: not over", budget.Used())
	}
	owner, margin, ok := budget.Largest()
	if !ok || owner != "b1" || margin != 50 {
		t.Fatalf("Largest = %v, %d, %v; want b1, 50, true", owner, margin, ok)
	}
	d, ok := b1.Evict()
	if !ok || d.Item.Topic != "x0" || d.Reason != DropBudget || budget.Over() {
		t.Fatalf("Evict = %v, %v; Over %v", dropsOf([]Drop{d}), ok, budget.Over())
	}
	// Over the ceiling (460 > 450): the pushing buffer drops its own QoS 0
	// first, and stays over the limit for the largest holder to fix.
	got := dropsOf(b2.Push(item("y2", 2, 60)))
	if want := []drop{{"q0", DropBudget}}; !slices.Equal(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	if owner, margin, _ := budget.Largest(); owner != "b2" || margin != 10 || budget.Used() != 410 {
		t.Fatalf("Largest = %v, %d; Used %d; want b2, 10, 410", owner, margin, budget.Used())
	}
	// With no QoS 0 left, Evict gives the oldest.
	if d, _ := b2.Evict(); d.Item.Topic != "y0" {
		t.Fatalf("Evict = %q, want y0", d.Item.Topic)
	}
	if q := names(b2); !slices.Equal(q, []string{"y1", "y2"}) {
		t.Fatalf("b2 = %v", q)
	}
	if budget.Used() != 200+110 || b1.Len() != 4 {
		t.Fatalf("Used = %d, b1.Len = %d", budget.Used(), b1.Len())
	}
	// An item larger than the whole budget is refused alone.
	got = dropsOf(b1.Push(item("huge", 2, 401)))
	if want := []drop{{"huge", DropBudget}}; !slices.Equal(got, want) {
		t.Fatalf("drops %v, want %v", got, want)
	}
	if b1.Len() != 4 || budget.Used() != 310 {
		t.Fatalf("after huge: b1.Len=%d Used=%d", b1.Len(), budget.Used())
	}

	// Pop and Clear release bytes; an empty buffer is no longer a holder.
	if _, ok := b1.Pop(); !ok {
		t.Fatal("Pop failed")
	}
	if budget.Used() != 260 || b1.Bytes() != 150 {
		t.Fatalf("after Pop Used=%d b1=%d", budget.Used(), b1.Bytes())
	}
	b1.Clear()
	if budget.Used() != 110 || b1.Len() != 0 || b1.Bytes() != 0 {
		t.Fatalf("after Clear Used=%d b1 Len=%d Bytes=%d", budget.Used(), b1.Len(), b1.Bytes())
	}
	if owner, margin, _ := budget.Largest(); owner != "b2" || margin != 110 {
		t.Fatalf("Largest after Clear = %v, %d; want b2, 110 (the only holder)", owner, margin)
	}
	for b2.Len() > 0 {
		b2.Pop()
	}
	if _, _, ok := budget.Largest(); ok || budget.Used() != 0 {
		t.Fatalf("all empty: Largest ok=%v, Used = %d", ok, budget.Used())
	}
	if _, ok := b2.Evict(); ok {
		t.Fatal("Evict of an empty buffer reported a drop")
	}
	// A cleared buffer is still usable, with the same budget: pushes fill
	// it up to the ceiling, 450/36 = 12, and then drop its own oldest.
	for i := range 20 {
		b1.Push(item("r"+strconv.Itoa(i), 1, 36))
	}
	if b1.Len() != 12 || budget.Used() != 12*36 {
		t.Fatalf("reused buffer Len = %d Used = %d, want 12, 432", b1.Len(), budget.Used())
	}
	if it, _ := b1.Peek(); it.Topic != "r8" {
		t.Fatalf("oldest = %q, want r8", it.Topic)
	}
}

// TestBudgetLargestPays is the case of issue 14: three buffers fill the
// budget, then a fourth receives 20 QoS 1 messages. Each time the budget
// is over, the owner of the largest holder evicts (as the gateway's shards
// do); the fourth buffer keeps all 20.
func TestBudgetLargestPays(t *testing.T) {
	const limit = 3 * 100 * 100
	budget := NewBudget(limit)
	bufs := map[string]*Buffer{}
	for _, name := range []string{"a", "b", "c", "victim"} {
		bufs[name] = NewBuffer(1000, budget)
		bufs[name].SetOwner(name)
	}
	// a, b and c fill the budget; a holds the most, with some QoS 0.
	for i := range 110 {
		bufs["a"].Push(item("a"+strconv.Itoa(i), int8(i%2), 100))
	}
	for _, name := range []string{"b", "c"} {
		for i := range 100 {
			bufs[name].Push(item(name+strconv.Itoa(i), 1, 100))
		}
	}
	var evicted []string
	rebalance := func() {
		for budget.Over() {
			owner, margin, ok := budget.Largest()
			if !ok {
				t.Fatal("over with no holder")
			}
			for given := int64(0); budget.Over() && (given == 0 || given < margin); {
				d, ok := bufs[owner.(string)].Evict()
				if !ok {
					break
				}
				given += int64(d.Item.Size())
				evicted = append(evicted, d.Item.Topic)
			}
		}
	}
	rebalance()
	for i := range 20 {
		if d := bufs["victim"].Push(item("v"+strconv.Itoa(i), 1, 100)); d != nil {
			t.Fatalf("victim's message %d dropped: %v", i, dropsOf(d))
		}
		rebalance()
	}
	if bufs["victim"].Len() != 20 || budget.Used() > limit {
		t.Fatalf("victim holds %d of 20; Used %d", bufs["victim"].Len(), budget.Used())
	}
	// a paid first, its QoS 0 messages (even numbers) oldest first, until
	// it was no larger than b and c; then the three took turns. (A fourth
	// buffer that grew to be the largest would pay in its turn.)
	if want := []string{"a0", "a2", "a4", "a6", "a8"}; !slices.Equal(evicted[:5], want) {
		t.Fatalf("first evictions %v, want %v", evicted[:5], want)
	}
	for _, name := range []string{"a", "b", "c"} {
		if n := bufs[name].Len(); n < 92 || n > 94 {
			t.Fatalf("%s holds %d: the cost was not shared (evicted %v)", name, n, evicted)
		}
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
					if !overCount && modelBytes() <= budget.Ceiling() {
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
			b.SetOwner(g)
			for i := range 2000 {
				b.Push(item("g"+strconv.Itoa(g), int8(i%3), 40))
				if i%3 == 0 {
					b.Pop()
				}
				if owner, _, ok := budget.Largest(); ok && owner == g {
					b.Evict()
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
