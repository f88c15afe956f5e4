package gateway

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

type opKind uint8

const (
	opOpen opKind = iota
	opPublish
	opSubscribe
	opUnsubscribe
	opClose
)

// op is one upstream operation for a node. A node's operations run one at
// a time, in the order the node asked for them, so its messages reach the
// broker in the order it sent them.
type op struct {
	kind    opKind
	msg     Message      // opPublish; opClose: the will, if any
	nodeQoS snpacket.QoS // opPublish: how to answer the node
	msgID   uint16
	topicID uint16
	filter  string       // opSubscribe, opUnsubscribe
	sub     subscription // opSubscribe
	up      Session      // opClose
	hasWill bool         // opClose
	gen     uint64       // the session generation it was asked in
	resub   bool         // opSubscribe: the node was already subscribed
	held    int64        // bytes charged against limits.max_pending_bytes (admit)
	slot    bool         // opOpen: holds a limits.max_connecting slot (admit)
}

// opResult is what an operation produced.
type opResult struct {
	err     error
	session Session // opOpen
	gen     uint64  // opOpen: generation the session was opened for
	granted byte    // opSubscribe
}

func (s *shard) enqueue(sess *session, o op) {
	o.gen = sess.upGen
	sess.ops = append(sess.ops, o)
	if !sess.opBusy {
		s.startOp(sess)
	}
}

// opTask is an operation handed to a shard's upstream workers, with what
// it needs captured on the shard's loop.
type opTask struct {
	sess *session
	o    op
	up   Session
	opts SessionOptions
	gen  uint64   // opOpen: the session generation its deliveries belong to
	trk  *tracker // QoS 2 packets of up (persist.go)
}

// startOp hands the session's first queued operation to the shard's
// upstream workers; the result comes back to the shard as an event.
func (s *shard) startOp(sess *session) {
	if len(sess.ops) == 0 {
		return
	}
	o := sess.ops[0]
	sess.ops[0] = op{}
	sess.ops = sess.ops[1:]
	if len(sess.ops) == 0 {
		sess.ops = nil
	}
	sess.opBusy = true
	t := opTask{sess: sess, o: o, up: sess.up, gen: sess.upGen}
	if o.kind == opClose {
		t.up = o.up
	}
	if o.kind == opOpen {
		t.opts = SessionOptions{ClientID: sess.id, CleanStart: sess.clean, Will: sess.will, Auth: sess.auth}
		if !sess.clean {
			t.opts.SessionExpiry = s.g.cfg.SessionExpiry
		}
		sess.openSeq++
		t.opts.Ended = s.ender(sess, sess.openSeq)
		s.openOptions(sess, &t.opts)
	}
	t.trk = sess.dur.track
	if s.idle > 0 {
		s.idle--
		s.work <- t // never blocks: an idle worker is waiting, and work has a slot per worker
		return
	}
	s.backlog = append(s.backlog, t)
}

// workerDone returns a worker to the pool, giving it backlog first.
func (s *shard) workerDone() {
	if len(s.backlog) > 0 {
		t := s.backlog[0]
		s.backlog[0] = opTask{}
		s.backlog = s.backlog[1:]
		s.work <- t
		return
	}
	s.idle++
}

// upstreamWorker runs operations until ctx ends. Workers live as long as
// the shard, so an operation costs no goroutine start, and each has its
// own context so per-operation deadlines do not contend on one lock.
func (s *shard) upstreamWorker(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-s.work:
			r := s.runOp(ctx, t)
			if !s.post(ctx, func(now time.Time) { s.workerDone(); s.opDone(now, t.sess, t.o, r) }) && r.session != nil {
				// Shutting down: nobody will own this session.
				cctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = r.session.Close(cctx)
				cancel()
			}
		}
	}
}

