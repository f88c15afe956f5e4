package gateway

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
)

// ender returns the SessionOptions.Ended callback of the seq-th upstream
// session opened for sess: it hands the end to the shard, like deliveries.
func (s *shard) ender(sess *session, seq uint64) func(error) {
	return func(err error) {
		s.post(s.ctx, func(now time.Time) { s.onEnded(now, sess, seq, err) })
	}
}

// onEnded handles an upstream session that ended by itself. The one case
// today is ErrTakenOver: the broker gave the node's session to another
// connection with the same ClientId, i.e. the node now connects through
// another gateway. The session is forgotten here without a will (the node
// is alive elsewhere) and without reconnecting (that would take the session
// back, and two gateways would fight over it); the node is disconnected,
// so that if it still talks to this gateway its next datagram is answered
// with DISCONNECT and it connects again.
func (s *shard) onEnded(now time.Time, sess *session, seq uint64, err error) {
	if s.sessions[sess.id] != sess || sess.up == nil || sess.upSeq != seq {
		return // that session was already closed or replaced
	}
	sess.up = nil // it ended: nothing to close
	if errors.Is(err, ErrTakenOver) {
		sess.log.Info("node moved to another connection", zap.Stringer("state", sess.state), zap.Error(err))
	} else {
		s.g.warn(sess.log, "upstream session ended", zap.Stringer("state", sess.state), zap.Error(err))
	}
	if sess.phase != phaseNone {
		// The node is connecting here again right now (a will handshake):
		// finishing it opens a new upstream session, which takes the
		// broker session back, as the node asks.
		return
	}
	switch sess.state {
	case sleepmgr.Active, sleepmgr.Asleep, sleepmgr.Awake:
		s.g.stats.Closes[CloseMoved].Add(1)
		sess.transition(sleepmgr.EvDisconnect)
	default: // already gone
	}
	s.unbindSession(sess)
	sess.supervise(now)
	s.forgetIfClean(sess)
	if s.sessions[sess.id] == sess {
		s.schedule(sess)
	}
}
