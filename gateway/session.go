package gateway

import (
	"container/heap"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// connPhase is where a node is in the connect procedure (spec §6.2).
type connPhase uint8

const (
	phaseNone      connPhase = iota // connected, or not connecting
	phaseWillTopic                  // WILLTOPICREQ sent
	phaseWillMsg                    // WILLMSGREQ sent
	phaseOpening                    // upstream session being opened
	phaseAuth                       // waiting for AUTH (Config.RequireAuth)
)

// session is one node's state. It is owned by exactly one shard.
type session struct {
	id    string
	shard *shard
	log   *zap.Logger
	peer  peer
	bound bool // peer is in the routing index

	state sleepmgr.State
	phase connPhase
	clean bool
	// everConnected: the node completed a CONNECT at least once, so a
	// persistent session is worth keeping; authenticated: it connected
	// over a transport that proved its identity.
	everConnected bool
	authenticated bool
	keepAlive     time.Duration
	sleep         time.Duration
	lastSeen      time.Time

	will        *Message // current will (nil: none)
	pendingWill *Message // will being received during CONNECT

	// auth: the credentials of the node's last AUTH (nil: none, the
	// configured ones are used); authWill: the CONNECT awaiting it asked
	// for a will.
	auth     *Credentials
	authWill bool

	topics *topicreg.Registry
	subs   map[string]subscription // by MQTT filter

	// upstream
	up      Session
	upGen   uint64 // generation of up; deliveries of older ones are stale
	ops     []op   // upstream operations, run one at a time in order
	opBusy  bool
	opening bool            // an opOpen is queued or running
	qos2    map[uint16]bool // node's QoS 2 MsgIds: false = forwarding, true = forwarded, awaiting PUBREL
	qos1    map[uint16]bool // node's QoS 1 MsgIds being forwarded
	subWait int             // SUBSCRIBEs not yet answered: downlink waits
	// upWait counts the node's QoS 1/2 PUBLISHes awaiting the broker:
	// downlink waits until their PUBACK/PUBREC went out, for clients that
	// read exactly one datagram after a PUBLISH (issue 15).
	upWait int

	// openSeq counts opOpens started; upSeq is the one that made up, so
	// that a late Ended from an older session is ignored.
	openSeq, upSeq uint64

	// downlink
	queue       *sleepmgr.Buffer
	inflight    *outbound
	nextMsgID   uint16
	dropsLogged bool
	maxAcked    int // largest datagram the node acknowledged

	// supervision
	superviseAt time.Time
	deadline    time.Time
	heapIdx     int

	traffic Traffic // the node's radio cost, for operators

	dur durableState // persistence (persist.go)
	amp addrProof    // address validation (amplify.go)
}

type subscription struct {
	qos    snpacket.QoS
	idType snpacket.TopicIDType
	id     uint16 // predefined id or short name
}

func (s *shard) newSession(id string, from peer) *session {
	s.g.lim.sessions.Add(1) // dropSession gives it back
	sess := &session{
		id:      id,
		shard:   s,
		log:     s.g.log.WithLazy(zap.String("client_id", id)), // lazily: most nodes never log (logs.go)
		peer:    from,
		state:   sleepmgr.Disconnected,
		topics:  topicreg.New(s.g.cfg.MaxTopics),
		subs:    map[string]subscription{},
		queue:   sleepmgr.NewBuffer(s.g.cfg.MaxBuffered, s.g.budget),
		heapIdx: -1,
	}
	sess.queue.SetOwner(sess) // the budget's largest holder is evicted by its shard (budget.go)
	return sess
}

// nextDeadline is the earliest of the supervision and retransmission
// deadlines, or zero.
func (sess *session) nextDeadline() time.Time {
	d := sess.superviseAt
	// Retransmission runs only while the node listens: a sleeping node
	// gets what was in flight again when it wakes.
	listening := sess.state == sleepmgr.Active || sess.state == sleepmgr.Awake
	if listening && sess.inflight != nil && (d.IsZero() || sess.inflight.retryAt.Before(d)) {
		d = sess.inflight.retryAt
	}
	return d
}

// supervise restarts the keep-alive or sleep timer (spec §6.11, §6.14).
func (sess *session) supervise(now time.Time) {
	switch sess.state {
	case sleepmgr.Active:
		sess.superviseAt = sleepmgr.Deadline(now, sess.keepAlive)
	case sleepmgr.Asleep:
		sess.superviseAt = sleepmgr.Deadline(now, sess.sleep)
	case sleepmgr.Disconnected, sleepmgr.Lost:
		// What a gone node leaves (persistent subscriptions, buffer) is
		// kept as long as the broker keeps its session, then forgotten.
		sess.superviseAt = now.Add(sess.shard.g.cfg.SessionExpiry)
	default:
		sess.superviseAt = time.Time{}
	}
	if sess.phase == phaseWillTopic || sess.phase == phaseWillMsg || sess.phase == phaseAuth {
		// A node that stops half way through the will handshake (or
		// before its AUTH) is forgotten after the retransmission budget.
		sess.superviseAt = now.Add(sess.shard.g.cfg.RetryInterval * time.Duration(sess.shard.g.cfg.RetryCount+1))
	}
}

// transition moves the session through the §6.14 state machine.
func (sess *session) transition(ev sleepmgr.Event) bool {
	next, err := sleepmgr.Next(sess.state, ev)
	if err != nil {
		sess.log.Debug("invalid state transition", zap.Error(err))
		return false
	}
	if next != sess.state {
		sess.log.Debug("state", zap.Stringer("from", sess.state), zap.Stringer("to", next), zap.Stringer("event", ev))
	}
	sess.state = next
	return true
}

// setPeer makes from the session's address, taking it over from any
// earlier one.
func (s *shard) setPeer(sess *session, from peer) {
	if sess.bound && sess.peer.key != from.key {
		if s.byPeer[sess.peer.key] == sess {
			delete(s.byPeer, sess.peer.key)
		}
		s.g.unbind(sess.peer.key, s.id)
		sess.bound = false
	}
	// Another session on this address (a node that rebooted with a new
	// ClientId): it no longer receives from here.
	if other := s.byPeer[from.key]; other != nil && other != sess {
		other.bound = false
	}
	sess.peer = from
	s.byPeer[from.key] = sess
	if !sess.bound {
		s.g.bind(from.key, s.id)
		sess.bound = true
	}
	s.ampAddress(sess)
}

func (s *shard) send(sess *session, p snpacket.Packet) {
	if !s.ampAllow(sess, p) {
		return // anti-amplification (amplify.go)
	}
	if n := s.g.send(sess.peer, p); n > 0 {
		sess.ampSent(n)
		sess.traffic.DatagramsOut++
		sess.traffic.BytesOut += uint64(n)
	}
}

// received accounts a datagram from the node.
func (sess *session) received(now time.Time, size int) {
	sess.lastSeen = now
	sess.amp.in += int64(size)
	sess.traffic.DatagramsIn++
	sess.traffic.BytesIn += uint64(size)
}

// onConnect handles CONNECT (spec §6.2, §6.3).
func (s *shard) onConnect(now time.Time, from peer, c *snpacket.Connect, size int) {
	if c.ClientID == "" || len(c.ClientID) > s.g.cfg.MaxClientIDLen {
		s.g.send(from, &snpacket.Connack{ReturnCode: snpacket.RejectedNotSupported})
		return
	}
	if !s.g.identityAllowed(from, c.ClientID) {
		s.g.warn(s.log, "CONNECT refused: ClientId is not the peer's authenticated identity",
			zap.String("client_id", c.ClientID), zap.Stringer("addr", from.addr))
		s.g.stats.IdentityRefused.Add(1)
		s.g.send(from, &snpacket.Connack{ReturnCode: snpacket.RejectedNotSupported})
		return
	}
	sess := s.sessions[c.ClientID]
	if sess != nil && s.g.authenticated(sess.peer) && !s.g.authenticated(from) {
		// A session made over DTLS is never taken over from plain UDP.
		s.g.stats.IdentityRefused.Add(1)
		s.g.send(from, &snpacket.Connack{ReturnCode: snpacket.RejectedNotSupported})
		return
	}
	if sess == nil {
		if !s.g.admitSession() {
			s.g.send(from, &snpacket.Connack{ReturnCode: snpacket.RejectedCongestion})
			return
		}
		sess = s.newSession(c.ClientID, from)
		s.sessions[c.ClientID] = sess
	}
	if sess.phase == phaseOpening && sess.peer.key == from.key {
		return // a retransmitted CONNECT while the broker connects: CONNACK follows
	}
	if sess.peer.key != from.key && sess.bound && sess.state != sleepmgr.Disconnected && sess.state != sleepmgr.Lost {
		s.g.stats.Closes[CloseTakeover].Add(1)
		sess.log.Info("taken over", zap.Stringer("old_addr", sess.peer.addr), zap.Stringer("addr", from.addr))
	}
	s.setPeer(sess, from)
	sess.received(now, size)
	sess.clean = c.CleanSession
	if auth := s.g.authenticated(from); auth != sess.authenticated {
		// A node that proved its identity inherits nothing from a session
		// someone made under its name without proof.
		if auth && sess.everConnected {
			s.resetSession(sess)
		}
		sess.authenticated = auth
	}
	sess.keepAlive = time.Duration(c.Duration) * time.Second
	if c.CleanSession {
		s.resetSession(sess)
	} else if sess.everConnected {
		// A CONNECT, not a wake-up, keeping the session: the node may be a
		// new process that knows none of the topic ids (issue 15). Each is
		// REGISTERed again before its first downlink PUBLISH (spec §6.10).
		sess.topics.UnackAll()
	}
	sess.pendingWill = nil
	if s.awaitAuth(now, sess, c.Will) {
		return
	}
	s.continueConnect(now, sess, c.Will)
}

// continueConnect goes on with a CONNECT (after AUTH, when required): the
// will handshake if the node asked for a will, else the upstream session.
func (s *shard) continueConnect(now time.Time, sess *session, will bool) {
	if will {
		sess.phase = phaseWillTopic
		sess.supervise(now)
		s.schedule(sess)
		s.send(sess, &snpacket.WillTopicReq{})
		return
	}
	if !sess.clean {
		sess.pendingWill = sess.will
	}
	s.finishConnect(now, sess)
}

// resetSession drops everything a clean session must not keep.
func (s *shard) resetSession(sess *session) {
	sess.will = nil
	sess.topics.Reset()
	sess.subs = map[string]subscription{}
	sess.queue.Clear()
	sess.inflight = nil
	sess.qos1 = nil
	sess.qos2 = nil
	sess.subWait = 0 // answers to the old session's SUBSCRIBEs are dropped
	sess.upWait = 0  // and to its PUBLISHes
	if sess.up != nil {
		s.closeUpstream(sess, nil)
	}
	sess.upGen++ // deliveries still on their way from the old session are stale
	s.forgetNode(sess)
}

func (s *shard) onWillTopic(now time.Time, sess *session, wt *snpacket.WillTopic) {
	if sess.phase != phaseWillTopic {
		return
	}
	if wt.WillTopic == "" {
		sess.pendingWill = nil // empty WILLTOPIC: no will
		s.finishConnect(now, sess)
		return
	}
	if !s.g.checkName(sess.log, wt.Type(), wt.WillTopic) {
		// The broker would refuse the upstream CONNECT (or drop it when
		// the will is published): refuse the node's CONNECT instead.
		s.refuseConnect(sess, snpacket.RejectedNotSupported)
		return
	}
	sess.pendingWill = &Message{Topic: wt.WillTopic, QoS: qosUp(wt.QoS), Retain: wt.Retain}
	sess.phase = phaseWillMsg
	sess.supervise(now)
	s.send(sess, &snpacket.WillMsgReq{})
}

func (s *shard) onWillMsg(now time.Time, sess *session, wm *snpacket.WillMsg) {
	if sess.phase != phaseWillMsg || sess.pendingWill == nil {
		return
	}
	sess.pendingWill.Payload = clone(wm.WillMsg)
	s.finishConnect(now, sess)
}

// finishConnect opens the upstream session if there is none, then answers
// CONNACK.
func (s *shard) finishConnect(now time.Time, sess *session) {
	sess.will = sess.pendingWill
	sess.pendingWill = nil
	if sess.up != nil {
		s.connected(now, sess)
		return
	}
	sess.phase = phaseOpening
	sess.superviseAt = time.Time{}
	s.schedule(sess)
	if !sess.opening {
		o := op{kind: opOpen}
		if !s.admit(sess, &o) {
			s.refuseConnect(sess, snpacket.RejectedCongestion)
			return
		}
		sess.opening = true
		s.enqueue(sess, o)
	}
}

// connected sends CONNACK accepted and makes the session active.
func (s *shard) connected(now time.Time, sess *session) {
	sess.phase = phaseNone
	sess.everConnected = true
	sess.transition(sleepmgr.EvConnect)
	s.markDirty(sess)
	s.g.stats.Connects.Add(1)
	s.send(sess, &snpacket.Connack{ReturnCode: snpacket.Accepted})
	sess.log.Debug("connected", zap.String("transport", transportOf(sess.peer.addr)), zap.Stringer("addr", sess.peer.addr), zap.Bool("clean", sess.clean),
		zap.Duration("keep_alive", sess.keepAlive), zap.Bool("will", sess.will != nil))
	sess.supervise(now)
	// What was in flight when the node went away goes out again first,
	// with a fresh retransmission budget, registered again if the node
	// may not know its topic id.
	if out := sess.inflight; out != nil {
		out.retries = 0
		if out.stage == stagePublish && out.idType == snpacket.TopicNormal && !sess.topics.Acked(out.topicID) {
			out.stage = stageRegister
			out.msgID = sess.newMsgID()
		}
		s.sendInflight(now, sess, out.stage == stagePublish)
	}
	s.pump(now, sess)
	s.schedule(sess)
}

// refuseConnect answers CONNACK with rc and abandons the attempt.
func (s *shard) refuseConnect(sess *session, rc snpacket.ReturnCode) {
	s.send(sess, &snpacket.Connack{ReturnCode: rc})
	s.abandonConnect(time.Now(), sess)
}

// abandonConnect ends a CONNECT that did not complete: refused, aborted
// during the will handshake, or timed out. A node that was connected is
// now disconnected (it is alive and will CONNECT again; no will); one that
// never was is forgotten.
func (s *shard) abandonConnect(now time.Time, sess *session) {
	sess.phase = phaseNone
	switch sess.state {
	case sleepmgr.Active, sleepmgr.Asleep, sleepmgr.Awake:
		sess.transition(sleepmgr.EvDisconnect)
		s.markDirty(sess)
		s.closeUpstream(sess, nil)
	default: // not connected: nothing to end
	}
	s.unbindSession(sess)
	sess.supervise(now)
	s.forgetIfClean(sess)
	if s.sessions[sess.id] == sess {
		s.schedule(sess)
	}
}

// onWake handles PINGREQ with a ClientId from a sleeping node, from
// whatever address it now has (spec §6.14).
func (s *shard) onWake(now time.Time, from peer, clientID string, size int) {
	sess := s.sessions[clientID]
	if sess == nil || (sess.state != sleepmgr.Asleep && sess.state != sleepmgr.Awake && sess.state != sleepmgr.Active) {
		s.g.send(from, &snpacket.Disconnect{})
		return
	}
	if !s.g.identityAllowed(from, clientID) || (s.g.authenticated(sess.peer) && !s.g.authenticated(from)) {
		s.g.stats.IdentityRefused.Add(1)
		s.g.send(from, &snpacket.Disconnect{})
		return
	}
	if sess.state == sleepmgr.Active {
		// Waking by ClientId is for sleeping nodes (§6.14); an active node
		// moves only by connecting again.
		if from.key != sess.peer.key {
			s.g.send(from, &snpacket.Disconnect{})
			return
		}
		if size > 0 {
			sess.received(now, size)
		}
		s.send(sess, &snpacket.PingResp{})
		sess.supervise(now)
		s.schedule(sess)
		return
	}
	s.setPeer(sess, from)
	s.markDirty(sess) // the address it woke from
	if size > 0 {
		sess.received(now, size)
	}
	if sess.state == sleepmgr.Asleep {
		sess.traffic.WakeCycles++
		s.g.stats.WakeCycles.Add(1)
	}
	sess.transition(sleepmgr.EvWake)
	sess.dropsLogged = false
	sess.superviseAt = time.Time{}
	if sess.inflight != nil {
		s.sendInflight(now, sess, true) // what was in flight when it fell asleep
	}
	s.pump(now, sess)
	s.schedule(sess)
}

// wakeDone ends an awake period with PINGRESP once nothing is left to send.
func (s *shard) maybeWakeDone(now time.Time, sess *session) {
	if sess.state != sleepmgr.Awake || (sess.inflight != nil && !sess.ampBlocked()) || (sess.queue.Len() > 0 && !sess.amp.held) {
		return // more to send; what an unproven address has not earned waits for the next wake-up
	}
	s.send(sess, &snpacket.PingResp{})
	sess.transition(sleepmgr.EvWakeDone)
	sess.supervise(now)
}

func (s *shard) onDisconnect(now time.Time, sess *session, d *snpacket.Disconnect) {
	if d.HasDuration && d.Duration > 0 {
		if !sess.transition(sleepmgr.EvSleep) {
			return
		}
		sess.sleep = time.Duration(d.Duration) * time.Second
		s.send(sess, &snpacket.Disconnect{})
		sess.log.Debug("asleep", zap.Duration("duration", sess.sleep))
		sess.supervise(now)
		return
	}
	s.send(sess, &snpacket.Disconnect{})
	if !sess.transition(sleepmgr.EvDisconnect) {
		return
	}
	s.g.stats.Closes[CloseDisconnect].Add(1)
	sess.log.Debug("disconnected", zap.Stringer("reason", CloseDisconnect))
	sess.supervise(now)
	s.closeUpstream(sess, nil)
	s.unbindSession(sess)
	s.forgetIfClean(sess)
}

// lose declares the node lost: its will is published (spec §6.14).
func (s *shard) lose(now time.Time, sess *session, reason CloseReason, why ...zap.Field) {
	s.g.stats.Lost.Add(1)
	s.g.stats.Closes[reason].Add(1)
	s.noteLost(sess, reason)
	sess.log.Info("lost", append([]zap.Field{zap.Stringer("reason", reason), zap.Stringer("state", sess.state), zap.Bool("will", sess.will != nil)}, why...)...)
	sess.transition(sleepmgr.EvExpire)
	s.markDirty(sess)
	sess.phase = phaseNone
	sess.supervise(now)
	s.closeUpstream(sess, sess.will)
	s.unbindSession(sess)
	s.forgetIfClean(sess)
}

func (s *shard) unbindSession(sess *session) {
	if sess.bound {
		if s.byPeer[sess.peer.key] == sess {
			delete(s.byPeer, sess.peer.key)
		}
		s.g.unbind(sess.peer.key, s.id)
		sess.bound = false
	}
}

// dropSession forgets a node entirely.
func (s *shard) dropSession(sess *session) {
	s.unbindSession(sess)
	sess.queue.Clear() // gives its bytes back to the gateway-wide budget
	if sess.heapIdx >= 0 {
		heap.Remove(&s.timers, sess.heapIdx)
	}
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
		s.g.lim.sessions.Add(-1)
		s.noteForgotten(sess)
		s.forgetNode(sess)
	}
	sess.log.Debug("session forgotten")
}