func (s *shard) runOp(ctx context.Context, t opTask) opResult {
	if t.o.kind == opClose {
		// A close (and the will before it) is finished even during
		// shutdown, so no upstream connection outlives the gateway.
		ctx = context.WithoutCancel(ctx)
	}
	octx, cancel := context.WithTimeout(ctx, s.g.cfg.UpstreamTimeout)
	defer cancel()
	var r opResult
	o, up, sess := t.o, t.up, t.sess
	switch o.kind {
	case opOpen:
		r.gen = t.gen
		r.session, r.err = s.g.up.Open(octx, t.opts, s.deliverer(sess, t.gen))
	case opClose:
		if up != nil {
			if o.hasWill {
				if err := up.Publish(octx, o.msg); err != nil {
					s.g.warn(sess.log, "will not published", zap.String("topic", o.msg.Topic), zap.Error(err))
				} else {
					sess.log.Info("will published", zap.String("topic", o.msg.Topic))
				}
			}
			r.err = up.Close(octx)
		}
	case opPublish, opSubscribe, opUnsubscribe:
		if up == nil {
			r.err = errNoUpstream
			break
		}
		switch o.kind {
		case opPublish:
			r.err = s.publish(octx, t, up)
		case opSubscribe:
			r.granted, r.err = up.Subscribe(octx, o.filter, byte(o.sub.qos))
		default:
			r.err = up.Unsubscribe(octx, o.filter)
		}
	}
	return r
}

var errNoUpstream = errors.New("gateway: no upstream session")

// opDone applies an operation's result on the shard.
func (s *shard) opDone(now time.Time, sess *session, o op, r opResult) {
	sess.opBusy = false
	s.g.release(&o)
	if s.sessions[sess.id] != sess {
		// Forgotten while this ran: finish its queued closes, nothing else.
		closes := sess.ops[:0]
		for _, q := range sess.ops {
			if q.kind == opClose {
				closes = append(closes, q)
			} else {
				s.g.release(&q)
			}
		}
		sess.ops = closes
		if r.session != nil {
			s.enqueue(sess, op{kind: opClose, up: r.session})
		} else {
			s.startOp(sess)
		}
		return
	}
	stale := o.gen != sess.upGen // a clean CONNECT reset the session since
	switch o.kind {
	case opOpen:
		s.openDone(now, sess, r)
	case opPublish, opSubscribe, opUnsubscribe:
		if stale {
			break // the node that asked is gone; nothing to answer
		}
		s.nodeOpDone(now, sess, o, r)
	case opClose:
		s.g.stats.UpstreamClosed.Add(1)
		if r.err != nil {
			sess.log.Debug("upstream close", zap.Error(r.err))
		}
	}
	s.startOp(sess)
	if !sess.opBusy && sess.state != sleepmgr.Active && sess.state != sleepmgr.Asleep &&
		sess.state != sleepmgr.Awake && sess.phase == phaseNone && (sess.clean || !sess.everConnected) && sess.up == nil {
		s.dropSession(sess)
		return
	}
	s.schedule(sess)
}

// nodeOpDone answers the node for a finished publish, subscribe or
// unsubscribe.
func (s *shard) nodeOpDone(now time.Time, sess *session, o op, r opResult) {
	switch o.kind {
	case opPublish:
		s.publishDone(sess, o, r.err)
		s.maybeReopen(sess, r.err)
		if o.nodeQoS == snpacket.QoS1 || o.nodeQoS == snpacket.QoS2 {
			sess.upWait--
			s.pump(now, sess) // the node has its answer: downlink goes on
		}
	case opSubscribe:
		sess.subWait--
		if r.err != nil {
			s.g.warn(sess.log, "subscribe failed upstream", zap.String("filter", o.filter), zap.Error(r.err))
			if !o.resub {
				delete(sess.subs, o.filter)
			}
			s.send(sess, &snpacket.Suback{MsgID: o.msgID, ReturnCode: snpacket.RejectedCongestion})
		} else {
			granted := snpacket.QoS(r.granted)
			if granted > o.sub.qos {
				granted = o.sub.qos
			}
			o.sub.qos = granted
			sess.subs[o.filter] = o.sub
			s.send(sess, &snpacket.Suback{QoS: granted, TopicID: o.topicID, MsgID: o.msgID, ReturnCode: snpacket.Accepted})
		}
		s.pump(now, sess)
	case opUnsubscribe:
		if r.err != nil {
			sess.log.Debug("unsubscribe failed upstream", zap.String("filter", o.filter), zap.Error(r.err))
		}
		s.send(sess, &snpacket.Unsuback{MsgID: o.msgID})
	default: // opOpen and opClose answer no node request
	}
}

