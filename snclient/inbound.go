package snclient

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// onPacket handles one message from the gateway.
func (e *engine) onPacket(now time.Time, pkt snpacket.Packet) {
	logPacket(e.log, "recv", pkt)
	if w := e.slots[kindPing]; w != nil && w.wake {
		if _, end := pkt.(*snpacket.PingResp); !end {
			// Spec §6.14: Tretry restarts on every message but PINGRESP.
			w.retries, w.deadline = 0, now.Add(e.c.opts.RetryInterval)
		}
	}
	switch p := pkt.(type) {
	case *snpacket.Connack:
		e.onConnack(now, p)
	case *snpacket.WillTopicReq:
		if o := e.slots[kindConnect]; o != nil {
			wt := &snpacket.WillTopic{} // empty: no will (spec §6.3)
			if w := e.will; w != nil {
				wt = &snpacket.WillTopic{QoS: w.QoS, Retain: w.Retain, WillTopic: w.Topic}
			}
			e.reply(now, o, wt)
		}
	case *snpacket.WillMsgReq:
		if o := e.slots[kindConnect]; o != nil {
			wm := &snpacket.WillMsg{}
			if e.will != nil {
				wm.WillMsg = e.will.Payload
			}
			e.reply(now, o, wm)
		}
	case *snpacket.Register:
		// The gateway names a topic id it will publish with (spec §6.10).
		e.nameByID[p.TopicID] = p.TopicName
		e.sendReply(now, &snpacket.Regack{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: snpacket.Accepted})
	case *snpacket.Regack:
		e.onRegack(now, p)
	case *snpacket.Publish:
		e.onPublish(now, p)
	case *snpacket.Puback:
		e.onPuback(now, p)
	case *snpacket.Pubrec:
		if o := e.slots[kindPublish]; o != nil && o.msgID == p.MsgID && o.qos == snpacket.QoS2 {
			o.pubrel = true
			e.reply(now, o, &snpacket.Pubrel{MsgID: p.MsgID})
		}
	case *snpacket.Pubrel:
		delete(e.rel, p.MsgID)
		e.sendReply(now, &snpacket.Pubcomp{MsgID: p.MsgID})
	case *snpacket.Pubcomp:
		if o := e.slots[kindPublish]; o != nil && o.msgID == p.MsgID && o.pubrel {
			e.done(now, o, result{})
		}
	case *snpacket.Suback:
		e.onSuback(now, p)
	case *snpacket.Unsuback:
		if o := e.slots[kindSubscribe]; o != nil && o.msgID == p.MsgID && o.unsubscribe {
			e.removeSub(o.topic)
			e.done(now, o, result{})
		}
	case *snpacket.PingReq:
		e.sendReply(now, &snpacket.PingResp{})
	case *snpacket.PingResp:
		if o := e.slots[kindPing]; o != nil {
			if o.wake {
				e.setState(StateAsleep)
			}
			e.done(now, o, result{n: o.received})
		}
	case *snpacket.Disconnect:
		e.onDisconnect(now)
	case *snpacket.WillTopicResp:
		if o := e.slots[kindWillTopic]; o != nil {
			if p.ReturnCode == snpacket.Accepted {
				e.updateWillTopic(o)
			}
			e.done(now, o, result{err: e.rejected(o, p.ReturnCode)})
		}
	case *snpacket.WillMsgResp:
		if o := e.slots[kindWillMsg]; o != nil {
			if p.ReturnCode == snpacket.Accepted && e.will != nil {
				w := *e.will
				w.Payload = o.payload
				e.will = &w
			}
			e.done(now, o, result{err: e.rejected(o, p.ReturnCode)})
		}
	default:
		e.log.Debug("unexpected message ignored", zap.Stringer("type", pkt.Type()))
	}
}

// rejected returns nil for Accepted, else an error wrapping rc.
func (e *engine) rejected(o *op, rc snpacket.ReturnCode) error {
	if rc == snpacket.Accepted {
		return nil
	}
	if o.topic != "" {
		return fmt.Errorf("snclient: %v %s: %w", o.kind, topicLabel(o.topic), rc)
	}
	return fmt.Errorf("snclient: %v: %w", o.kind, rc)
}

// reply sends the next message of o's exchange, which is now the one
// retransmitted.
func (e *engine) reply(now time.Time, o *op, p snpacket.Packet) {
	if err := e.send(now, p); err != nil {
		e.done(now, o, result{err: err})
		return
	}
	o.sent, o.retries, o.deadline = p, 0, now.Add(e.c.opts.RetryInterval)
}

// sendReply sends an answer that expects none.
func (e *engine) sendReply(now time.Time, p snpacket.Packet) {
	if err := e.send(now, p); err != nil {
		e.log.Debug("send failed", zap.Stringer("type", p.Type()), zap.Error(err))
	}
}

func (e *engine) onConnack(now time.Time, p *snpacket.Connack) {
	o := e.slots[kindConnect]
	if o == nil {
		return
	}
	if p.ReturnCode == snpacket.Accepted {
		e.setState(StateActive)
		clear(e.idByName) // register again rather than trust old ids
		if e.c.opts.CleanSession {
			clear(e.nameByID)
			clear(e.rel)
		}
	}
	e.done(now, o, result{err: e.rejected(o, p.ReturnCode)})
}

