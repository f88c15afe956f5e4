package gateway

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
)

// The gateway-wide sleep-buffer budget (sleep.max_buffered_bytes) is fair:
// when it is full, the node holding the most bytes gives back (its oldest
// QoS 0 message first, then its oldest), not the node receiving.
//
// Buffers are owned by the shard of their session, and no other shard may
// touch them. So a shard whose Push takes the budget over its limit keeps
// the message and looks up the largest holder (sleepmgr.Budget.Largest,
// which tracks every buffer holding bytes). If that session is its own,
// it evicts at once; otherwise it wakes the owning shard (a coalescing
// signal, never a blocking send between shards), which looks again and
// evicts from its own session, or passes the signal on if the largest
// holder has changed. Until the owner has run, the budget may run over by
// at most an eighth (sleepmgr.Budget.Ceiling); beyond that a Push drops
// from its own buffer, so memory stays bounded if an owner is slow.

// maxEvictRounds bounds the holders one rebalance looks up, so that one
// shard's loop never spends long on it; an unfinished rebalance asks
// itself again.
const maxEvictRounds = 16

// requestEvict wakes s to give bytes back to the budget. It never blocks:
// one pending request stands for any number.
func (s *shard) requestEvict() {
	select {
	case s.evict <- struct{}{}:
	default:
	}
}

// rebalance gives bytes back to the budget while it is over its limit,
// from the largest holder: evicting itself when the holder is one of its
// own sessions, asking the owning shard otherwise. It runs on s's loop.
func (s *shard) rebalance(now time.Time) {
	budget := s.g.budget
	for range maxEvictRounds {
		if !budget.Over() {
			return
		}
		owner, margin, ok := budget.Largest()
		if !ok {
			return
		}
		sess, _ := owner.(*session)
		if sess == nil {
			return
		}
		if sess.shard != s {
			sess.shard.requestEvict()
			return
		}
		// Give back what takes the budget under its limit, but no more
		// than the lead over the next largest before looking again: then
		// another holder is as large and pays its share.
		var given int64
		for budget.Over() && (given == 0 || given < margin) {
			d, ok := sess.queue.Evict()
			if !ok {
				break
			}
			given += int64(d.Item.Size())
			s.forgetItem(sess, d.Item)
			s.g.stats.BufferDropped.Add(1)
			s.g.stats.BufferDroppedBudget.Add(1)
			s.g.evictLog.note(s.g.log, sess, d, budget, "largest")
		}
		if given == 0 {
			return // its owner emptied it meanwhile: nothing to take
		}
		s.pump(now, sess) // an awake node whose buffer is now empty goes back to sleep
		s.schedule(sess)
	}
	if budget.Over() {
		s.requestEvict()
	}
}

// countDrops counts and logs what a Push dropped.
func (s *shard) countDrops(sess *session, drops []sleepmgr.Drop) {
	if len(drops) == 0 {
		return
	}
	s.g.stats.BufferDropped.Add(uint64(len(drops)))
	for _, d := range drops {
		s.forgetItem(sess, d.Item)
		switch d.Reason {
		case sleepmgr.DropQoS0Overflow:
			s.g.stats.BufferDroppedQoS0.Add(1)
		case sleepmgr.DropOverflow:
			s.g.stats.BufferDroppedOverflow.Add(1)
		case sleepmgr.DropBudget:
			s.g.stats.BufferDroppedBudget.Add(1)
			s.g.evictLog.note(s.g.log, sess, d, s.g.budget, "receiving")
		}
	}
	if !sess.dropsLogged {
		sess.dropsLogged = true
		s.g.warn(sess.log, "buffer full: messages dropped", zap.Int("dropped", len(drops)),
			zap.Stringer("reason", drops[0].Reason), zap.Int("queued", sess.queue.Len()))
	}
}

// evictLogEvery is the least time between two "sleep-buffer budget full"
// lines; the drops in between are counted in the next line.
const evictLogEvery = 10 * time.Second

// evictLog rate-limits the warning for messages dropped for the budget,
// gateway-wide: the first drop is logged at once, later ones at most every
// evictLogEvery with the number held back. Every drop is counted in
// Stats.BufferDroppedBudget whether logged or not.
type evictLog struct {
	mu         sync.Mutex
	at         time.Time
	suppressed int
}

// note logs d, dropped from sess's buffer for the budget; holder says
// whose: "largest" (evicted as the largest holder) or "receiving" (the
// budget was over its ceiling, or the message alone exceeds it).
func (l *evictLog) note(log *zap.Logger, sess *session, d sleepmgr.Drop, budget *sleepmgr.Budget, holder string) {
	if !log.Core().Enabled(zap.WarnLevel) {
		return
	}
	now := time.Now()
	l.mu.Lock()
	if !l.at.IsZero() && now.Sub(l.at) < evictLogEvery {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.at, l.suppressed = now, 0
	l.mu.Unlock()
	log.Warn("sleep-buffer budget full: message dropped",
		zap.String("client_id", sess.id), zap.String("holder", holder), zap.Int8("qos", d.Item.QoS), zap.String("topic", d.Item.Topic),
		zap.Int64("budget_bytes", budget.Max()), zap.String("key", "sleep.max_buffered_bytes"),
		zap.Int("more_dropped", n), zap.Duration("more_dropped_in", evictLogEvery))
}
