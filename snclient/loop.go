package snclient

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// kind is a class of request; the spec allows one outstanding request of
// each kind, so each kind has one slot and a queue behind it.
type kind uint8

const (
	kindConnect    kind = iota // CONNECT (+ WILLTOPIC, WILLMSG) until CONNACK
	kindRegister               // REGISTER until REGACK
	kindPublish                // QoS 1 and 2 PUBLISH until PUBACK or PUBCOMP
	kindSubscribe              // SUBSCRIBE or UNSUBSCRIBE (spec §6.9: one of them at a time)
	kindPing                   // PINGREQ: Ping, keep-alive and Wake
	kindDisconnect             // DISCONNECT, with or without sleep duration
	kindWillTopic              // WILLTOPICUPD until WILLTOPICRESP
	kindWillMsg                // WILLMSGUPD until WILLMSGRESP
	numKinds

	kindNow // QoS 0 and -1 PUBLISH: sent at once, no reply expected
)

// String names the request kind for errors and logs.
func (k kind) String() string {
	switch k {
	case kindConnect:
		return "CONNECT"
	case kindRegister:
		return "REGISTER"
	case kindPublish, kindNow:
		return "PUBLISH"
	case kindSubscribe:
		return "SUBSCRIBE"
	case kindPing:
		return "PINGREQ"
	case kindDisconnect:
		return "DISCONNECT"
	case kindWillTopic:
		return "WILLTOPICUPD"
	case kindWillMsg:
		return "WILLMSGUPD"
	case numKinds:
	}
	return "request"
}

// op is one request: what the caller asked for, then the loop's
// retransmission state.
type op struct {
	kind        kind
	topic       string
	payload     []byte
	qos         snpacket.QoS
	retain      bool
	handler     Handler
	unsubscribe bool
	sleep       uint16 // kindDisconnect: sleep duration in seconds, 0 for none
	wake        bool   // kindPing: PINGREQ with ClientId from asleep
	res         chan result

	// Owned by the loop.
	msgID    uint16
	sent     snpacket.Packet // retransmitted on Tretry
	retries  int
	deadline time.Time
	pubrel   bool          // QoS 2: PUBREC received, PUBREL sent
	received int           // wake: messages received
	prevSub  *subscription // subscribe: the subscription it replaced
	newSub   *subscription
}

// result is what a call gets back.
type result struct {
	id  uint16 // Register: the topic id
	n   int    // Wake: messages received
	err error
}

// errNeedRegister tells Publish that the topic has no id yet.
var errNeedRegister = errors.New("snclient: topic not registered")

// engine is the protocol state, owned by the loop goroutine.
type engine struct {
	c        *Client
	log      *zap.Logger
	state    State
	will     *Will
	slots    [numKinds]*op
	queues   [numKinds][]*op
	msgID    uint16
	idByName map[string]uint16 // normal topic ids to publish with
	nameByID map[uint16]string // normal topic ids the gateway publishes with
	subs     []*subscription
	rel      map[uint16]struct{} // QoS 2 MsgIds received, awaiting PUBREL
	lastSent time.Time
	pending  []func() // handler calls waiting for the handler goroutine
	buf      []byte
}

func newEngine(c *Client) *engine {
	return &engine{
		c:        c,
		log:      c.log,
		will:     c.opts.Will,
		idByName: map[string]uint16{},
		nameByID: map[uint16]string{},
		rel:      map[uint16]struct{}{},
	}
}

// run is the protocol loop: it owns the engine and every timer.
func (c *Client) run(e *engine) {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var (
			dispatch chan<- func()
			next     func()
		)
		if len(e.pending) > 0 {
			dispatch, next = c.dispatch, e.pending[0]
		}
		if d, ok := e.nextDeadline(); ok {
			timer.Reset(time.Until(d))
		} else {
			timer.Stop()
		}
		select {
		case <-c.quit:
			e.failAll(ErrClosed)
			return
		case p := <-c.in:
			e.onPacket(time.Now(), p)
		case err := <-c.readErr:
			e.lost(fmt.Errorf("snclient: transport: %w", err))
		case o := <-c.ops:
			e.submit(time.Now(), o)
		case o := <-c.abandon:
			e.abandon(time.Now(), o)
		case now := <-timer.C:
			e.onTimer(now)
		case dispatch <- next:
			e.pending[0] = nil
			e.pending = e.pending[1:]
		}
	}
}

// runHandlers runs handler calls in order.
func (c *Client) runHandlers() {
	defer c.wg.Done()
	for {
		select {
		case f := <-c.dispatch:
			f()
		case <-c.quit:
			return
		}
	}
}

