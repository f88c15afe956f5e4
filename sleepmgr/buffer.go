package sleepmgr

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// DefaultBufferCount is the per-node message limit used when NewBuffer is
// given maxCount <= 0.
const DefaultBufferCount = 1000

// itemOverhead approximates the bookkeeping cost of one buffered Item, so a
// flood of empty messages still counts against the byte budget.
const itemOverhead = 32

// Item is one message queued for a node (downlink). Topic is the MQTT topic
// name; the gateway maps it to a topic id when the message is sent.
type Item struct {
	Topic   string
	Payload []byte
	QoS     int8
	Retain  bool
	// Seq is the caller's tag for the item (the gateway's position in the
	// durable store); the buffer carries it unchanged.
	Seq uint64
}

// Size is the number of bytes the item counts against a Budget:
// len(Topic) + len(Payload) + a fixed overhead of 32.
func (it Item) Size() int { return len(it.Topic) + len(it.Payload) + itemOverhead }

// Budget is a gateway-wide byte limit shared by all buffers. It is safe for
// concurrent use. A nil *Budget is unlimited and reports 0 bytes used.
//
// Fairness: when the budget is full, the buffer holding the most bytes
// pays, not the one receiving. Buffers belong to different owners (the
// gateway's shard workers), and a buffer may only be touched by its owner,
// so a Push that takes the budget over its limit is accepted, and its
// caller asks the owner of the largest holder (Largest) to give bytes back
// (Buffer.Evict). Until that owner has done so the budget may run over its
// limit, by at most an eighth of it (Ceiling): beyond that a Push drops from
// its own buffer, as it would with no other owner to ask, so memory stays
// bounded even when an owner is slow.
type Budget struct {
	max  int64
	used atomic.Int64

	// mu guards holders: the limited budget's buffers that hold bytes.
	// It is taken when a buffer goes from empty to holding bytes and
	// back, and by Largest; never together with another lock.
	mu      sync.Mutex
	holders map[*Buffer]struct{}
}

// NewBudget returns a Budget allowing maxBytes in total across all buffers
// that share it; maxBytes <= 0 means unlimited (usage is still counted).
func NewBudget(maxBytes int64) *Budget {
	if maxBytes < 0 {
		maxBytes = 0
	}
	return &Budget{max: maxBytes, holders: map[*Buffer]struct{}{}}
}

// Used returns the bytes currently held by all buffers sharing b.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Max returns the limit, 0 meaning unlimited.
func (b *Budget) Max() int64 {
	if b == nil {
		return 0
	}
	return b.max
}

// Ceiling is what the buffers may hold together while the largest holder's
// owner has not yet given bytes back: Max plus an eighth (0: unlimited).
func (b *Budget) Ceiling() int64 {
	if b == nil || b.max <= 0 {
		return 0
	}
	return b.max + b.max/8
}

// Over reports whether the buffers hold more than Max, so that the
// largest holder should give bytes back.
func (b *Budget) Over() bool {
	return b.limited() && b.used.Load() > b.max
}