func (s *shard) openDone(now time.Time, sess *session, r opResult) {
	sess.opening = false
	if r.err != nil {
		// Debug: the upstream logs refusals for operators, rate-limited;
		// with every node refused alike, a line per node floods the log.
		sess.log.Debug("upstream connect failed", zap.Error(r.err))
		if sess.phase == phaseOpening {
			s.refuseConnect(sess, connackFor(r.err))
		}
		return
	}
	if r.gen != sess.upGen {
		// A clean CONNECT reset the session while this one was opening:
		// it belongs to the old session. Open a fresh one if still wanted.
		s.enqueue(sess, op{kind: opClose, up: r.session})
		if sess.phase == phaseOpening {
			sess.opening = true
			s.enqueue(sess, op{kind: opOpen})
		}
		return
	}
	if sess.up != nil || (sess.phase != phaseOpening && sess.state != sleepmgr.Active &&
		sess.state != sleepmgr.Asleep && sess.state != sleepmgr.Awake) {
		// The node went away (or another open won) while connecting.
		s.enqueue(sess, op{kind: opClose, up: r.session})
		return
	}
	sess.up = r.session
	sess.upSeq = sess.openSeq                        // opens run one at a time: this one is the last started
	sess.dur.packets, sess.dur.byUpstream = nil, nil // resumed
	if sess.phase == phaseOpening {
		s.connected(now, sess)
	}
}

func (s *shard) publishDone(sess *session, o op, err error) {
	q := qi(o.nodeQoS)
	if err != nil {
		s.g.stats.UpstreamFailures.Add(1)
		sess.log.Debug("publish failed upstream", zap.String("topic", o.msg.Topic), zap.Error(err))
	} else {
		s.g.stats.PublishesUp.Add(1)
		s.g.stats.PublishesUpQoS[q].Add(1)
		sess.traffic.Uplinked[q]++
	}
	if o.nodeQoS > snpacket.QoS0 {
		sess.traffic.UplinkDatagrams[q]++ // PUBACK or PUBREC
	}
	switch o.nodeQoS {
	case snpacket.QoS1:
		delete(sess.qos1, o.msgID)
		rc := snpacket.Accepted
		if err != nil {
			rc = snpacket.RejectedCongestion
		}
		s.send(sess, &snpacket.Puback{TopicID: o.topicID, MsgID: o.msgID, ReturnCode: rc})
	case snpacket.QoS2:
		s.qos2Done(sess, o, err)
	default: // QoS 0 and -1: nothing to answer
	}
}

// closeUpstream ends the node's upstream session, publishing will first
// when it is not nil.
func (s *shard) closeUpstream(sess *session, will *Message) {
	if sess.up == nil {
		return
	}
	o := op{kind: opClose, up: sess.up}
	if will != nil {
		o.msg, o.hasWill = *will, true
	}
	sess.up = nil
	s.enqueue(sess, o)
}

// deliverer returns the callback through which the upstream session hands
// the node its messages. It blocks until the shard took the message, so
// the broker's message is acknowledged only once it is queued for the node.
func (s *shard) deliverer(sess *session, gen uint64) func(Message) {
	return func(m Message) {
		if s.g.durable {
			s.deliverDurable(sess, gen, m)
			return
		}
		s.post(s.ctx, func(now time.Time) { s.onDeliver(now, sess, gen, m, ackNone) })
	}
}

// resolveTopic maps a node's topic reference to a topic name.
func (s *shard) resolveTopic(sess *session, t snpacket.TopicIDType, id uint16) (string, snpacket.ReturnCode) {
	switch t {
	case snpacket.TopicNormal:
		if name, ok := sess.topics.Name(id); ok {
			return name, snpacket.Accepted
		}
	case snpacket.TopicPredefined:
		if name, ok := s.g.predef.Name(id); ok {
			return name, snpacket.Accepted
		}
	case snpacket.TopicShort:
		return snpacket.ShortTopicName(id), snpacket.Accepted
	}
	return "", snpacket.RejectedInvalidTopicID
}

