package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// rawPublisher is a minimal MQTT v5 publisher for the direct ceiling: one
// TCP connection, one write per PUBLISH and a plain read per ack, so that
// it costs the generator about what a simulated MQTT-SN node costs (one
// datagram out, one in) and the ceiling is the broker's, not a client
// library's. CONNECT/CONNACK go through paho's packet codec.
type rawPublisher struct {
	conn  net.Conn
	r     *bufio.Reader
	wbuf  []byte
	topic []byte
}

func dialRawPublisher(ctx context.Context, broker, id, topic string) (*rawPublisher, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, err
	}
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.CleanStart, c.KeepAlive = id, true, 300
	c.ProtocolName, c.ProtocolVersion = "MQTT", 5
	c.Properties = &packets.Properties{}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := cp.WriteTo(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 4096)
	ack, err := packets.ReadPacket(r)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	ca, ok := ack.Content.(*packets.Connack)
	if !ok || ca.ReasonCode >= 0x80 {
		_ = conn.Close()
		return nil, fmt.Errorf("broker refused CONNECT (%v)", ack.PacketType())
	}
	_ = conn.SetDeadline(time.Time{})
	return &rawPublisher{conn: conn, r: r, topic: []byte(topic)}, nil
}

func (p *rawPublisher) close() {
	_, _ = p.conn.Write([]byte{0xE0, 0x00}) // DISCONNECT, normal
	_ = p.conn.Close()
}

// appendVBI appends an MQTT variable byte integer.
func appendVBI(b []byte, v int) []byte {
	for {
		c := byte(v % 128)
		v /= 128
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

// appendPublish appends an MQTT v5 PUBLISH without properties.
func appendPublish(b []byte, topic []byte, qos byte, id uint16, payload []byte) []byte {
	rem := 2 + len(topic) + 1 + len(payload)
	if qos > 0 {
		rem += 2
	}
	b = append(b, 0x30|qos<<1)
	b = appendVBI(b, rem)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	b = append(b, 0) // no properties
	return append(b, payload...)
}

func (p *rawPublisher) publish(qos byte, id uint16, payload []byte) error {
	p.wbuf = appendPublish(p.wbuf[:0], p.topic, qos, id, payload)
	_, err := p.conn.Write(p.wbuf)
	return err
}

func (p *rawPublisher) pubrel(id uint16) error {
	_, err := p.conn.Write([]byte{0x62, 0x02, byte(id >> 8), byte(id)})
	return err
}

var errBrokerDisconnect = errors.New("broker sent DISCONNECT")

// readAck reads the next packet from the broker: its type (high nibble of
// the first byte), packet id and reason code (0 when absent).
func (p *rawPublisher) readAck(deadline time.Time) (typ byte, id uint16, rc byte, err error) {
	if err := p.conn.SetReadDeadline(deadline); err != nil {
		return 0, 0, 0, err
	}
	h, err := p.r.ReadByte()
	if err != nil {
		return 0, 0, 0, err
	}
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		c, err := p.r.ReadByte()
		if err != nil {
			return 0, 0, 0, err
		}
		n += int(c&0x7f) * mul
		mul *= 128
		if c&0x80 == 0 {
			break
		}
	}
	var body [4]byte
	k := min(n, len(body))
	if _, err := io.ReadFull(p.r, body[:k]); err != nil {
		return 0, 0, 0, err
	}
	if _, err := p.r.Discard(n - k); err != nil {
		return 0, 0, 0, err
	}
	typ = h >> 4
	if typ == packets.DISCONNECT {
		return typ, 0, 0, errBrokerDisconnect
	}
	if k >= 2 {
		id = binary.BigEndian.Uint16(body[:2])
	}
	if k >= 3 {
		rc = body[2]
	}
	return typ, id, rc, nil
}
