package upstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// The MQTT 3.1.1 session's packet flows: what the broker sends (handled on
// the connection's reader goroutine) and the operations the gateway calls.

// handle processes one packet from the broker, on c's reader goroutine.
// An error ends the connection.
func (s *session311) handle(c *conn311, pk *packets.Packet) error {
	id := pk.PacketID
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return s.onPublish(c, pk)
	case packets.Puback:
		s.mu.Lock()
		of := s.out[id]
		if of != nil && !of.released {
			delete(s.out, id)
			if of.pk.FixedHeader.Qos == 2 && !s.warnedQoS {
				// RabbitMQ does this: it takes QoS 2 as QoS 1.
				s.warnedQoS = true
				s.log.Warn("upstream: the broker acknowledged a QoS 2 PUBLISH with PUBACK: it delivers at most QoS 1; set broker.max_qos: 1 to say so",
					zap.String("topic", of.pk.TopicName))
			}
		}
		s.mu.Unlock()
		if of != nil && !of.released {
			of.done <- nil
		}
	case packets.Pubrec:
		rel := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id}
		if err := s.storeQoS2(rel); err != nil {
			s.log.Warn("upstream: PUBREL not stored; the broker's PUBREC is answered again after it resends", zap.Error(err))
			return nil
		}
		s.mu.Lock()
		if of := s.out[id]; of != nil {
			of.released = true
		}
		s.mu.Unlock()
		// PUBREL also for an unknown identifier, so that the broker can
		// discard its state.
		return c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id})
	case packets.Pubcomp:
		s.mu.Lock()
		of := s.out[id]
		if of != nil {
			delete(s.out, id)
		}
		s.mu.Unlock()
		if ps := s.opts.Packets; ps != nil {
			ps.Delete(id)
		}
		if of != nil {
			of.done <- nil
		}
	case packets.Pubrel:
		s.mu.Lock()
		delete(s.inQoS2, id)
		s.mu.Unlock()
		return c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: id})
	case packets.Suback, packets.Unsuback:
		s.mu.Lock()
		ch := s.acks[id]
		delete(s.acks, id)
		s.mu.Unlock()
		if ch != nil {
			ch <- pk
		}
	case packets.Pingresp:
	default:
		return fmt.Errorf("%w: unexpected packet type %d", errProtocol311, pk.FixedHeader.Type)
	}
	return nil
}

// onPublish delivers a message, then acknowledges it: the broker's
// PUBACK/PUBREC goes out only after deliver returned. A QoS 2 message
// whose identifier awaits PUBREL is a resend: PUBREC again, not delivered
// twice.
func (s *session311) onPublish(c *conn311, pk *packets.Packet) error {
	qos, id := pk.FixedHeader.Qos, pk.PacketID
	if qos == 2 {
		s.mu.Lock()
		_, dup := s.inQoS2[id]
		s.mu.Unlock()
		if dup {
			return c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: id})
		}
	}
	if ce := s.log.Check(zap.DebugLevel, "upstream message"); ce != nil {
		ce.Write(zap.String("topic", pk.TopicName), zap.Uint8("qos", qos), zap.Bool("retain", pk.FixedHeader.Retain), zap.Int("len", len(pk.Payload)))
	}
	// The packet was read into a fresh buffer; the receiver owns it.
	s.deliver(gateway.Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: qos, Retain: pk.FixedHeader.Retain})
	switch qos {
	case 1:
		return c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
	case 2:
		s.mu.Lock()
		s.inQoS2[id] = struct{}{}
		s.mu.Unlock()
		return c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: id})
	}
	return nil
}

// request sends a SUBSCRIBE or UNSUBSCRIBE on c and waits for its
// acknowledgement, the connection's end, ctx or Config.AckTimeout.
func (s *session311) request(ctx context.Context, c *conn311, pk *packets.Packet) (*packets.Packet, error) {
	ch := make(chan *packets.Packet, 1)
	s.mu.Lock()
	id, err := s.allocIDLocked()
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.acks[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.acks, id)
		s.mu.Unlock()
	}()
	pk.PacketID = id
	if err := c.write(pk); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.up.cfg.AckTimeout)
	defer cancel()
	select {
	case ack := <-ch:
		return ack, nil
	case <-c.done:
		if s.isClosed() {
			return nil, ErrClosed
		}
		return nil, ErrConnectionLost
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// allocIDLocked returns a packet identifier not in use.
func (s *session311) allocIDLocked() (uint16, error) {
	for range 0xFFFF {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		_, pub := s.out[s.nextID]
		_, req := s.acks[s.nextID]
		if !pub && !req {
			return s.nextID, nil
		}
	}
	return 0, errors.New("upstream: no free packet identifier")
}

func (s *session311) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// current returns the live connection or an error saying why there is
// none.
func (s *session311) currentLocked() (*conn311, error) {
	switch {
	case s.endErr != nil:
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, s.endErr)
	case s.closing:
		return nil, ErrClosed
	case s.cur == nil:
		return nil, ErrNotConnected
	}
	return s.cur, nil
}