// read is the reader goroutine: it decodes datagrams for the loop.
func (c *Client) read() {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := c.tr.Read(buf)
		if err != nil {
			select {
			case <-c.quit:
				return
			default:
			}
			if transient(err) {
				continue
			}
			select {
			case c.readErr <- err:
			case <-c.quit:
			}
			return
		}
		p, err := snpacket.Unmarshal(append([]byte(nil), buf[:n]...))
		if err != nil {
			c.log.Debug("undecodable datagram dropped", zap.Error(err), zap.Int("len", n))
			continue
		}
		select {
		case c.in <- p:
		case <-c.quit:
			return
		}
	}
}

func (e *engine) setState(s State) {
	if e.state != s {
		e.log.Debug("state", zap.Stringer("from", e.state), zap.Stringer("to", s))
	}
	e.state = s
	e.c.state.Store(int32(s))
}

func (e *engine) connected() bool {
	return e.state == StateActive || e.state == StateAsleep || e.state == StateAwake
}

// send writes one datagram. A refused datagram (nothing listening) is not
// an error: retransmission or its absence handles it, as for a lost one.
func (e *engine) send(now time.Time, p snpacket.Packet) error {
	b, err := p.AppendTo(e.buf[:0])
	if err != nil {
		return err
	}
	e.buf = b
	logPacket(e.log, "send", p)
	if _, err := e.c.tr.Write(b); err != nil && !transient(err) {
		return err
	}
	e.lastSent = now
	return nil
}

// logPacket logs p at debug level, at no cost when that is off.
func logPacket(log *zap.Logger, msg string, p snpacket.Packet) {
	if ce := log.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(zap.Stringer("type", p.Type()), zap.String("packet", fmt.Sprintf("%+v", p)))
	}
}

// deliver gives r to o's caller; a Wake result goes behind the handler
// calls of the messages it collected.
func (e *engine) deliver(o *op, r result) {
	if o.res == nil {
		return
	}
	if o.wake {
		e.pending = append(e.pending, func() { o.res <- r })
		return
	}
	o.res <- r
}

// finish ends o with r and frees its slot.
func (e *engine) finish(o *op, r result) {
	if e.slots[o.kind] == o {
		e.slots[o.kind] = nil
	}
	if o.kind == kindSubscribe && r.err != nil && o.newSub != nil {
		e.restoreSub(o)
	}
	e.deliver(o, r)
}

// done ends o and starts the next request of its kind.
func (e *engine) done(now time.Time, o *op, r result) {
	e.finish(o, r)
	e.advance(now, o.kind)
}

func (e *engine) advance(now time.Time, k kind) {
	for e.slots[k] == nil && len(e.queues[k]) > 0 {
		o := e.queues[k][0]
		e.queues[k][0] = nil
		e.queues[k] = e.queues[k][1:]
		e.start(now, o)
	}
}

func (e *engine) submit(now time.Time, o *op) {
	if o.kind == kindNow {
		e.deliver(o, result{err: e.publishNow(now, o)})
		return
	}
	e.queues[o.kind] = append(e.queues[o.kind], o)
	e.advance(now, o.kind)
}

func (e *engine) abandon(now time.Time, o *op) {
	if o.kind >= numKinds {
		return // sent at once: nothing left to abandon
	}
	if e.slots[o.kind] == o {
		e.slots[o.kind] = nil
		if o.wake && e.state == StateAwake {
			e.setState(StateAsleep)
		}
		if o.kind == kindSubscribe && o.newSub != nil {
			e.restoreSub(o)
		}
		e.advance(now, o.kind)
		return
	}
	q := e.queues[o.kind]
	for i, x := range q {
		if x == o {
			e.queues[o.kind] = append(q[:i], q[i+1:]...)
			return
		}
	}
}

func (e *engine) nextMsgID() uint16 {
	e.msgID++
	if e.msgID == 0 {
		e.msgID = 1
	}
	return e.msgID
}

// start sends o's first message and makes it the outstanding request of
// its kind, or ends it at once when it cannot be sent.
func (e *engine) start(now time.Time, o *op) {
	p, err := e.request(o)
	if err == nil {
		err = e.send(now, p)
	}
	if err != nil {
		e.finish(o, result{err: err})
		return
	}
	if o.wake {
		e.setState(StateAwake)
	}
	o.sent, o.retries, o.deadline = p, 0, now.Add(e.c.opts.RetryInterval)
	e.slots[o.kind] = o
}

