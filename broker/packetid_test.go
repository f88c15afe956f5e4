package broker_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
)

// rawClient speaks just enough MQTT 3.1.1 to choose its packet ids.
type rawClient struct {
	t       *testing.T
	c       net.Conn
	rd      *bufio.Reader
	present bool // CONNACK's session present
}

func dialRaw(t *testing.T, addr, id string, clean bool) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &rawClient{t: t, c: c, rd: bufio.NewReader(c)}
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 60}, str(id)...)
	r.send(0x10, body)
	if typ, b := r.next(); typ != 0x20 || b[1] != 0 {
		t.Fatalf("CONNACK: %x % x", typ, b)
	} else {
		r.present = b[0]&1 == 1
	}
	return r
}

func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func pid(id uint16) []byte { return []byte{byte(id >> 8), byte(id)} }

func (r *rawClient) send(header byte, body []byte) {
	r.t.Helper()
	b := []byte{header}
	for n := len(body); ; {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	if _, err := r.c.Write(append(b, body...)); err != nil {
		r.t.Fatal(err)
	}
}

// next reads one packet: its first byte's type nibble (shifted) and body.
func (r *rawClient) next() (byte, []byte) {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := r.rd.ReadByte()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	n, mul := 0, 1
	for {
		d, err := r.rd.ReadByte()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.rd, body); err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return h & 0xf0, body
}

// publishID returns the packet id of a QoS 1 PUBLISH body.
func publishID(b []byte) uint16 {
	tl := int(binary.BigEndian.Uint16(b))
	return binary.BigEndian.Uint16(b[2+tl:])
}

// The client's packet ids and the broker's are separate (MQTT 3.1.1
// §2.3.1). mochi keeps one in-flight map for both directions, so a
// client's SUBSCRIBE or PUBLISH with an id the broker was using for a
// message to the client was refused (SUBACK 0x80 / v5 0x91), or deleted
// the broker's message from its in-flight map: not resent on reconnect.
func TestClientPacketIDsIndependentOfBrokers(t *testing.T) {
	b, err := broker.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r := dialRaw(t, b.Addr(), "ids", false)
	r.send(0x82, append(append(pid(1), str("ids/down")...), 1))
	if typ, body := r.next(); typ != 0x90 || body[2] != 1 {
		t.Fatalf("SUBACK: %x % x", typ, body)
	}
	if err := b.Publish("ids/down", []byte("kept"), false, 1); err != nil {
		t.Fatal(err)
	}
	typ, body := r.next()
	if typ != 0x30 {
		t.Fatalf("want PUBLISH, got %x", typ)
	}
	id := publishID(body) // not acknowledged yet

	// The client's SUBSCRIBE with the same id is its own business.
	r.send(0x82, append(append(pid(id), str("ids/other")...), 1))
	if typ, body := r.next(); typ != 0x90 || body[2] != 1 {
		t.Fatalf("SUBSCRIBE with the broker's in-flight id %d: SUBACK % x, want QoS 1 granted", id, body)
	}
	// So is its QoS 1 PUBLISH with that id.
	r.send(0x32, append(append(str("ids/up"), pid(id)...), 'x'))
	if typ, body := r.next(); typ != 0x40 || binary.BigEndian.Uint16(body) != id {
		t.Fatalf("PUBACK: %x % x", typ, body)
	}
	// The broker's message is still in flight: a reconnect resends it.
	_ = r.c.Close()
	r2 := dialRaw(t, b.Addr(), "ids", false)
	if !r2.present {
		t.Fatal("reconnect: no session present")
	}
	typ, body = r2.next()
	if typ != 0x30 || publishID(body) != id || string(body[len(body)-4:]) != "kept" {
		t.Fatalf("after reconnect: %x % x, want PUBLISH %d kept again", typ, body, id)
	}
}
