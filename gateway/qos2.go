package gateway

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/store"
)

// A node's QoS 2 PUBLISH (issue 13): the MsgId is "forwarding" while the
// broker has not acknowledged it, and a retry waits. The upstream tells the
// session's tracker (a PacketStore) when it hands the PUBLISH to the broker
// and when the broker answers PUBREC, even after the gateway's Publish call
// gave up on a timeout, so that a MsgId is never forgotten while its
// outcome is unknown: a retry of it is never forwarded a second time.

func ackNone(error) {}

// publish runs a node's publish on the worker; a QoS 2 one is announced to
// the tracker so that the packet id it gets is tied to the node's MsgId.
func (s *shard) publish(ctx context.Context, t opTask, up Session) error {
	if t.trk != nil && t.o.nodeQoS == snpacket.QoS2 && t.o.msg.QoS == 2 {
		t.trk.begin(t.o.msgID)
		defer t.trk.end()
	}
	return up.Publish(ctx, t.o.msg)
}

// qos2Done answers a node's QoS 2 PUBLISH once the broker's side ended.
func (s *shard) qos2Done(sess *session, o op, err error) {
	if sess.qos2 == nil {
		sess.qos2 = map[uint16]bool{}
	}
	if err != nil {
		if trk := sess.dur.track; trk != nil && trk.handed(o.msgID) && !errors.Is(err, errStale) {
			// The broker may have it: keep the MsgId, and let the retry
			// wait for the outcome the tracker reports.
			sess.log.Debug("QoS 2 publish not completed in time; its outcome is awaited", zap.Uint16("msg_id", o.msgID), zap.Error(err))
			return
		}
		if !sess.qos2[o.msgID] {
			delete(sess.qos2, o.msgID)
		}
		s.send(sess, &snpacket.Puback{TopicID: o.topicID, MsgID: o.msgID, ReturnCode: snpacket.RejectedCongestion})
		return
	}
	if sess.qos2[o.msgID] {
		s.send(sess, &snpacket.Pubrec{MsgID: o.msgID}) // the tracker stored it forwarded
		return
	}
	// No tracker report (an upstream without PacketStore support): store
	// the MsgId as forwarded before the PUBREC that lets the node release
	// it.
	sess.qos2[o.msgID] = false
	id, msgID, gen := sess.id, o.msgID, sess.upGen
	s.write(func(b *store.Batch) { b.PutQoS2(id, store.QoS2{MsgID: msgID, Forwarded: true}) }, func(err error) {
		if s.sessions[id] != sess || sess.upGen != gen {
			return
		}
		if err != nil {
			// Kept as forwarding: the node's retry gets PUBREC once a
			// write succeeds.
			s.send(sess, &snpacket.Puback{TopicID: o.topicID, MsgID: msgID, ReturnCode: snpacket.RejectedCongestion})
			s.retryForwarded(sess, msgID)
			return
		}
		sess.qos2[msgID] = true
		s.send(sess, &snpacket.Pubrec{MsgID: msgID})
	})
}

// retryForwarded marks a MsgId whose forwarded record failed to be
// written: its retry tries the write again (onPublish).
func (s *shard) retryForwarded(sess *session, msgID uint16) {
	if sess.dur.unstored == nil {
		sess.dur.unstored = map[uint16]bool{}
	}
	sess.dur.unstored[msgID] = true
}

// qos2Retry handles a retry of a MsgId being forwarded; it reports true if
// it answered.
func (s *shard) qos2Retry(sess *session, p *snpacket.Publish) {
	if !sess.dur.unstored[p.MsgID] {
		return // still with the broker: the answer follows
	}
	delete(sess.dur.unstored, p.MsgID)
	s.qos2Done(sess, op{msgID: p.MsgID, topicID: p.TopicID}, nil)
}

// released answers PUBREL with PUBCOMP once the MsgId's deletion is stored:
// after PUBCOMP the node may use the MsgId for a new message, which a
// restored stale record would swallow.
func (s *shard) released(sess *session, msgID uint16) {
	id := sess.id
	var pk uint16
	if trk := sess.dur.track; trk != nil {
		pk = trk.release(msgID)
	}
	s.write(func(b *store.Batch) {
		b.DeleteQoS2(id, msgID)
		if pk != 0 {
			b.DeletePacket(id, pk)
		}
	}, func(err error) {
		if err != nil {
			return // no answer: the node retransmits PUBREL
		}
		s.send(sess, &snpacket.Pubcomp{MsgID: msgID})
	})
}

// openOptions completes the options of a node's upstream session: a
// tracker for its QoS 2 packets, the subscriptions the gateway holds, and
// for a session restored from the store what it needs to resume.
func (s *shard) openOptions(sess *session, opts *SessionOptions) {
	sess.dur.track = s.newTracker(sess)
	opts.Packets = sess.dur.track
	if !opts.CleanStart || sess.dur.resume {
		opts.Subscriptions = make(map[string]byte, len(sess.subs))
		for f, sub := range sess.subs {
			opts.Subscriptions[f] = byte(max(sub.qos, 0))
		}
	}
	if !sess.dur.resume {
		return
	}
	sess.dur.resume = false
	opts.CleanStart = false        // whatever the broker kept is resumed
	opts.Resume = sess.dur.packets // kept until an open succeeds (openDone)
	for _, p := range opts.Resume {
		if q, ok := sess.dur.byUpstream[p.ID]; ok {
			sess.dur.track.restore(p.ID, q.MsgID, q.Forwarded)
		}
	}
}

// maybeReopen opens the upstream session again when a restored node's
// publish found none (the broker was down at the restart).
func (s *shard) maybeReopen(sess *session, err error) {
	if !errors.Is(err, errNoUpstream) || sess.up != nil || sess.opening || !sess.everConnected {
		return
	}
	if sess.state != sleepmgr.Active && sess.state != sleepmgr.Asleep && sess.state != sleepmgr.Awake {
		return
	}
	sess.opening = true
	sess.dur.resume = true
	s.enqueue(sess, op{kind: opOpen})
}