// request builds o's first message, checking that the state allows it.
func (e *engine) request(o *op) (snpacket.Packet, error) {
	switch {
	case o.kind == kindConnect:
		return &snpacket.Connect{Will: e.will != nil, CleanSession: e.c.opts.CleanSession,
			Duration: e.c.wireKA, ClientID: e.c.opts.ClientID}, nil
	case o.wake:
		if e.state != StateAsleep {
			return nil, fmt.Errorf("snclient: wake: %w (state %v)", ErrNotConnected, e.state)
		}
		return &snpacket.PingReq{ClientID: e.c.opts.ClientID}, nil
	case o.kind == kindDisconnect:
		if !e.connected() {
			return nil, fmt.Errorf("snclient: DISCONNECT: %w (state %v)", ErrNotConnected, e.state)
		}
		return &snpacket.Disconnect{Duration: o.sleep, HasDuration: o.sleep > 0}, nil
	case e.state != StateActive:
		return nil, fmt.Errorf("snclient: %v: %w (state %v)", o.kind, ErrNotConnected, e.state)
	}
	switch o.kind {
	case kindRegister:
		o.msgID = e.nextMsgID()
		return &snpacket.Register{MsgID: o.msgID, TopicName: o.topic}, nil
	case kindPublish:
		return e.publishPacket(o)
	case kindSubscribe:
		return e.subscribePacket(o)
	case kindPing:
		return &snpacket.PingReq{}, nil
	case kindWillTopic:
		return &snpacket.WillTopicUpd{QoS: o.qos, Retain: o.retain, WillTopic: o.topic}, nil
	case kindWillMsg:
		return &snpacket.WillMsgUpd{WillMsg: o.payload}, nil
	case kindConnect, kindDisconnect, numKinds, kindNow:
	}
	return nil, fmt.Errorf("snclient: internal error: request of kind %d", o.kind)
}

// publishPacket resolves o's topic and builds its PUBLISH.
func (e *engine) publishPacket(o *op) (*snpacket.Publish, error) {
	tt, id, err := e.resolvePublish(o.topic, o.qos)
	if err != nil {
		return nil, err
	}
	p := &snpacket.Publish{QoS: o.qos, Retain: o.retain, TopicIDType: tt, TopicID: id, Data: o.payload}
	if o.qos > snpacket.QoS0 {
		o.msgID = e.nextMsgID()
		p.MsgID = o.msgID
	}
	return p, nil
}

func (e *engine) resolvePublish(topic string, qos snpacket.QoS) (snpacket.TopicIDType, uint16, error) {
	if id, ok := ParsePredefinedID(topic); ok {
		return snpacket.TopicPredefined, id, nil
	}
	if id, ok := e.c.predef.ID(topic); ok {
		return snpacket.TopicPredefined, id, nil
	}
	if id, ok := snpacket.ShortTopicID(topic); ok {
		return snpacket.TopicShort, id, nil
	}
	if qos == snpacket.QoSMinusOne {
		return 0, 0, fmt.Errorf("snclient: publish %s at QoS -1: %w (use a short or predefined topic)", topicLabel(topic), ErrInvalidTopic)
	}
	if id, ok := e.idByName[topic]; ok {
		return snpacket.TopicNormal, id, nil
	}
	return 0, 0, errNeedRegister
}

// publishNow sends a QoS 0 or -1 PUBLISH.
func (e *engine) publishNow(now time.Time, o *op) error {
	if o.qos == snpacket.QoS0 && e.state != StateActive {
		return fmt.Errorf("snclient: PUBLISH: %w (state %v)", ErrNotConnected, e.state)
	}
	p, err := e.publishPacket(o)
	if err != nil {
		return err
	}
	return e.send(now, p)
}

// subscribePacket resolves o's filter, builds its SUBSCRIBE or
// UNSUBSCRIBE and installs the subscription's handler.
func (e *engine) subscribePacket(o *op) (snpacket.Packet, error) {
	s := &subscription{filter: o.topic, name: o.topic, handler: o.handler}
	if id, ok := ParsePredefinedID(o.topic); ok {
		s.idType, s.id = snpacket.TopicPredefined, id
		if name, ok := e.c.predef.Name(id); ok {
			s.name = name
		}
	} else if id, ok := e.c.predef.ID(o.topic); ok {
		s.idType, s.id = snpacket.TopicPredefined, id
	} else if id, ok := snpacket.ShortTopicID(o.topic); ok && !topicreg.HasWildcard(o.topic) {
		s.idType, s.id = snpacket.TopicShort, id
	}
	o.msgID = e.nextMsgID()
	var name string
	if s.idType == snpacket.TopicNormal {
		name = o.topic
	}
	if o.unsubscribe {
		return &snpacket.Unsubscribe{TopicIDType: s.idType, MsgID: o.msgID, TopicName: name, TopicID: s.id}, nil
	}
	o.newSub = s
	o.prevSub = e.replaceSub(o.topic, s)
	return &snpacket.Subscribe{QoS: o.qos, TopicIDType: s.idType, MsgID: o.msgID, TopicName: name, TopicID: s.id}, nil
}