// Publish sends msg at the lower of its QoS and broker.max_qos and waits
// for PUBACK (QoS 1) or PUBCOMP (QoS 2); a broker that answers a QoS 2
// PUBLISH with PUBACK has taken it at QoS 1, which is success too. It
// fails at once with ErrNotConnected while the connection is down. If the
// connection drops while waiting and the broker keeps the session
// (CleanSession=0), the message is resent after the reconnect and Publish
// keeps waiting until ctx or Config.AckTimeout ends.
func (s *session311) Publish(ctx context.Context, msg gateway.Message) error {
	if msg.QoS > 2 {
		return fmt.Errorf("upstream: publish to %q: invalid QoS %d", msg.Topic, msg.QoS)
	}
	qos := min(msg.QoS, s.qosCap)
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: msg.Retain},
		TopicName:   msg.Topic,
		Payload:     msg.Payload,
	}
	s.mu.Lock()
	c, err := s.currentLocked()
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("upstream: publish to %q: %w", msg.Topic, err)
	}
	var of *outFlight
	epoch := s.epochCtx
	if qos > 0 {
		id, err := s.allocIDLocked()
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("upstream: publish to %q: %w", msg.Topic, err)
		}
		pk.PacketID = id
		s.seq++
		of = &outFlight{pk: pk, seq: s.seq, done: make(chan error, 1)}
		s.out[id] = of
	}
	s.mu.Unlock()
	if qos == 2 {
		if err := s.storeQoS2(&pk); err != nil {
			s.dropOut(pk.PacketID, of)
			return fmt.Errorf("upstream: publish to %q: %w", msg.Topic, err)
		}
	}

	if ce := s.log.Check(zap.DebugLevel, "upstream publish"); ce != nil {
		ce.Write(zap.String("topic", msg.Topic), zap.Uint8("qos", qos), zap.Bool("retain", msg.Retain), zap.Int("len", len(msg.Payload)))
	}
	werr := c.write(&pk)
	if qos == 0 || (werr != nil && s.clean) {
		// Nothing will resend it: say it did not go out.
		if werr != nil {
			s.dropOut(pk.PacketID, of)
			return fmt.Errorf("upstream: publish to %q: %w: %w", msg.Topic, ErrNotConnected, werr)
		}
		return nil
	}
	// QoS 1/2 in the session state: resent after a reconnect if the
	// write failed or the connection drops before the acknowledgement.
	ctx, cancel := context.WithTimeout(ctx, s.up.cfg.AckTimeout)
	defer cancel()
	ctx, done := bound(ctx, epoch)
	defer done()
	select {
	case err := <-of.done:
		return err
	case <-ctx.Done():
		s.dropOut(pk.PacketID, of)
		return fmt.Errorf("upstream: publish to %q: %w", msg.Topic, lostErr(ctx, ctx.Err()))
	}
}

// dropOut removes of from the session state, unless it already left.
func (s *session311) dropOut(id uint16, of *outFlight) {
	if of == nil {
		return
	}
	s.mu.Lock()
	if s.out[id] == of {
		delete(s.out, id)
	}
	s.mu.Unlock()
}

// Subscribe subscribes to filter at the lower of qos and broker.max_qos
// and returns the granted QoS (which may be lower still: not an error).
// The filter is remembered and restored if the broker loses the session.
func (s *session311) Subscribe(ctx context.Context, filter string, qos byte) (byte, error) {
	if qos > 2 {
		return 0, fmt.Errorf("upstream: subscribe to %q: invalid QoS %d", filter, qos)
	}
	qos = min(qos, s.qosCap)
	s.mu.Lock()
	c, err := s.currentLocked()
	s.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("upstream: subscribe to %q: %w", filter, err)
	}
	sa, err := s.request(ctx, c, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe},
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}})
	if err != nil {
		return 0, fmt.Errorf("upstream: subscribe to %q: %w", filter, err)
	}
	if len(sa.ReasonCodes) != 1 {
		return 0, fmt.Errorf("upstream: subscribe to %q: malformed SUBACK", filter)
	}
	granted := sa.ReasonCodes[0]
	if granted >= 0x80 {
		return 0, &ReasonCodeError{Packet: "SUBACK", Code: granted}
	}
	s.mu.Lock()
	s.subs[filter] = qos
	s.mu.Unlock()
	s.log.Debug("upstream subscribed", zap.String("filter", filter), zap.Uint8("qos", qos), zap.Uint8("granted", granted))
	return granted, nil
}

// Unsubscribe removes the subscription to filter.
func (s *session311) Unsubscribe(ctx context.Context, filter string) error {
	s.mu.Lock()
	c, err := s.currentLocked()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("upstream: unsubscribe from %q: %w", filter, err)
	}
	if _, err := s.request(ctx, c, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe},
		Filters: packets.Subscriptions{{Filter: filter}}}); err != nil {
		return fmt.Errorf("upstream: unsubscribe from %q: %w", filter, err)
	}
	s.mu.Lock()
	delete(s.subs, filter)
	s.mu.Unlock()
	s.log.Debug("upstream unsubscribed", zap.String("filter", filter))
	return nil
}
