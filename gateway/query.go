package gateway

import (
	"cmp"
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
)

// NodeQuery asks for one page of the node table: the nodes whose ClientId
// or address contains Search (case-insensitive) and whose state is State
// ("" for any), ordered by Sort, from Offset, at most Limit of them.
type NodeQuery struct {
	Search string
	State  string  // "connecting", "active", "asleep", "awake", "lost", "disconnected" or ""
	Sort   SortKey // default SortClientID
	Desc   bool    // descending
	Offset int     // nodes skipped
	Limit  int     // page size; 0 or less means DefaultPageSize, capped at MaxPageSize
}

// SortKey orders NodeQuery results.
type SortKey string

// Sort keys of NodeQuery.
const (
	SortClientID    SortKey = "client_id"
	SortState       SortKey = "state"
	SortLastSeen    SortKey = "last_seen"
	SortBuffered    SortKey = "buffered"
	SortDatagramsIn SortKey = "datagrams_in"
	SortRetrans     SortKey = "retransmissions"
)

// SortKeys lists every SortKey.
func SortKeys() []SortKey {
	return []SortKey{SortClientID, SortState, SortLastSeen, SortBuffered, SortDatagramsIn, SortRetrans}
}

// Page sizes of NodeQuery.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// NodeRow is one line of the node table: what an overview shows of a node,
// without its topic map and subscriptions (ClientInfo has them).
type NodeRow struct {
	ClientID      string
	State         string
	Addr          string
	Transport     string
	ForwarderNode string
	KeepAlive     time.Duration
	SleepDuration time.Duration // asleep or awake only
	LastSeen      time.Time
	Subscriptions int
	Topics        int
	Buffered      int
	BufferedBytes int64
	InFlight      bool
	Traffic       Traffic
}

// NodePage is a NodeQuery's answer: Total nodes matched, Rows the page.
type NodePage struct {
	Total int
	Rows  []NodeRow
}

// QueryClients answers one page of the node table. Each shard filters and
// ranks its own sessions on its loop, keeping the best Offset+Limit in a
// bounded heap, and builds rows for those only: a page costs one pass over
// the sessions, never a copy of every node.
func (g *Gateway) QueryClients(ctx context.Context, q NodeQuery) (NodePage, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultPageSize
	}
	q.Limit = min(q.Limit, MaxPageSize)
	q.Offset = max(q.Offset, 0)
	if !slices.Contains(SortKeys(), q.Sort) {
		q.Sort = SortClientID
	}
	order := fieldOrder(q.Sort, q.Desc)
	keep := q.Offset + q.Limit
	search := strings.ToLower(q.Search)
	var page NodePage
	all := top[NodeRow]{cmp: order, n: keep}
	for _, s := range g.shards {
		part, err := query(ctx, s, func() []ranked[NodeRow] {
			best := top[*session]{cmp: order, n: keep}
			total := 0
			for _, sess := range s.sessions {
				st := sess.stateName()
				if q.State != "" && st != q.State {
					continue
				}
				if search != "" && !strings.Contains(strings.ToLower(sess.id), search) &&
					!strings.Contains(strings.ToLower(sess.peer.addr.String()), search) {
					continue
				}
				total++
				best.add(fieldsOf(sess, st), sess)
			}
			out := make([]ranked[NodeRow], 0, len(best.items)+1)
			for _, it := range best.items {
				out = append(out, ranked[NodeRow]{f: it.f, v: s.row(it.v, it.f.state)})
			}
			// The count rides along as a last, empty entry.
			return append(out, ranked[NodeRow]{f: sortFields{buffered: total}})
		})
		if err != nil {
			return NodePage{}, err
		}
		page.Total += part[len(part)-1].f.buffered
		for _, it := range part[:len(part)-1] {
			all.add(it.f, it.v)
		}
	}
	ranked := all.sorted()
	for i := q.Offset; i < len(ranked); i++ {
		page.Rows = append(page.Rows, ranked[i].v)
	}
	return page, nil
}

// sortFields are what the node table sorts by, read from a session
// without allocating.
type sortFields struct {
	id, state   string
	lastSeen    time.Time
	buffered    int
	dgIn, retrx uint64
}