// replaceSub installs s for filter and returns the subscription it
// replaced, if any.
func (e *engine) replaceSub(filter string, s *subscription) *subscription {
	for i, x := range e.subs {
		if x.filter == filter {
			e.subs[i] = s
			return x
		}
	}
	e.subs = append(e.subs, s)
	return nil
}

// restoreSub undoes a failed subscribe's replaceSub.
func (e *engine) restoreSub(o *op) {
	for i, x := range e.subs {
		if x == o.newSub {
			if o.prevSub != nil {
				e.subs[i] = o.prevSub
			} else {
				e.subs = append(e.subs[:i], e.subs[i+1:]...)
			}
			break
		}
	}
	o.newSub = nil
}

func (e *engine) removeSub(filter string) {
	for i, x := range e.subs {
		if x.filter == filter {
			e.subs = append(e.subs[:i], e.subs[i+1:]...)
			return
		}
	}
}

// nextDeadline is the earliest retransmission or keep-alive time.
func (e *engine) nextDeadline() (time.Time, bool) {
	var d time.Time
	for _, o := range e.slots {
		if o != nil && (d.IsZero() || o.deadline.Before(d)) {
			d = o.deadline
		}
	}
	if ka, ok := e.keepAliveDue(); ok && (d.IsZero() || ka.Before(d)) {
		d = ka
	}
	return d, !d.IsZero()
}

// keepAliveDue is when the client must send PINGREQ, if it must.
func (e *engine) keepAliveDue() (time.Time, bool) {
	if e.state != StateActive || e.c.pingIdle <= 0 || e.slots[kindPing] != nil || len(e.queues[kindPing]) > 0 ||
		e.slots[kindConnect] != nil {
		return time.Time{}, false
	}
	return e.lastSent.Add(e.c.pingIdle), true
}

// onTimer retransmits what is due (spec §6.13) and sends keep-alive pings.
func (e *engine) onTimer(now time.Time) {
	for _, o := range e.slots {
		if o == nil || o.deadline.After(now) {
			continue
		}
		if o.retries >= e.c.opts.RetryCount {
			e.exhausted(now, o)
			if e.state == StateLost {
				return
			}
			continue
		}
		o.retries++
		o.deadline = now.Add(e.c.opts.RetryInterval)
		switch p := o.sent.(type) {
		case *snpacket.Publish:
			p.DUP = true
		case *snpacket.Subscribe:
			p.DUP = true
		}
		e.log.Debug("retransmit", zap.Stringer("type", o.sent.Type()), zap.Int("retry", o.retries))
		if err := e.send(now, o.sent); err != nil {
			e.done(now, o, result{err: err})
		}
	}
	if due, ok := e.keepAliveDue(); ok && !due.After(now) {
		e.start(now, &op{kind: kindPing})
	}
}

// exhausted handles a request the gateway never answered: the wake-up
// fails and the client goes back to sleep; anything else means the
// connection is gone.
func (e *engine) exhausted(now time.Time, o *op) {
	err := fmt.Errorf("%w: no answer to %v after %d retransmissions", ErrTimeout, o.sent.Type(), o.retries)
	if o.wake {
		e.setState(StateAsleep)
		e.done(now, o, result{err: err})
		return
	}
	e.lost(err) // o is among the requests it fails
}

// lost marks the connection lost and fails every request in progress.
func (e *engine) lost(err error) {
	was := e.connected()
	e.setState(StateLost)
	e.failAll(err)
	if was {
		e.connectionLost(err)
	}
}

func (e *engine) connectionLost(err error) {
	e.log.Debug("connection lost", zap.Error(err))
	if f := e.c.opts.OnConnectionLost; f != nil {
		e.pending = append(e.pending, func() { f(err) })
	}
}

// failAll ends every outstanding and queued request with err.
func (e *engine) failAll(err error) {
	for k := range e.slots {
		if o := e.slots[k]; o != nil {
			e.finish(o, result{err: err})
		}
		for _, o := range e.queues[k] {
			e.finish(o, result{err: err})
		}
		e.queues[k] = nil
	}
}
