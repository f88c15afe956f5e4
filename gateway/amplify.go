package gateway

import (
	"math/rand/v2"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Address validation and the anti-amplification limit (issue 14; the rule
// QUIC uses, RFC 9000 §8). On plain UDP a source address can be spoofed,
// so a CONNECT, SUBSCRIBE or wake-up PINGREQ may come from an attacker
// aiming the answers (a retained flood, a sleeping node's buffer) at a
// victim. Until an address has proven that it receives what the gateway
// sends, the gateway sends it at most AmplificationFactor times the bytes it
// received from it, answers to its requests included. An address is proven when it answers a message that
// carries a MsgId it could not have guessed (REGACK, PUBACK, PUBREC or
// PUBCOMP to the gateway's REGISTER, PUBLISH or PUBREL: the gateway's
// MsgIds are random), or when the transport authenticated the peer (DTLS).
//
// Answers to a node's requests (CONNACK, SUBACK, PUBACK, ...) are smaller
// than the requests and always fit. What does not fit is downlink: it is
// held, not dropped, and goes out as the address earns it. To let a
// legitimate node prove itself at once, a message whose first datagram
// does not fit but whose topic has a normal id is preceded by a REGISTER
// of that id (as after a CleanSession=0 reconnect, spec §6.10): small, and
// its REGACK proves the address. A sleeping node woken from a new address
// that cannot prove itself gets its buffer as it earns it, and PINGRESP
// once nothing more fits: the rest waits for its next wake-up.

// DefaultAmplificationFactor is how many times the bytes received an
// unproven address may be sent (Config.AmplificationFactor). Answers to the node's own requests (each smaller than its
// request) are never held back, since a PUBACK dropped for want of room
// would make the node send its PUBLISH again: downlink (REGISTER, PUBLISH,
// PUBREL) leaves room for the answers still owed (ampOwed).
const DefaultAmplificationFactor = 3

// Sizes of the answers the gateway may still owe a node: PUBACK (or
// PUBREC, smaller) to a QoS 1/2 PUBLISH awaiting the broker, SUBACK to a
// SUBSCRIBE.
const (
	owedPuback = 7
	owedSuback = 8
)

// addrProof is what a session knows about its address's proof.
type addrProof struct {
	key     peerKey // the address the counts are for
	proven  bool
	in, out int64 // bytes from and to key while unproven
	// last is the last address proven: a node that comes back to it
	// (a wake-up from the usual address) is proven again at once.
	last    peerKey
	hasLast bool
	// prev holds the counts of the address before key, so that a node
	// that comes back to it (a spoofed wake-up moved the session away)
	// keeps what that address earned.
	prev            peerKey
	prevIn, prevOut int64
	hasPrev, hasKey bool
	held            bool // downlink waits until the address earns it
	// inflightHeld: the in-flight message is not sent (again) until the
	// address earns it.
	inflightHeld bool
	// factor is Config.AmplificationFactor (negative: no limit).
	factor int64
}

// ampAddress starts the counts afresh when the session's address changed
// (setPeer).
func (s *shard) ampAddress(sess *session) {
	a := &sess.amp
	k := sess.peer.key
	if a.hasKey && a.key == k {
		return
	}
	in, out := int64(0), int64(0)
	if a.hasPrev && a.prev == k {
		in, out = a.prevIn, a.prevOut
	}
	if a.hasKey {
		a.prev, a.prevIn, a.prevOut, a.hasPrev = a.key, a.in, a.out, true
	}
	a.key, a.in, a.out, a.held, a.inflightHeld, a.hasKey = k, in, out, false, false, true
	a.factor = int64(s.g.cfg.AmplificationFactor)
	a.proven = a.factor < 0 || s.g.authenticated(sess.peer) || (a.hasLast && a.last == k)
}

// proveAddress records that the session's address answered a MsgId of the
// gateway's.
func (sess *session) proveAddress() {
	a := &sess.amp
	if a.key != sess.peer.key {
		return
	}
	a.proven, a.last, a.hasLast = true, a.key, true
	a.held, a.inflightHeld = false, false
}

// ampRoom is how many more bytes of downlink the session's address may
// be sent, or -1 for no limit.
func (sess *session) ampRoom() int64 {
	a := &sess.amp
	if a.proven {
		return -1
	}
	owed := int64(owedPuback*max(0, sess.upWait) + owedSuback*max(0, sess.subWait))
	return max(0, a.factor*a.in-a.out-owed)
}

// wireLen is the datagram p makes to the session's peer.
func (sess *session) wireLen(n int) int64 {
	if node := sess.peer.key.node; node != "" {
		n += 3 + len(node) // Encapsulated header (spec §5.5)
	}
	return int64(n)
}

// ampFits reports whether a datagram of n octets (before any
// encapsulation) may go to the session's address now.
func (sess *session) ampFits(n int) bool {
	room := sess.ampRoom()
	return room < 0 || sess.wireLen(n) <= room
}

// ampAllow is the check before every datagram to a session: downlink
// that does not fit is not sent (counted). Downlink checks earlier, in
// ampNext and ampInflight, so that it is held instead; this is the
// backstop. Answers to the node's requests always go.
func (s *shard) ampAllow(sess *session, p snpacket.Packet) bool {
	switch p.Type() {
	case snpacket.TypeRegister, snpacket.TypePublish, snpacket.TypePubrel:
	default:
		return true
	}
	if sess.ampFits(p.Len()) {
		return true
	}
	s.g.limited(LimitAmplificationDropped)
	return false
}

// ampSent accounts a datagram sent to the session's address.
func (sess *session) ampSent(n int) {
	if !sess.amp.proven {
		sess.amp.out += int64(n)
	}
}

// ampNext decides whether pump may take the next queued message now. When
// its first datagram does not fit but a REGISTER of its normal topic id
// would, the id is unacknowledged so that the REGISTER goes first (and its
// REGACK proves the address). Otherwise the queue is held.
func (s *shard) ampNext(sess *session) bool {
	if sess.amp.proven {
		return true
	}
	it, ok := sess.queue.Peek()
	if !ok {
		return true
	}
	size, id, probe := s.firstDatagram(sess, it)
	switch {
	case sess.ampFits(size), size > s.g.cfg.MaxPacketSize: // too large: dropped unsent (spec §6.10)
	case probe && sess.ampFits((&snpacket.Register{TopicID: id, TopicName: it.Topic}).Len()):
		sess.topics.Unack(id)
	default:
		s.ampHold(sess)
		return false
	}
	sess.amp.held = false
	return true
}

func (s *shard) ampHold(sess *session) {
	if !sess.amp.held {
		sess.amp.held = true
		s.g.limited(LimitAmplificationHeld)
	}
}

// firstDatagram is the size of the first datagram delivering it (as
// topicFor will decide), and, when that is a PUBLISH with a known normal
// id, the id, which a REGISTER could prove the address with first.
func (s *shard) firstDatagram(sess *session, it sleepmgr.Item) (size int, id uint16, probe bool) {
	pub := (&snpacket.Publish{Data: it.Payload}).Len()
	topic := it.Topic
	if sub, ok := sess.subs[topic]; ok && sub.idType != snpacket.TopicNormal {
		return pub, 0, false
	}
	if _, ok := snpacket.ShortTopicID(topic); ok {
		if _, sub := sess.subs[topic]; !sub {
			return pub, 0, false
		}
	}
	if id, ok := sess.topics.ID(topic); ok && sess.topics.Acked(id) {
		return pub, id, true
	}
	return (&snpacket.Register{TopicName: topic}).Len(), 0, false
}

// ampInflight makes the in-flight message fit before it is (re)sent to an
// unproven address: a PUBLISH with a normal id that does not fit becomes
// a REGISTER of the id first. It reports false when it still does not fit
// (it is then held: not sent, its retransmissions not counted).
func (s *shard) ampInflight(sess *session) bool {
	out := sess.inflight
	sess.amp.inflightHeld = false
	if !s.ampTooLarge(sess) {
		return true
	}
	if out.stage == stagePublish && out.idType == snpacket.TopicNormal {
		r := &snpacket.Register{TopicID: out.topicID, TopicName: out.item.Topic}
		if sess.ampFits(r.Len()) {
			sess.topics.Unack(out.topicID)
			out.stage = stageRegister
			out.msgID = sess.newMsgID()
			return true
		}
	}
	sess.amp.inflightHeld = true
	s.ampHold(sess)
	return false
}

// ampTooLarge reports whether the in-flight message may not be sent to
// the session's address now.
func (s *shard) ampTooLarge(sess *session) bool {
	out := sess.inflight
	return out != nil && !sess.amp.proven && !sess.ampFits(out.size()) && out.size() <= s.g.cfg.MaxPacketSize
}

// ampBlocked reports whether the in-flight message waits, unsent, for the
// address to earn it.
func (sess *session) ampBlocked() bool {
	return sess.inflight != nil && sess.amp.inflightHeld && !sess.amp.proven
}

// ampDeferRetry handles a retransmission deadline of a message the
// address has not earned again: it is put off by Tretry without counting
// a retransmission, and reports true. An awake node then goes back to
// sleep (PINGRESP); an active one that never proves its address is lost
// by keep-alive supervision as usual.
func (s *shard) ampDeferRetry(now time.Time, sess *session) bool {
	if !s.ampTooLarge(sess) {
		return false
	}
	sess.amp.inflightHeld = true
	s.ampHold(sess)
	sess.inflight.retryAt = now.Add(s.g.cfg.RetryInterval)
	s.maybeWakeDone(now, sess)
	return true
}

// newMsgID returns a random MsgId (never 0, never the previous one), so
// that an acknowledgement proves its sender received the message (math/
// rand/v2's generator is seeded unpredictably).
func (sess *session) newMsgID() uint16 {
	for {
		id := uint16(rand.N(0xFFFF) + 1)
		if id != sess.nextMsgID {
			sess.nextMsgID = id
			return id
		}
	}
}

// ampResume goes on with what was held once the node sent more: the
// in-flight message if it now fits, then the queue.
func (s *shard) ampResume(now time.Time, sess *session) {
	sess.amp.held = false
	if sess.inflight != nil {
		if sess.amp.inflightHeld && (sess.state == sleepmgr.Active || sess.state == sleepmgr.Awake) && s.ampInflight(sess) {
			s.sendInflight(now, sess, true) // it was sent before, to this node's earlier address
		}
		s.maybeWakeDone(now, sess)
		return
	}
	s.pump(now, sess)
}