func (s *shard) onRegister(sess *session, r *snpacket.Register) {
	if !s.g.checkName(sess.log, r.Type(), r.TopicName) {
		s.send(sess, &snpacket.Regack{MsgID: r.MsgID, ReturnCode: snpacket.RejectedNotSupported})
		return
	}
	if rc := s.topicRoom(sess, r.TopicName); rc != snpacket.Accepted {
		s.send(sess, &snpacket.Regack{MsgID: r.MsgID, ReturnCode: rc})
		return
	}
	id, err := sess.topics.Register(r.TopicName)
	rc := returnCode(err)
	if rc != snpacket.Accepted {
		id = 0
	}
	s.send(sess, &snpacket.Regack{TopicID: id, MsgID: r.MsgID, ReturnCode: rc})
}

func returnCode(err error) snpacket.ReturnCode {
	if err == nil {
		return snpacket.Accepted
	}
	var rc snpacket.ReturnCode
	if errors.As(err, &rc) {
		return rc
	}
	return snpacket.RejectedNotSupported
}

// onPublish handles a node's PUBLISH (spec §6.6). The node is acknowledged
// only once the broker acknowledged (behaviour.md: ack only what is safe).
func (s *shard) onPublish(now time.Time, sess *session, p *snpacket.Publish) {
	sess.traffic.PublishesIn[qi(p.QoS)]++
	sess.traffic.UplinkDatagrams[qi(p.QoS)]++
	if !s.g.checkReserved(sess.log, p) {
		s.refusePublish(sess, p, snpacket.RejectedNotSupported)
		return
	}
	topic, rc := s.resolveTopic(sess, p.TopicIDType, p.TopicID)
	if rc != snpacket.Accepted {
		s.send(sess, &snpacket.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: rc})
		return
	}
	if !s.g.checkName(sess.log, p.Type(), topic) {
		// A short name such as "/#", or a predefined name that is no
		// topic name: the broker would drop the connection.
		s.refusePublish(sess, p, snpacket.RejectedNotSupported)
		return
	}
	o := op{kind: opPublish, nodeQoS: p.QoS, msgID: p.MsgID, topicID: p.TopicID,
		msg: Message{Topic: topic, Payload: p.Data, QoS: qosUp(p.QoS), Retain: p.Retain}}
	if !s.duplicatePublish(sess, p) && !s.admit(sess, &o) {
		s.refusePublish(sess, p, snpacket.RejectedCongestion) // QoS 0: dropped, counted
		return
	}
	switch p.QoS {
	case snpacket.QoS1:
		if sess.qos1[p.MsgID] {
			return // retransmission of one being forwarded: PUBACK follows
		}
		if sess.qos1 == nil {
			sess.qos1 = map[uint16]bool{}
		}
		sess.qos1[p.MsgID] = true
	case snpacket.QoS2:
		if done, ok := sess.qos2[p.MsgID]; ok {
			// A duplicate, DUP flag or not: never forwarded twice.
			if done {
				s.send(sess, &snpacket.Pubrec{MsgID: p.MsgID})
			} else {
				s.qos2Retry(sess, p)
			}
			return
		}
		if sess.qos2 == nil {
			sess.qos2 = map[uint16]bool{}
		}
		sess.qos2[p.MsgID] = false
	default: // QoS 0 (and -1, which the reader forwards itself): no state
	}
	if p.QoS == snpacket.QoS1 || p.QoS == snpacket.QoS2 {
		sess.upWait++
	}
	s.enqueue(sess, o)
}

// refusePublish answers a refused QoS 1 or 2 PUBLISH with PUBACK rc; a
// QoS 0 one is dropped (it was counted).
func (s *shard) refusePublish(sess *session, p *snpacket.Publish, rc snpacket.ReturnCode) {
	if p.QoS == snpacket.QoS1 || p.QoS == snpacket.QoS2 {
		s.send(sess, &snpacket.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: rc})
	}
}

func (s *shard) onPubrel(sess *session, p *snpacket.Pubrel) {
	done, ok := sess.qos2[p.MsgID]
	if ok && !done {
		return // still being forwarded; the node will retransmit
	}
	delete(sess.qos2, p.MsgID)
	sess.traffic.UplinkDatagrams[qi(snpacket.QoS2)] += 2 // PUBREL and PUBCOMP
	s.released(sess, p.MsgID)
}

