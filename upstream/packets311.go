package upstream

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The MQTT 3.1.1 session's side of gateway.PacketStore: each QoS 2 PUBLISH
// is stored before it is written, the PUBREL that replaces it when the
// broker answers PUBREC, and both are forgotten at PUBCOMP; packets stored
// before a restart (SessionOptions.Resume) are resent after the first
// CONNACK if the broker kept the session.

// storeQoS2 tells the PacketStore of a QoS 2 packet; nil without one.
func (s *session311) storeQoS2(pk *packets.Packet) error {
	ps := s.opts.Packets
	if ps == nil {
		return nil
	}
	var b bytes.Buffer
	p := *pk
	if err := encode311(&b, &p); err != nil {
		return err
	}
	return ps.Put(pk.PacketID, b.Bytes())
}

// resumeOut puts the packets of SessionOptions.Resume into the session
// state, in the order given.
func (s *session311) resumeOut() {
	for _, sp := range s.opts.Resume {
		pk, err := decode311(sp.Data)
		if err != nil || pk.PacketID != sp.ID {
			s.log.Warn("upstream: a stored QoS 2 packet does not decode; it is not resent")
			continue
		}
		s.seq++
		of := &outFlight{pk: *pk, seq: s.seq, done: make(chan error, 1)}
		if pk.FixedHeader.Type == packets.Pubrel {
			of.released = true
			of.pk = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: sp.ID}
		}
		s.out[sp.ID] = of
	}
}

// decode311 decodes one stored PUBLISH or PUBREL.
func decode311(b []byte) (*packets.Packet, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	hb, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	var fh packets.FixedHeader
	if err := fh.Decode(hb); err != nil {
		return nil, err
	}
	n, _, err := packets.DecodeLength(br)
	if err != nil {
		return nil, err
	}
	rest := make([]byte, n)
	if _, err := br.Read(rest); err != nil && n > 0 {
		return nil, err
	}
	fh.Remaining = n
	pk := &packets.Packet{FixedHeader: fh, ProtocolVersion: protoLevel311}
	switch fh.Type {
	case packets.Publish:
		err = pk.PublishDecode(rest)
	case packets.Pubrel:
		err = pk.PubrelDecode(rest)
	default:
		err = fmt.Errorf("packet type %d", fh.Type)
	}
	return pk, err
}

// resume resends the packets stored before a restart when the broker kept
// the session, and tells the PacketStore they are gone when it did not.
func (s *session311) resume(c *conn311, present bool) error {
	if !present {
		if ps := s.opts.Packets; ps != nil {
			ps.Reset()
		}
		return nil
	}
	s.mu.Lock()
	s.resumeOut()
	ofs := make([]*outFlight, 0, len(s.out))
	for _, of := range s.out {
		ofs = append(ofs, of)
	}
	slices.SortFunc(ofs, func(a, b *outFlight) int { return cmp.Compare(a.seq, b.seq) })
	resend := make([]packets.Packet, 0, len(ofs))
	for _, of := range ofs {
		pk := of.pk
		if of.released {
			pk = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: pk.PacketID}
		} else {
			pk.FixedHeader.Dup = true
		}
		resend = append(resend, pk)
	}
	s.mu.Unlock()
	for i := range resend {
		if err := c.write(&resend[i]); err != nil {
			return err
		}
	}
	return nil
}