// forgetIfClean drops a clean session's state once the node is gone, and
// that of a node that never completed a CONNECT; a persistent one keeps
// subscriptions, topic ids and buffer (spec §6.3).
func (s *shard) forgetIfClean(sess *session) {
	if !sess.clean && sess.everConnected {
		return
	}
	sess.topics.Reset()
	sess.subs = map[string]subscription{}
	sess.queue.Clear()
	sess.inflight = nil
	sess.will = nil
	if len(sess.ops) == 0 && !sess.opBusy && sess.phase == phaseNone {
		s.dropSession(sess)
	}
}

// onTimer handles a session's deadline: retransmission or supervision.
func (s *shard) onTimer(now time.Time, sess *session) {
	if in := sess.inflight; in != nil && !in.retryAt.After(now) {
		if in.retries >= s.g.cfg.RetryCount {
			stage := in.stage
			size, dropped := s.exhausted(sess)
			// The lost line says why: the usual cause is a message larger
			// than the node can take, which the operator can prevent.
			s.lose(now, sess, CloseRetries, zap.Stringer("unacked", stage.msgType()), zap.Int("unacked_size", size),
				zap.Bool("unacked_dropped", dropped),
				zap.String("hint", "a node that cannot receive datagrams this large never acknowledges them; set limits.max_packet_size to what the nodes can take"))
			return
		}
		s.retransmit(now, sess)
	}
	if !sess.superviseAt.IsZero() && !sess.superviseAt.After(now) {
		switch {
		case sess.phase == phaseWillTopic || sess.phase == phaseWillMsg || sess.phase == phaseAuth:
			s.g.stats.Closes[CloseConnectAborted].Add(1)
			s.abandonConnect(now, sess)
			return
		case sess.state == sleepmgr.Disconnected || sess.state == sleepmgr.Lost:
			if sess.opBusy || len(sess.ops) > 0 || sess.phase != phaseNone {
				sess.superviseAt = now.Add(s.g.cfg.RetryInterval) // look again once the close is done
				break
			}
			s.dropSession(sess)
			return
		case sess.state == sleepmgr.Active:
			s.lose(now, sess, CloseKeepAlive)
			return
		case sess.state == sleepmgr.Asleep:
			s.lose(now, sess, CloseSleepExpired)
			return
		default:
			sess.superviseAt = time.Time{}
		}
	}
	s.schedule(sess)
}

