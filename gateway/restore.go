package gateway

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/store"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// restore loads the store into the shards before they serve (issue 13):
// every node comes back in the state it was stored in, at its last
// address, with its topic ids, subscriptions, buffer and QoS 2 state. The
// upstream sessions of active and sleeping nodes are opened again when the
// shards start (resumeRestored), resuming what the broker kept. Keep-alive
// and sleep timers start from now: the gateway's downtime is not the
// node's silence.
func (g *Gateway) restore(now time.Time) error {
	if !g.durable {
		return nil
	}
	var n, buffered int
	err := g.store.Load(func(r *store.Record) error {
		s := g.shards[g.shardFor(r.Node.ClientID)]
		if s.sessions[r.Node.ClientID] != nil {
			return fmt.Errorf("gateway: store: client %q stored twice", r.Node.ClientID)
		}
		s.restoreSession(now, r)
		n++
		buffered += len(r.Buffer)
		return nil
	})
	if err != nil {
		return err
	}
	g.log.Info("sessions restored from the store", zap.Int("sessions", n), zap.Int("buffered", buffered))
	return nil
}

func (s *shard) restoreSession(now time.Time, r *store.Record) {
	nd := &r.Node
	p, bound := s.g.parsePeer(nd.Addr)
	sess := s.newSession(nd.ClientID, p)
	s.sessions[nd.ClientID] = sess
	sess.clean = nd.CleanSession
	sess.everConnected = true
	sess.authenticated = nd.Addr == addrAuthenticated
	sess.keepAlive = nd.KeepAlive
	sess.sleep = nd.SleepDuration
	sess.nextMsgID = nd.NextMsgID
	sess.lastSeen = now
	switch nd.State {
	case store.Active:
		sess.state = sleepmgr.Active
	case store.Asleep:
		sess.state = sleepmgr.Asleep
	case store.Lost:
		sess.state = sleepmgr.Lost
	default:
		sess.state = sleepmgr.Disconnected
	}
	if w := nd.Will; w != nil {
		sess.will = &Message{Topic: w.Topic, Payload: w.Payload, QoS: byte(max(w.QoS, 0)), Retain: w.Retain}
	}
	entries := make([]topicreg.Entry, 0, len(nd.Registrations))
	for _, reg := range nd.Registrations {
		entries = append(entries, topicreg.Entry{ID: reg.ID, Name: reg.Name, Acked: reg.Acked})
	}
	sess.topics.Restore(entries)
	for _, sub := range nd.Subscriptions {
		sess.subs[sub.Filter] = subscription{qos: snpacket.QoS(sub.QoS), idType: snpacket.TopicIDType(sub.TopicIDType), id: sub.TopicID}
	}
	for _, b := range r.Buffer {
		it := sleepmgr.Item{Topic: b.Msg.Topic, Payload: b.Msg.Payload, QoS: b.Msg.QoS, Retain: b.Msg.Retain, Seq: b.Seq}
		for _, d := range sess.queue.Push(it) {
			s.forgetItem(sess, d.Item) // the limits shrank since
		}
		sess.dur.nextSeq = max(sess.dur.nextSeq, b.Seq)
	}
	for _, q := range r.QoS2 {
		if sess.qos2 == nil {
			sess.qos2 = map[uint16]bool{}
		}
		sess.qos2[q.MsgID] = q.Forwarded
		if q.UpstreamID != 0 {
			if sess.dur.byUpstream == nil {
				sess.dur.byUpstream = map[uint16]store.QoS2{}
			}
			// A packet id the broker session reused: the MsgId still
			// awaiting the broker is the one the packet carries.
			if old, ok := sess.dur.byUpstream[q.UpstreamID]; !ok || old.Forwarded {
				sess.dur.byUpstream[q.UpstreamID] = q
			}
		}
	}
	for _, pk := range r.Packets {
		sess.dur.packets = append(sess.dur.packets, StoredPacket{ID: pk.ID, Data: pk.Data})
	}
	if bound && (sess.state == sleepmgr.Active || sess.state == sleepmgr.Asleep) {
		s.setPeer(sess, p)
	}
	if sess.state == sleepmgr.Active || sess.state == sleepmgr.Asleep {
		sess.dur.resume = true
	} else {
		s.releaseUnforwarded(sess)
	}
	sess.supervise(now)
	s.schedule(sess)
}

// releaseUnforwarded forgets the QoS 2 MsgIds of a node whose upstream
// session is not resumed now (disconnected or lost): nothing will report
// their outcome, so the node's retry after its CONNECT is forwarded.
func (s *shard) releaseUnforwarded(sess *session) {
	for id, fwd := range sess.qos2 {
		if !fwd {
			delete(sess.qos2, id)
		}
	}
}

// resumeRestored opens the upstream sessions of the restored active and
// sleeping nodes; it runs on the shard's loop, once its workers run.
func (s *shard) resumeRestored(time.Time) {
	for _, sess := range s.sessions {
		if !sess.dur.resume {
			continue
		}
		sess.opening = true
		s.enqueue(sess, op{kind: opOpen})
	}
	s.rearm()
}
