package gateway

import (
	"sync"
	"time"
)

// recentGoneSize bounds the list of recently lost or forgotten nodes.
const recentGoneSize = 100

// GoneNode is a node recently lost or forgotten, for operators.
type GoneNode struct {
	ClientID  string    `json:"client_id"`
	Addr      string    `json:"addr"`
	Transport string    `json:"transport"`
	Event     string    `json:"event"`  // "lost", "forgotten", or "lost, forgotten"
	Reason    string    `json:"reason"` // a CloseReason for "lost"; why it was forgotten otherwise
	At        time.Time `json:"at"`
	LastSeen  time.Time `json:"last_seen"`
}

// goneRing holds the last recentGoneSize GoneNodes. Shards add to it from
// their loops; it has a lock of its own and takes no other.
type goneRing struct {
	mu   sync.Mutex
	buf  [recentGoneSize]GoneNode
	next int // index of the next write
	n    int // entries held
}

func (r *goneRing) add(e GoneNode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// A clean node that is lost is forgotten at once: one entry says both.
	if r.n > 0 {
		last := &r.buf[(r.next+recentGoneSize-1)%recentGoneSize]
		if last.ClientID == e.ClientID && last.Event == "lost" && e.Event == "forgotten" && e.At.Sub(last.At) < time.Second {
			last.Event = "lost, forgotten"
			last.Reason += "; " + e.Reason
			return
		}
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % recentGoneSize
	r.n = min(r.n+1, recentGoneSize)
}

// list returns the entries, newest first.
func (r *goneRing) list() []GoneNode {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]GoneNode, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next+recentGoneSize-i)%recentGoneSize])
	}
	return out
}

// RecentlyGone lists the last 100 nodes lost (keep-alive, sleep or
// retransmissions ran out) or forgotten (their state dropped), newest
// first, with the reason.
func (g *Gateway) RecentlyGone() []GoneNode { return g.gone.list() }

// noteLost records that sess was declared lost (called from lose).
func (s *shard) noteLost(sess *session, reason CloseReason) {
	s.g.gone.add(s.goneEntry(sess, "lost", reason.String()))
}

// noteForgotten records that sess is forgotten (called from dropSession),
// with why its state went.
func (s *shard) noteForgotten(sess *session) {
	var reason string
	switch {
	case !sess.everConnected:
		reason = "connect not completed"
	case sess.clean:
		reason = "clean session ended"
	default:
		reason = "session expired (broker.session_expiry)"
	}
	s.g.gone.add(s.goneEntry(sess, "forgotten", reason))
}

func (s *shard) goneEntry(sess *session, event, reason string) GoneNode {
	return GoneNode{ClientID: sess.id, Addr: sess.peer.addr.String(), Transport: transportOf(sess.peer.addr),
		Event: event, Reason: reason, At: time.Now(), LastSeen: sess.lastSeen}
}