func (e *engine) onRegack(now time.Time, p *snpacket.Regack) {
	o := e.slots[kindRegister]
	if o == nil || o.msgID != p.MsgID {
		return
	}
	if p.ReturnCode == snpacket.Accepted {
		e.idByName[o.topic] = p.TopicID
		e.nameByID[p.TopicID] = o.topic
	}
	e.done(now, o, result{id: p.TopicID, err: e.rejected(o, p.ReturnCode)})
}

func (e *engine) onPuback(now time.Time, p *snpacket.Puback) {
	if p.ReturnCode == snpacket.RejectedInvalidTopicID {
		// Register again before the next publish (spec §6.6).
		for name, id := range e.idByName {
			if id == p.TopicID {
				delete(e.idByName, name)
			}
		}
	}
	o := e.slots[kindPublish]
	if o == nil || o.msgID != p.MsgID || o.pubrel {
		if p.ReturnCode != snpacket.Accepted {
			e.log.Debug("publish rejected", zap.Uint16("topic_id", p.TopicID), zap.Stringer("rc", p.ReturnCode))
		}
		return
	}
	if p.ReturnCode == snpacket.Accepted && o.qos != snpacket.QoS1 {
		return // a QoS 2 exchange ends with PUBCOMP
	}
	e.done(now, o, result{err: e.rejected(o, p.ReturnCode)})
}

func (e *engine) onSuback(now time.Time, p *snpacket.Suback) {
	o := e.slots[kindSubscribe]
	if o == nil || o.msgID != p.MsgID || o.unsubscribe {
		return
	}
	if p.ReturnCode == snpacket.Accepted && o.newSub != nil && o.newSub.idType == snpacket.TopicNormal &&
		!topicreg.HasWildcard(o.topic) && p.TopicID != 0 {
		e.nameByID[p.TopicID] = o.topic
	}
	e.done(now, o, result{err: e.rejected(o, p.ReturnCode)})
}

func (e *engine) onDisconnect(now time.Time) {
	if o := e.slots[kindDisconnect]; o != nil {
		if o.sleep > 0 {
			e.setState(StateAsleep)
		} else {
			e.setState(StateDisconnected)
			e.finish(o, result{})
			for k := range e.slots {
				if kind(k) != kindConnect {
					e.failKind(kind(k), fmt.Errorf("%w: disconnected", ErrNotConnected))
				}
			}
			return
		}
		e.done(now, o, result{})
		return
	}
	if !e.connected() && e.slots[kindConnect] == nil {
		return // a stray answer to something long gone
	}
	was := e.connected()
	e.setState(StateDisconnected)
	e.failAll(ErrDisconnected)
	if was {
		e.connectionLost(ErrDisconnected)
	}
}

// failKind ends the outstanding and queued requests of kind k with err.
func (e *engine) failKind(k kind, err error) {
	if o := e.slots[k]; o != nil {
		e.finish(o, result{err: err})
	}
	for _, o := range e.queues[k] {
		e.finish(o, result{err: err})
	}
	e.queues[k] = nil
}

func (e *engine) updateWillTopic(o *op) {
	if o.topic == "" {
		e.will = nil // an empty WILLTOPICUPD deletes topic and message (spec §6.4)
		return
	}
	w := Will{Topic: o.topic, QoS: o.qos, Retain: o.retain}
	if e.will != nil {
		w.Payload = e.will.Payload
	}
	e.will = &w
}

// onPublish acknowledges a PUBLISH from the gateway and hands it to the
// handlers; a QoS 2 message is handed over once however often it arrives
// before its PUBREL.
func (e *engine) onPublish(now time.Time, p *snpacket.Publish) {
	name, ok := e.topicName(p.TopicIDType, p.TopicID)
	if !ok {
		// Spec §6.10: an unknown topic id is answered "invalid topic ID".
		e.sendReply(now, &snpacket.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: snpacket.RejectedInvalidTopicID})
		return
	}
	switch p.QoS {
	case snpacket.QoS1:
		e.sendReply(now, &snpacket.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: snpacket.Accepted})
	case snpacket.QoS2:
		e.sendReply(now, &snpacket.Pubrec{MsgID: p.MsgID})
		if _, dup := e.rel[p.MsgID]; dup {
			return
		}
		e.rel[p.MsgID] = struct{}{}
	case snpacket.QoS0, snpacket.QoSMinusOne:
	}
	m := Message{Topic: name, Payload: p.Data, QoS: p.QoS, Retain: p.Retain, Duplicate: p.DUP,
		TopicIDType: p.TopicIDType, TopicID: p.TopicID}
	if w := e.slots[kindPing]; w != nil && w.wake {
		w.received++
	}
	matched, usedDefault := false, false
	def := e.c.opts.DefaultHandler
	for _, s := range e.subs {
		if !s.matches(p.TopicIDType, p.TopicID, name) {
			continue
		}
		matched = true
		h := s.handler
		if h == nil {
			if usedDefault {
				continue
			}
			h, usedDefault = def, true
		}
		if h != nil {
			e.pending = append(e.pending, func() { h(m) })
		}
	}
	if !matched && def != nil {
		e.pending = append(e.pending, func() { def(m) })
	}
}

// topicName names the topic of a PUBLISH from the gateway.
func (e *engine) topicName(tt snpacket.TopicIDType, id uint16) (string, bool) {
	switch tt {
	case snpacket.TopicNormal:
		name, ok := e.nameByID[id]
		return name, ok
	case snpacket.TopicPredefined:
		if name, ok := e.c.predef.Name(id); ok {
			return name, true
		}
		return PredefinedID(id), true
	case snpacket.TopicShort:
		return snpacket.ShortTopicName(id), true
	}
	return "", false
}
