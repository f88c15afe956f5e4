package gateway

import (
	"cmp"
	"container/heap"
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

// QueryClients answers one page of the node table. Each shard filters its
// own sessions on its loop and hands back at most Offset+Limit rows, so a
// page costs a pass over the sessions but never a copy of every node.
func (g *Gateway) QueryClients(ctx context.Context, q NodeQuery) (NodePage, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultPageSize
	}
	q.Limit = min(q.Limit, MaxPageSize)
	q.Offset = max(q.Offset, 0)
	if !slices.Contains(SortKeys(), q.Sort) {
		q.Sort = SortClientID
	}
	less := rowOrder(q.Sort, q.Desc)
	keep := q.Offset + q.Limit
	search := strings.ToLower(q.Search)
	var page NodePage
	all := topRows{less: less, n: keep}
	for _, s := range g.shards {
		part, err := query(ctx, s, func() NodePage {
			top := topRows{less: less, n: keep}
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
				top.add(s.row(sess, st))
			}
			return NodePage{Total: total, Rows: top.rows}
		})
		if err != nil {
			return NodePage{}, err
		}
		page.Total += part.Total
		for _, r := range part.Rows {
			all.add(r)
		}
	}
	rows := all.sorted()
	if q.Offset < len(rows) {
		page.Rows = rows[q.Offset:]
	}
	return page, nil
}

// topRows keeps the n first rows by less seen so far: a heap whose root is
// the last of them, so each row costs O(log n).
type topRows struct {
	less func(a, b *NodeRow) int
	n    int
	rows []NodeRow
}

func (t *topRows) Len() int           { return len(t.rows) }
func (t *topRows) Less(i, j int) bool { return t.less(&t.rows[i], &t.rows[j]) > 0 } // the last on top
func (t *topRows) Swap(i, j int)      { t.rows[i], t.rows[j] = t.rows[j], t.rows[i] }
func (t *topRows) Push(x any)         { t.rows = append(t.rows, x.(NodeRow)) }
func (t *topRows) Pop() any {
	r := t.rows[len(t.rows)-1]
	t.rows = t.rows[:len(t.rows)-1]
	return r
}

func (t *topRows) add(r NodeRow) {
	if len(t.rows) < t.n {
		heap.Push(t, r)
		return
	}
	if t.less(&r, &t.rows[0]) < 0 {
		t.rows[0] = r
		heap.Fix(t, 0)
	}
}

// sorted returns the rows in order.
func (t *topRows) sorted() []NodeRow {
	slices.SortFunc(t.rows, func(a, b NodeRow) int { return t.less(&a, &b) })
	return t.rows
}

// rowOrder compares rows by key, then by ClientId (always ascending, so a
// page boundary is well defined).
func rowOrder(key SortKey, desc bool) func(a, b *NodeRow) int {
	by := func(a, b *NodeRow) int {
		switch key {
		case SortState:
			return cmp.Compare(a.State, b.State)
		case SortLastSeen:
			return a.LastSeen.Compare(b.LastSeen)
		case SortBuffered:
			return cmp.Compare(a.Buffered, b.Buffered)
		case SortDatagramsIn:
			return cmp.Compare(a.Traffic.DatagramsIn, b.Traffic.DatagramsIn)
		case SortRetrans:
			return cmp.Compare(a.Traffic.Retransmissions, b.Traffic.Retransmissions)
		default:
			return 0
		}
	}
	return func(a, b *NodeRow) int {
		c := by(a, b)
		if desc {
			c = -c
		}
		if c == 0 {
			c = cmp.Compare(a.ClientID, b.ClientID)
			if desc && key == SortClientID {
				c = -c
			}
		}
		return c
	}
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