// onSubscribe handles SUBSCRIBE by name, wildcard, predefined id or short
// name (spec §6.9). SUBACK is sent once the broker granted the
// subscription; downlink to the node waits until then.
func (s *shard) onSubscribe(sess *session, p *snpacket.Subscribe) {
	if !s.g.checkReserved(sess.log, p) {
		s.send(sess, &snpacket.Suback{MsgID: p.MsgID, ReturnCode: snpacket.RejectedNotSupported})
		return
	}
	var filter string
	var topicID uint16
	sub := subscription{qos: p.QoS, idType: p.TopicIDType}
	switch p.TopicIDType {
	case snpacket.TopicNormal:
		filter = p.TopicName
	case snpacket.TopicPredefined:
		name, ok := s.g.predef.Name(p.TopicID)
		if !ok {
			s.send(sess, &snpacket.Suback{MsgID: p.MsgID, ReturnCode: snpacket.RejectedInvalidTopicID})
			return
		}
		filter, topicID, sub.id = name, p.TopicID, p.TopicID
	case snpacket.TopicShort:
		filter, topicID, sub.id = snpacket.ShortTopicName(p.TopicID), p.TopicID, p.TopicID
	}
	// Short names and predefined names follow the rules of filters too
	// (spec §6.7): "/#" is well formed, "a#" is not.
	if !s.g.checkFilter(sess.log, p.Type(), filter) {
		s.send(sess, &snpacket.Suback{MsgID: p.MsgID, ReturnCode: snpacket.RejectedNotSupported})
		return
	}
	if rc := s.subscribeRoom(sess, filter); rc != snpacket.Accepted {
		s.send(sess, &snpacket.Suback{MsgID: p.MsgID, ReturnCode: rc})
		return
	}
	_, resub := sess.subs[filter]
	o := op{kind: opSubscribe, filter: filter, sub: sub, msgID: p.MsgID, resub: resub}
	if !s.admit(sess, &o) {
		s.send(sess, &snpacket.Suback{MsgID: p.MsgID, ReturnCode: snpacket.RejectedCongestion})
		return
	}
	if p.TopicIDType == snpacket.TopicNormal && !topicreg.HasWildcard(filter) {
		id, err := sess.topics.Register(filter)
		if rc := returnCode(err); rc != snpacket.Accepted {
			s.g.release(&o)
			s.send(sess, &snpacket.Suback{MsgID: p.MsgID, ReturnCode: rc})
			return
		}
		topicID = id
	}
	o.topicID = topicID
	// Recorded now: the broker may send retained messages before its
	// SUBACK reaches us. They wait in the queue until SUBACK went out.
	sess.subs[filter] = sub
	sess.subWait++
	s.enqueue(sess, o)
}

func (s *shard) onUnsubscribe(sess *session, p *snpacket.Unsubscribe) {
	if !s.g.checkReserved(sess.log, p) {
		s.send(sess, &snpacket.Unsuback{MsgID: p.MsgID})
		return
	}
	var filter string
	switch p.TopicIDType {
	case snpacket.TopicNormal:
		filter = p.TopicName
	case snpacket.TopicPredefined:
		filter, _ = s.g.predef.Name(p.TopicID)
	case snpacket.TopicShort:
		filter = snpacket.ShortTopicName(p.TopicID)
	}
	if p.TopicIDType != snpacket.TopicPredefined || filter != "" {
		if !s.g.checkFilter(sess.log, p.Type(), filter) {
			s.send(sess, &snpacket.Unsuback{MsgID: p.MsgID}) // UNSUBACK has no return code
			return
		}
	}
	if _, ok := sess.subs[filter]; !ok || filter == "" {
		s.send(sess, &snpacket.Unsuback{MsgID: p.MsgID})
		return
	}
	o := op{kind: opUnsubscribe, filter: filter, msgID: p.MsgID}
	if !s.admit(sess, &o) {
		return // UNSUBACK has no return code: unanswered, the node retries
	}
	delete(sess.subs, filter)
	s.enqueue(sess, o)
}
