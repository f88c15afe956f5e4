package gateway

import (
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// stage is where the message being delivered to a node stands.
type stage uint8

const (
	stageRegister stage = iota // REGISTER sent, waiting for REGACK
	stagePublish               // PUBLISH sent, waiting for PUBACK or PUBREC
	stagePubrel                // PUBREL sent, waiting for PUBCOMP
)

// msgType is what the gateway sends at the stage.
func (st stage) msgType() snpacket.MsgType {
	switch st {
	case stageRegister:
		return snpacket.TypeRegister
	case stagePublish:
		return snpacket.TypePublish
	default:
		return snpacket.TypePubrel
	}
}

// outbound is the one message in flight towards a node. The gateway keeps
// one at a time per node: constrained nodes handle one transaction at a
// time, and it keeps delivery in order.
type outbound struct {
	item    sleepmgr.Item
	stage   stage
	idType  snpacket.TopicIDType
	topicID uint16
	msgID   uint16
	retries int
	retryAt time.Time
	// reregistered: the node answered "invalid topic id" once and the id
	// was registered again.
	reregistered bool
	// exhausted: its retransmissions ran out once already (the node was
	// lost); if they run out again it is dropped.
	exhausted bool
}

// size is the datagram the message is sent as at its stage.
func (out *outbound) size() int {
	switch out.stage {
	case stageRegister:
		return (&snpacket.Register{TopicID: out.topicID, MsgID: out.msgID, TopicName: out.item.Topic}).Len()
	case stagePublish:
		return (&snpacket.Publish{TopicIDType: out.idType, TopicID: out.topicID, Data: out.item.Payload}).Len()
	default:
		return (&snpacket.Pubrel{}).Len()
	}
}

// smallDatagram is the size up to which a message that went
// unacknowledged is blamed on the link rather than on its size: the
// 1-octet Length form, and the buffer of common small clients
// (mqtt-sn-tools).
const smallDatagram = 255

// exhausted handles a message whose retransmissions ran out (the node is
// then lost, spec §6.13). The message is dropped, so that it does not
// block what is queued behind it for ever, when it is larger than
// smallDatagram and than any datagram the node ever acknowledged (it most
// likely cannot take it), or when it ran out once before; otherwise it is
// sent again, first, when the node connects again.
func (s *shard) exhausted(sess *session) (size int, dropped bool) {
	out := sess.inflight
	size = out.size()
	if out.exhausted || (size > smallDatagram && size > sess.maxAcked) {
		s.forgetItem(sess, out.item)
		sess.inflight = nil
		if out.stage == stageRegister {
			sess.topics.Remove(out.topicID)
		}
		s.g.stats.BufferDropped.Add(1)
		s.g.stats.BufferDroppedUnacked.Add(1)
		return size, true
	}
	out.exhausted = true
	return size, false
}

// onDeliver queues a broker message for the node and starts delivery when
// the node can receive.
// ack runs once the message is stored (persist.go); the broker's
// acknowledgement waits for it.
func (s *shard) onDeliver(now time.Time, sess *session, gen uint64, m Message, ack func(error)) {
	if gen != sess.upGen || s.sessions[sess.id] != sess {
		ack(nil)
		return // a clean session replaced the one this came from, or it was forgotten
	}
	qos, ok := s.deliveryQoS(sess, m)
	if !ok {
		ack(nil)
		return // no longer subscribed
	}
	it := sleepmgr.Item{Topic: m.Topic, Payload: m.Payload, QoS: int8(qos), Retain: m.Retain}
	s.tagItem(sess, &it, ack)
	s.countDrops(sess, sess.queue.Push(it))
	s.pump(now, sess)
	if s.g.budget.Over() {
		s.rebalance(now) // the largest holder pays, not this node (budget.go)
	}
	s.schedule(sess)
}

// deliveryQoS caps the message's QoS at the node's subscription QoS
// (downgrade, never upgrade).
func (s *shard) deliveryQoS(sess *session, m Message) (snpacket.QoS, bool) {
	best := snpacket.QoS(-2)
	for f, sub := range sess.subs {
		if (f == m.Topic || topicreg.Match(f, m.Topic)) && sub.qos > best {
			best = sub.qos
		}
	}
	if best < 0 {
		return 0, false
	}
	if q := snpacket.QoS(m.QoS); q < best {
		best = q
	}
	return best, true
}

// pump sends queued messages while the node can take them: QoS 0 at once,
// QoS 1 and 2 one at a time, each preceded by a REGISTER when the node
// does not know the topic id yet (spec §6.10).
func (s *shard) pump(now time.Time, sess *session) {
	for sess.inflight == nil && sess.subWait == 0 && sess.upWait == 0 && sess.phase == phaseNone &&
		(sess.state == sleepmgr.Active || sess.state == sleepmgr.Awake) {
		if !s.ampNext(sess) {
			break // held until the address earns it (amplify.go)
		}
		it, ok := sess.queue.Pop()
		if !ok {
			break
		}
		out := &outbound{item: it}
		if !s.topicFor(sess, out) {
			s.forgetItem(sess, it)
			continue
		}
		if out.stage == stageRegister {
			out.msgID = sess.newMsgID()
			sess.inflight = out
			s.sendInflight(now, sess, false)
			break
		}
		if snpacket.QoS(it.QoS) == snpacket.QoS0 {
			s.sendPublish(sess, out, false)
			s.forgetItem(sess, it)
			continue
		}
		out.msgID = sess.newMsgID()
		sess.inflight = out
		s.sendInflight(now, sess, false)
	}
	s.maybeWakeDone(now, sess)
}

// topicFor decides how the node will know the topic: the short name or
// predefined id it subscribed with, or a normal id (registered first if
// the node does not know it). It reports false when the message cannot be
// delivered and was dropped.
func (s *shard) topicFor(sess *session, out *outbound) bool {
	topic := out.item.Topic
	if sub, ok := sess.subs[topic]; ok && sub.idType != snpacket.TopicNormal {
		out.idType, out.topicID, out.stage = sub.idType, sub.id, stagePublish
		return true
	}
	if id, ok := snpacket.ShortTopicID(topic); ok {
		if _, sub := sess.subs[topic]; !sub {
			// Reached through a wildcard: a two-letter topic still goes
			// out as a short name, which needs no registration.
			out.idType, out.topicID, out.stage = snpacket.TopicShort, id, stagePublish
			return true
		}
	}
	if s.topicRoom(sess, topic) != snpacket.Accepted {
		s.g.stats.BufferDropped.Add(1)
		sess.log.Debug("downlink topic over limits.max_topic_bytes: dropped", zap.Int("topic_len", len(topic)))
		return false
	}
	id, acked, err := sess.topics.Assign(topic)
	if err != nil {
		s.g.stats.BufferDropped.Add(1)
		s.g.warn(sess.log, "no topic id left for downlink message: dropped", zap.String("topic", topic), zap.Error(err))
		return false
	}
	out.idType, out.topicID = snpacket.TopicNormal, id
	if acked {
		out.stage = stagePublish
	} else {
		out.stage = stageRegister
	}
	return true
}

func (s *shard) sendPublish(sess *session, out *outbound, dup bool) bool {
	p := &snpacket.Publish{
		DUP: dup, QoS: snpacket.QoS(out.item.QoS), Retain: out.item.Retain,
		TopicIDType: out.idType, TopicID: out.topicID, MsgID: out.msgID, Data: out.item.Payload,
	}
	if p.QoS == snpacket.QoS0 {
		p.MsgID = 0
	}
	if p.Len() > s.g.cfg.MaxPacketSize {
		// Spec §6.10: too long for a PUBLISH: silently aborted.
		s.g.stats.BufferDropped.Add(1)
		s.g.stats.BufferDroppedTooLarge.Add(1)
		sess.log.Debug("downlink message too long: dropped", zap.String("topic", out.item.Topic), zap.Int("size", p.Len()))
		return false
	}
	if !dup {
		s.g.stats.PublishesDown.Add(1)
		s.g.stats.PublishesDownQoS[qi(p.QoS)].Add(1)
	}
	sess.traffic.DownlinkDatagrams[qi(p.QoS)]++
	if p.QoS == snpacket.QoS0 {
		sess.traffic.Delivered[qi(p.QoS)]++
	}
	s.send(sess, p)
	return true
}

// sendInflight (re)sends the in-flight message at its stage.
func (s *shard) sendInflight(now time.Time, sess *session, dup bool) {
	out := sess.inflight
	out.retryAt = now.Add(s.g.cfg.retryDelay(out.retries))
	if !s.ampInflight(sess) {
		return // held until the address earns it (amplify.go)
	}
	if out.stage != stagePublish { // sendPublish counts its own
		sess.traffic.DownlinkDatagrams[qi(snpacket.QoS(out.item.QoS))]++
	}
	switch out.stage {
	case stageRegister:
		r := &snpacket.Register{TopicID: out.topicID, MsgID: out.msgID, TopicName: out.item.Topic}
		if r.Len() > s.g.cfg.MaxPacketSize {
			s.forgetItem(sess, out.item)
			sess.inflight = nil
			sess.topics.Remove(out.topicID)
			s.g.stats.BufferDropped.Add(1)
			return
		}
		s.send(sess, r)
	case stagePublish:
		if !s.sendPublish(sess, out, dup) {
			s.forgetItem(sess, out.item)
			sess.inflight = nil
		}
	case stagePubrel:
		s.send(sess, &snpacket.Pubrel{MsgID: out.msgID})
	}
}

func (s *shard) retransmit(now time.Time, sess *session) {
	if s.ampDeferRetry(now, sess) {
		return
	}
	sess.inflight.retries++
	sess.traffic.Retransmissions++
	s.g.stats.Retransmits.Add(1)
	s.sendInflight(now, sess, true)
	if sess.inflight == nil {
		s.pump(now, sess)
	}
}

// finishInflight ends the in-flight message, delivered or refused by the
// node, and moves on to the next.
func (s *shard) finishInflight(now time.Time, sess *session, delivered bool) {
	if delivered {
		sess.traffic.Delivered[qi(snpacket.QoS(sess.inflight.item.QoS))]++
	}
	s.forgetItem(sess, sess.inflight.item)
	sess.inflight = nil
	s.pump(now, sess)
}

// acked accounts the node's answer to the in-flight message, and
// remembers the largest datagram the node has shown it can take.
func (sess *session) acked() {
	sess.proveAddress() // it answered a random MsgId (amplify.go)
	sess.traffic.DownlinkDatagrams[qi(snpacket.QoS(sess.inflight.item.QoS))]++
	if n := sess.inflight.size(); n > sess.maxAcked {
		sess.maxAcked = n
	}
}

func (s *shard) onRegack(now time.Time, sess *session, r *snpacket.Regack) {
	out := sess.inflight
	if out == nil || out.stage != stageRegister || out.msgID != r.MsgID {
		return
	}
	sess.acked()
	if r.ReturnCode != snpacket.Accepted {
		// Rejecting the REGISTER is unsubscribing from that topic name
		// (spec §6.10): drop the message.
		sess.topics.Remove(out.topicID)
		sess.log.Debug("node refused topic registration", zap.String("topic", out.item.Topic), zap.Stringer("rc", r.ReturnCode))
		s.finishInflight(now, sess, false)
		return
	}
	sess.topics.Ack(out.topicID)
	if snpacket.QoS(out.item.QoS) == snpacket.QoS0 {
		s.sendPublish(sess, out, false) // counts the delivery
		s.finishInflight(now, sess, false)
		return
	}
	out.stage = stagePublish
	out.retries = 0
	out.msgID = sess.newMsgID()
	s.sendInflight(now, sess, false)
	if sess.inflight == nil { // too large to send: dropped, go on
		s.pump(now, sess)
	}
}

func (s *shard) onPuback(now time.Time, sess *session, p *snpacket.Puback) {
	out := sess.inflight
	if out == nil || out.stage != stagePublish || out.msgID != p.MsgID {
		return
	}
	sess.acked()
	if p.ReturnCode == snpacket.RejectedInvalidTopicID && out.idType == snpacket.TopicNormal && !out.reregistered {
		// The node does not know the id (a restarted client, say):
		// register it again and resend, once; a node that refuses the
		// same message again does not get it retried.
		sess.log.Debug("node does not know the topic id: registering it again", zap.String("topic", out.item.Topic), zap.Uint16("topic_id", out.topicID))
		sess.topics.Unack(out.topicID)
		out.reregistered = true
		out.stage = stageRegister
		out.msgID = sess.newMsgID()
		out.retries = 0
		s.sendInflight(now, sess, false)
		if sess.inflight == nil {
			s.pump(now, sess)
		}
		return
	}
	if p.ReturnCode != snpacket.Accepted {
		sess.log.Debug("node refused message", zap.String("topic", out.item.Topic), zap.Stringer("rc", p.ReturnCode))
	}
	s.finishInflight(now, sess, p.ReturnCode == snpacket.Accepted)
}

func (s *shard) onPubrec(now time.Time, sess *session, p *snpacket.Pubrec) {
	out := sess.inflight
	if out == nil || out.msgID != p.MsgID || snpacket.QoS(out.item.QoS) != snpacket.QoS2 {
		return
	}
	sess.acked()
	if out.stage == stagePublish {
		out.stage = stagePubrel
		out.retries = 0
	}
	if out.stage == stagePubrel {
		s.sendInflight(now, sess, false)
	}
}

func (s *shard) onPubcomp(now time.Time, sess *session, p *snpacket.Pubcomp) {
	out := sess.inflight
	if out == nil || out.stage != stagePubrel || out.msgID != p.MsgID {
		return
	}
	sess.acked()
	s.finishInflight(now, sess, true)
}