// onPacket handles a datagram from a node with a session.
func (s *shard) onPacket(now time.Time, sess *session, pkt snpacket.Packet) {
	if a, ok := pkt.(*snpacket.Auth); ok || sess.phase == phaseAuth {
		s.onAuth(now, sess, a)
		return
	}
	if sess.phase == phaseWillTopic || sess.phase == phaseWillMsg {
		switch p := pkt.(type) {
		case *snpacket.WillTopic:
			s.onWillTopic(now, sess, p)
		case *snpacket.WillMsg:
			s.onWillMsg(now, sess, p)
		default:
			// Anything else aborts the connect (behaviour.md).
			s.g.stats.Closes[CloseConnectAborted].Add(1)
			s.send(sess, &snpacket.Disconnect{})
			s.abandonConnect(now, sess)
		}
		return
	}
	if sess.phase == phaseOpening {
		return // nothing but CONNECT is expected until CONNACK
	}
	switch sess.state {
	case sleepmgr.Active, sleepmgr.Awake, sleepmgr.Asleep:
	default:
		s.g.noSession(sess.peer, pkt)
		return
	}
	if sess.state == sleepmgr.Active {
		sess.supervise(now)
	}
	switch p := pkt.(type) {
	case *snpacket.Register:
		s.onRegister(sess, p)
	case *snpacket.Regack:
		s.onRegack(now, sess, p)
	case *snpacket.Publish:
		s.onPublish(now, sess, p)
	case *snpacket.Puback:
		s.onPuback(now, sess, p)
	case *snpacket.Pubrec:
		s.onPubrec(now, sess, p)
	case *snpacket.Pubrel:
		s.onPubrel(sess, p)
	case *snpacket.Pubcomp:
		s.onPubcomp(now, sess, p)
	case *snpacket.Subscribe:
		s.onSubscribe(sess, p)
	case *snpacket.Unsubscribe:
		s.onUnsubscribe(sess, p)
	case *snpacket.PingReq:
		if sess.state == sleepmgr.Active {
			s.send(sess, &snpacket.PingResp{})
		} else {
			s.onWake(now, sess.peer, sess.id, 0)
		}
	case *snpacket.PingResp:
		// answer to nothing we sent; harmless
	case *snpacket.Disconnect:
		s.onDisconnect(now, sess, p)
	case *snpacket.WillTopicUpd:
		if p.WillTopic != "" && !s.g.checkName(sess.log, p.Type(), p.WillTopic) {
			s.send(sess, &snpacket.WillTopicResp{ReturnCode: snpacket.RejectedNotSupported})
			return // the will stays as it was
		}
		if p.WillTopic == "" {
			sess.will = nil // deletes topic and message (spec §6.4)
		} else {
			var payload []byte
			if sess.will != nil {
				payload = sess.will.Payload
			}
			sess.will = &Message{Topic: p.WillTopic, QoS: qosUp(p.QoS), Retain: p.Retain, Payload: payload}
		}
		s.send(sess, &snpacket.WillTopicResp{ReturnCode: snpacket.Accepted})
	case *snpacket.WillMsgUpd:
		if sess.will == nil {
			s.send(sess, &snpacket.WillMsgResp{ReturnCode: snpacket.RejectedNotSupported})
			return
		}
		sess.will.Payload = clone(p.WillMsg)
		s.send(sess, &snpacket.WillMsgResp{ReturnCode: snpacket.Accepted})
	case *snpacket.WillTopic, *snpacket.WillMsg:
		// late duplicate of the will handshake: ignore
	default:
		s.g.malformed(MalformedOther)
		sess.log.Debug("unexpected message", zap.Stringer("type", pkt.Type()))
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// qosUp maps an MQTT-SN QoS to the MQTT QoS used upstream.
func qosUp(q snpacket.QoS) byte {
	if q <= 0 {
		return 0
	}
	return byte(q)
}