// Largest returns the owner (as given to Buffer.SetOwner) of the buffer
// holding the most bytes, and margin: how many bytes more it holds than
// the next largest (all it holds when it is the only one). ok is false
// when no buffer holds bytes or the budget is unlimited. It takes the
// budget's lock and looks at every buffer holding bytes, so call it only
// when the budget is over (Over).
func (b *Budget) Largest() (owner any, margin int64, ok bool) {
	if !b.limited() {
		return nil, 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var first, second int64
	var top *Buffer
	for h := range b.holders {
		n := h.held.Load()
		switch {
		case n > first:
			first, second, top = n, first, h
		case n > second:
			second = n
		}
	}
	if top == nil {
		return nil, 0, false
	}
	return top.owner, first - second, true
}

func (b *Budget) limited() bool { return b != nil && b.max > 0 }

func (b *Budget) add(n int64) {
	if b != nil {
		b.used.Add(n)
	}
}

// overCeiling reports whether usage exceeds what may be held until the
// largest holder gives bytes back.
func (b *Budget) overCeiling() bool {
	return b.limited() && b.used.Load() > b.Ceiling()
}

// exceedsAlone reports whether n bytes could never fit, even in an
// otherwise empty gateway.
func (b *Budget) exceedsAlone(n int64) bool {
	return b.limited() && n > b.max
}

// track adds buf to the holders (holding) or removes it.
func (b *Budget) track(buf *Buffer, holding bool) {
	b.mu.Lock()
	if holding {
		b.holders[buf] = struct{}{}
	} else {
		delete(b.holders, buf)
	}
	b.mu.Unlock()
}

// DropReason says why a buffered message was discarded.
type DropReason uint8

// Drop reasons.
const (
	// DropQoS0Overflow: a QoS 0 message dropped because the node's buffer
	// was over its message count.
	DropQoS0Overflow DropReason = iota
	// DropOverflow: a QoS 1/2 message dropped because the node's buffer was
	// over its message count with no QoS 0 message left to drop.
	DropOverflow
	// DropBudget: a message (any QoS) dropped because the gateway-wide byte
	// budget was exceeded: given back by the largest holder (Evict), or
	// dropped by Push over the budget's Ceiling or because it alone is
	// larger than the budget.
	DropBudget
)

// String returns a name suitable for a metrics label, e.g. "qos0_overflow".
func (r DropReason) String() string {
	switch r {
	case DropQoS0Overflow:
		return "qos0_overflow"
	case DropOverflow:
		return "overflow"
	case DropBudget:
		return "budget"
	}
	return "DropReason(" + strconv.Itoa(int(r)) + ")"
}

// Drop is a message discarded by Buffer.Push, and why.
type Drop struct {
	Item   Item
	Reason DropReason
}

// Buffer is one node's FIFO of pending downlink messages. It is not safe
// for concurrent use. Push and Pop are O(1) amortized; dropping a QoS 0
// message from the middle is O(n).
//
// The buffer stores items as given and does not copy Payload: the caller
// hands ownership of the slice to the buffer.
type Buffer struct {
	items  []Item // ring; len(items) is the capacity
	head   int    // index of the oldest item
	n      int    // items queued
	nQoS0  int    // of which QoS <= 0
	max    int
	bytes  int64
	budget *Budget

	// owner is what Budget.Largest reports for this buffer; held mirrors
	// bytes for Largest, which reads it from other goroutines.
	owner any
	held  atomic.Int64
}

// Ring sizing: the ring is released when it empties if it holds more than
// keepSlots slots, and halved while draining when it is at most a quarter
// full and at least shrinkMin slots.
const (
	keepSlots = 4
	shrinkMin = 64
)

// NewBuffer returns an empty buffer holding at most maxCount messages
// (maxCount <= 0 means DefaultBufferCount), charging their bytes to budget,
// which may be nil (no byte limit). An empty buffer allocates no slots.
func NewBuffer(maxCount int, budget *Budget) *Buffer {
	if maxCount <= 0 {
		maxCount = DefaultBufferCount
	}
	return &Buffer{max: maxCount, budget: budget}
}

// SetOwner sets what Budget.Largest reports when this buffer holds the
// most bytes: whoever may call Evict on it. Call it before the first Push.
func (b *Buffer) SetOwner(owner any) { b.owner = owner }

// Push appends it to the buffer. If the buffer is then over its message
// count, or the shared budget is over its Ceiling, messages are dropped
// until neither holds (or the buffer is empty): QoS 0 messages first,
// oldest first, and when none is left, the oldest message. The pushed item
// itself may be dropped: it is a QoS 0 one and no older QoS 0 is queued,
// or it alone is larger than the whole budget (then nothing else is
// dropped). Over the budget's Max but within its Ceiling nothing is
// dropped here: the caller then asks the largest holder's owner to Evict
// (see Budget).
//
// Push returns the dropped messages; on the common path it returns nil and
// does not allocate (beyond growing the ring).
func (b *Buffer) Push(it Item) []Drop {
	size := int64(it.Size())
	if b.budget.exceedsAlone(size) {
		return []Drop{{Item: it, Reason: DropBudget}}
	}
	if b.n == len(b.items) {
		b.grow()
	}
	b.items[b.slot(b.n)] = it
	b.n++
	if it.QoS <= 0 {
		b.nQoS0++
	}
	b.charge(size)

	var drops []Drop
	for b.n > 0 {
		overCount := b.n > b.max
		if !overCount && !b.budget.overCeiling() {
			break
		}
		dropped := b.removeAt(b.victim())
		reason := DropBudget
		if overCount {
			reason = DropOverflow
			if dropped.QoS <= 0 {
				reason = DropQoS0Overflow
			}
		}
		drops = append(drops, Drop{Item: dropped, Reason: reason})
	}
	return drops
}

// Evict drops one message to give bytes back to the budget, as the
// largest holder does when the budget is over (Budget.Largest): the oldest
// QoS 0 message, or else the oldest. It reports false when the buffer is
// empty.
func (b *Buffer) Evict() (Drop, bool) {
	if b.n == 0 {
		return Drop{}, false
	}
	it := b.removeAt(b.victim())
	b.maybeShrink()
	return Drop{Item: it, Reason: DropBudget}, true
}

// Peek returns the oldest message without removing it.
func (b *Buffer) Peek() (Item, bool) {
	if b.n == 0 {
		return Item{}, false
	}
	return b.items[b.head], true
}

// Pop removes and returns the oldest message, releasing its bytes.
func (b *Buffer) Pop() (Item, bool) {
	if b.n == 0 {
		return Item{}, false
	}
	it := b.removeAt(0)
	b.maybeShrink()
	return it, true
}

// Len returns the number of queued messages.
func (b *Buffer) Len() int { return b.n }

// Bytes returns the bytes (as counted by Item.Size) held by this buffer.
func (b *Buffer) Bytes() int64 { return b.bytes }

// Clear drops every queued message, releasing its bytes from the budget and
// the ring itself.
func (b *Buffer) Clear() {
	b.charge(-b.bytes)
	b.items, b.head, b.n, b.nQoS0 = nil, 0, 0, 0
}

// charge adds n bytes (negative: releases them) to the buffer and its
// budget, and keeps the budget's list of holders up to date.
func (b *Buffer) charge(n int64) {
	if n == 0 {
		return
	}
	was := b.bytes
	b.bytes += n
	b.budget.add(n)
	if !b.budget.limited() {
		return
	}
	b.held.Store(b.bytes)
	switch {
	case was == 0 && b.bytes > 0:
		b.budget.track(b, true)
	case was > 0 && b.bytes == 0:
		b.budget.track(b, false)
	}
}

// slot maps the i-th oldest message to its index in the ring.
func (b *Buffer) slot(i int) int {
	j := b.head + i
	if j >= len(b.items) {
		j -= len(b.items)
	}
	return j
}

// victim returns the position (0 = oldest) of the message to drop next:
// the oldest QoS 0 message, or else the oldest message.
func (b *Buffer) victim() int {
	if b.nQoS0 > 0 {
		for i := range b.n {
			if b.items[b.slot(i)].QoS <= 0 {
				return i
			}
		}
	}
	return 0
}

// removeAt removes the i-th oldest message, closing the gap by moving the
// shorter side, and releases its bytes. Vacated slots are zeroed so the
// ring keeps no references to removed payloads.
func (b *Buffer) removeAt(i int) Item {
	it := b.items[b.slot(i)]
	if i < b.n/2 {
		for j := i; j > 0; j-- {
			b.items[b.slot(j)] = b.items[b.slot(j-1)]
		}
		b.items[b.head] = Item{}
		b.head = b.slot(1)
	} else {
		for j := i; j < b.n-1; j++ {
			b.items[b.slot(j)] = b.items[b.slot(j+1)]
		}
		b.items[b.slot(b.n-1)] = Item{}
	}
	b.n--
	if b.n == 0 {
		b.head = 0
	}
	if it.QoS <= 0 {
		b.nQoS0--
	}
	b.charge(-int64(it.Size()))
	return it
}

// grow doubles the ring (at least keepSlots, at most max+1 slots: one
// over the limit is the most Push ever holds before dropping).
func (b *Buffer) grow() {
	c := 2 * len(b.items)
	c = max(c, keepSlots)
	c = min(c, b.max+1)
	c = max(c, b.n+1)
	b.resize(c)
}

func (b *Buffer) maybeShrink() {
	switch {
	case b.n == 0 && len(b.items) > keepSlots:
		b.items, b.head = nil, 0
	case len(b.items) >= shrinkMin && b.n <= len(b.items)/4:
		b.resize(len(b.items) / 2)
	}
}

// resize moves the queued messages, oldest first, into a new ring of c slots.
func (b *Buffer) resize(c int) {
	items := make([]Item, c)
	if b.n > 0 {
		end := b.head + b.n
		if end <= len(b.items) {
			copy(items, b.items[b.head:end])
		} else {
			k := copy(items, b.items[b.head:])
			copy(items[k:], b.items[:end-len(b.items)])
		}
	}
	b.items, b.head = items, 0
}