func fieldsOf(sess *session, state string) sortFields {
	return sortFields{id: sess.id, state: state, lastSeen: sess.lastSeen, buffered: sess.queue.Len(),
		dgIn: sess.traffic.DatagramsIn, retrx: sess.traffic.Retransmissions}
}

// fieldOrder compares by key, then by ClientId (ascending unless the key
// is the ClientId itself, descending), so a page boundary is well defined.
func fieldOrder(key SortKey, desc bool) func(a, b *sortFields) int {
	by := func(a, b *sortFields) int {
		switch key {
		case SortState:
			return cmp.Compare(a.state, b.state)
		case SortLastSeen:
			return a.lastSeen.Compare(b.lastSeen)
		case SortBuffered:
			return cmp.Compare(a.buffered, b.buffered)
		case SortDatagramsIn:
			return cmp.Compare(a.dgIn, b.dgIn)
		case SortRetrans:
			return cmp.Compare(a.retrx, b.retrx)
		default:
			return 0
		}
	}
	return func(a, b *sortFields) int {
		c := by(a, b)
		if desc {
			c = -c
		}
		if c == 0 {
			c = cmp.Compare(a.id, b.id)
			if desc && key == SortClientID {
				c = -c
			}
		}
		return c
	}
}

// ranked is a value with the fields it is ranked by.
type ranked[T any] struct {
	f sortFields
	v T
}

// top keeps the n first items by cmp seen so far, in a heap whose root is
// the last of them: each item costs O(log n) and nothing is boxed.
type top[T any] struct {
	cmp   func(a, b *sortFields) int
	n     int
	items []ranked[T]
	cand  ranked[T]
}

func (t *top[T]) after(i, j int) bool { return t.cmp(&t.items[i].f, &t.items[j].f) > 0 }

func (t *top[T]) add(f sortFields, v T) {
	if len(t.items) < t.n {
		t.items = append(t.items, ranked[T]{f, v})
		for i := len(t.items) - 1; i > 0; { // up
			p := (i - 1) / 2
			if !t.after(i, p) {
				break
			}
			t.items[i], t.items[p] = t.items[p], t.items[i]
			i = p
		}
		return
	}
	t.cand = ranked[T]{f, v} // compared in place: &f would escape
	if t.cmp(&t.cand.f, &t.items[0].f) >= 0 {
		return // not better than the last kept
	}
	t.items[0] = t.cand
	for i := 0; ; { // down
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(t.items) && t.after(l, m) {
			m = l
		}
		if r < len(t.items) && t.after(r, m) {
			m = r
		}
		if m == i {
			return
		}
		t.items[i], t.items[m] = t.items[m], t.items[i]
		i = m
	}
}

// sorted returns the items in order.
func (t *top[T]) sorted() []ranked[T] {
	slices.SortFunc(t.items, func(a, b ranked[T]) int { return t.cmp(&a.f, &b.f) })
	return t.items
}

// stateName is the state operators see: "connecting" during the connect
// procedure, else the state machine's.
func (sess *session) stateName() string {
	if sess.phase != phaseNone {
		return "connecting"
	}
	return sess.state.String()
}

func (s *shard) row(sess *session, state string) NodeRow {
	r := NodeRow{
		ClientID:      sess.id,
		State:         state,
		Addr:          sess.peer.addr.String(),
		Transport:     transportOf(sess.peer.addr),
		KeepAlive:     sess.keepAlive,
		LastSeen:      sess.lastSeen,
		Subscriptions: len(sess.subs),
		Topics:        sess.topics.Len(),
		Buffered:      sess.queue.Len(),
		BufferedBytes: sess.queue.Bytes(),
		InFlight:      sess.inflight != nil,
		Traffic:       sess.traffic,
	}
	if sess.peer.key.node != "" {
		r.ForwarderNode = hex.EncodeToString([]byte(sess.peer.key.node))
	}
	if sess.state == sleepmgr.Asleep || sess.state == sleepmgr.Awake {
		r.SleepDuration = sess.sleep
	}
	return r
}
