package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// node is one simulated MQTT-SN client: its link to the gateway (a UDP
// socket of its own, or a place behind a simulated forwarder), a reusable
// buffer, and its protocol state. A node is driven by one goroutine at a
// time.
type node struct {
	idx     int
	id      string
	l       link
	wbuf    []byte
	msgID   uint16
	topicID uint16 // the node's publish or subscribe topic id
	pub     sn.Publish
	ack     sn.Puback
	retry   time.Duration
	tries   int
	// counters the scenario reads after the node finished
	retrans  uint64
	unexpect uint64
}

var errGatewayDisconnect = errors.New("gateway sent DISCONNECT")

func newNode(cfg *config, idx int, links *linkSet) (*node, error) {
	l, err := links.open(idx)
	if err != nil {
		return nil, err
	}
	return &node{
		idx:   idx,
		id:    fmt.Sprintf("%s%d", cfg.idPrefix, idx),
		l:     l,
		wbuf:  make([]byte, 0, cfg.payload+512),
		retry: cfg.retry,
		tries: cfg.retries + 1,
	}, nil
}

func (n *node) close() { n.l.close() }

func (n *node) nextMsgID() uint16 {
	n.msgID++
	if n.msgID == 0 {
		n.msgID = 1
	}
	return n.msgID
}

// send encodes p into the node's write buffer and sends it.
func (n *node) send(p sn.Packet) error {
	b, err := p.AppendTo(n.wbuf[:0])
	if err != nil {
		return err
	}
	n.wbuf = b[:0]
	return n.l.send(b)
}

// read waits until deadline for one datagram; it returns os.ErrDeadlineExceeded
// on timeout. The bytes are valid until the next read.
func (n *node) read(deadline time.Time) ([]byte, error) { return n.l.read(deadline) }

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// msgType returns the MsgType of a datagram (both Length forms).
func msgType(b []byte) (sn.MsgType, bool) {
	switch {
	case len(b) >= 2 && b[0] != 0x01:
		return sn.MsgType(b[1]), true
	case len(b) >= 4 && b[0] == 0x01:
		return sn.MsgType(b[3]), true
	}
	return 0, false
}

// request sends p and waits for the answer accepted by match, resending p
// every retry interval (Tretry/Nretry of spec §6.13). handle, if not nil,
// answers other datagrams that arrive meanwhile (a PUBLISH to acknowledge,
// say). It returns the answer and the time from the first send.
func (n *node) request(p sn.Packet, match func(sn.Packet) bool, handle func(sn.Packet) error) (sn.Packet, time.Duration, error) {
	start := time.Now()
	for try := 0; try < n.tries; try++ {
		if try > 0 {
			n.retrans++
		}
		if err := n.send(p); err != nil {
			return nil, 0, err
		}
		deadline := time.Now().Add(n.retry)
		for {
			b, err := n.read(deadline)
			if isTimeout(err) {
				break
			}
			if err != nil {
				return nil, 0, err
			}
			got, err := sn.Unmarshal(b)
			if err != nil {
				n.unexpect++
				continue
			}
			if match(got) {
				return got, time.Since(start), nil
			}
			if _, ok := got.(*sn.Disconnect); ok && p.Type() != sn.TypeDisconnect {
				return nil, 0, errGatewayDisconnect
			}
			if handle != nil {
				if err := handle(got); err != nil {
					return nil, 0, err
				}
				continue
			}
			n.unexpect++
		}
	}
	return nil, 0, fmt.Errorf("%s: no answer to %s after %d tries", n.id, p.Type(), n.tries)
}

// connect performs CONNECT/CONNACK (clean session, no will).
func (n *node) connect(keepAlive time.Duration) (time.Duration, error) {
	p, lat, err := n.request(&sn.Connect{CleanSession: true, Duration: uint16(keepAlive / time.Second), ClientID: n.id},
		func(p sn.Packet) bool { _, ok := p.(*sn.Connack); return ok }, nil)
	if err != nil {
		return 0, err
	}
	if rc := p.(*sn.Connack).ReturnCode; rc != sn.Accepted {
		return lat, fmt.Errorf("%s: CONNACK: %w", n.id, rc)
	}
	return lat, nil
}

// register registers topic and keeps its id.
func (n *node) register(topic string) error {
	id := n.nextMsgID()
	p, _, err := n.request(&sn.Register{MsgID: id, TopicName: topic},
		func(p sn.Packet) bool { r, ok := p.(*sn.Regack); return ok && r.MsgID == id }, nil)
	if err != nil {
		return err
	}
	r := p.(*sn.Regack)
	if r.ReturnCode != sn.Accepted {
		return fmt.Errorf("%s: REGACK: %w", n.id, r.ReturnCode)
	}
	n.topicID = r.TopicID
	return nil
}

// subscribe subscribes to a topic name or filter and keeps the topic id
// (0 for a wildcard).
func (n *node) subscribe(filter string, qos sn.QoS) error {
	id := n.nextMsgID()
	p, _, err := n.request(&sn.Subscribe{QoS: qos, MsgID: id, TopicName: filter},
		func(p sn.Packet) bool { s, ok := p.(*sn.Suback); return ok && s.MsgID == id }, nil)
	if err != nil {
		return err
	}
	s := p.(*sn.Suback)
	if s.ReturnCode != sn.Accepted {
		return fmt.Errorf("%s: SUBACK: %w", n.id, s.ReturnCode)
	}
	n.topicID = s.TopicID
	return nil
}

// disconnect sends DISCONNECT (with a duration: go to sleep) and waits
// for the gateway's DISCONNECT.
func (n *node) disconnect(sleep time.Duration) error {
	d := &sn.Disconnect{}
	if sleep > 0 {
		d.Duration, d.HasDuration = uint16(sleep/time.Second), true
	}
	_, _, err := n.request(d, func(p sn.Packet) bool { _, ok := p.(*sn.Disconnect); return ok }, nil)
	return err
}

// downlink answers what the gateway sends a subscriber: REGACK for a
// REGISTER, PUBACK/PUBREC for a PUBLISH, PUBCOMP for a PUBREL. It reports
// the payload of a PUBLISH seen for the first time by the gateway's
// account (a retransmission with DUP is passed on too; the tracker finds
// duplicates by sequence number).
func (n *node) downlink(p sn.Packet, onPublish func(data []byte)) error {
	switch m := p.(type) {
	case *sn.Register:
		return n.send(&sn.Regack{TopicID: m.TopicID, MsgID: m.MsgID, ReturnCode: sn.Accepted})
	case *sn.Publish:
		onPublish(m.Data)
		switch m.QoS {
		case sn.QoS1:
			return n.send(&sn.Puback{TopicID: m.TopicID, MsgID: m.MsgID, ReturnCode: sn.Accepted})
		case sn.QoS2:
			return n.send(&sn.Pubrec{MsgID: m.MsgID})
		default: // QoS 0: nothing to answer
		}
	case *sn.Pubrel:
		return n.send(&sn.Pubcomp{MsgID: m.MsgID})
	case *sn.PingResp:
	case *sn.Disconnect:
		return errGatewayDisconnect
	default:
		n.unexpect++
	}
	return nil
}
