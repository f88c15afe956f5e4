package store

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"
)

// Records are encoded in a compact binary form: a format byte, then fields
// in a fixed order, strings and byte slices prefixed by their length as a
// uvarint. A reader refuses a format it does not know rather than guess.

const (
	nodeFormat    = 1
	messageFormat = 1
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("store: corrupt record")

// Node flag bits.
const (
	flagClean = 1 << iota
	flagWill
	flagInflight
)

func appendNode(b []byte, n *Node) []byte {
	b = append(b, nodeFormat)
	b = appendString(b, n.ClientID)
	var flags byte
	if n.CleanSession {
		flags |= flagClean
	}
	if n.Will != nil {
		flags |= flagWill
	}
	if n.Inflight != nil {
		flags |= flagInflight
	}
	b = append(b, flags, byte(n.State))
	b = binary.AppendUvarint(b, uint64(n.KeepAlive/time.Millisecond))
	b = binary.AppendUvarint(b, uint64(n.SleepDuration/time.Millisecond))
	b = appendString(b, n.Addr)
	if n.Will != nil {
		b = appendMessageFields(b, n.Will)
	}
	b = binary.AppendUvarint(b, uint64(len(n.Registrations)))
	for _, r := range n.Registrations {
		b = binary.BigEndian.AppendUint16(b, r.ID)
		b = appendString(b, r.Name)
		b = appendBool(b, r.Acked)
	}
	b = binary.AppendUvarint(b, uint64(len(n.Subscriptions)))
	for _, s := range n.Subscriptions {
		b = appendString(b, s.Filter)
		b = append(b, byte(s.QoS), s.TopicIDType)
		b = binary.BigEndian.AppendUint16(b, s.TopicID)
	}
	if n.Inflight != nil {
		b = binary.BigEndian.AppendUint16(b, n.InflightMsgID)
		b = appendMessageFields(b, n.Inflight)
	}
	b = binary.BigEndian.AppendUint16(b, n.NextMsgID)
	return appendBytes(b, n.Upstream)
}

func decodeNode(b []byte) (*Node, error) {
	d := decoder{b: b}
	if f := d.byte(); f != nodeFormat {
		return nil, formatError("node", f)
	}
	n := &Node{ClientID: d.string()}
	flags := d.byte()
	n.CleanSession = flags&flagClean != 0
	n.State = State(d.byte())
	n.KeepAlive = d.millis()
	n.SleepDuration = d.millis()
	n.Addr = d.string()
	if flags&flagWill != 0 {
		n.Will = d.message()
	}
	if c := d.count(); c > 0 {
		n.Registrations = make([]Registration, c)
		for i := range n.Registrations {
			n.Registrations[i] = Registration{ID: d.uint16(), Name: d.string(), Acked: d.bool()}
		}
	}
	if c := d.count(); c > 0 {
		n.Subscriptions = make([]Subscription, c)
		for i := range n.Subscriptions {
			n.Subscriptions[i] = Subscription{Filter: d.string(), QoS: int8(d.byte()), TopicIDType: d.byte(), TopicID: d.uint16()}
		}
	}
	if flags&flagInflight != 0 {
		n.InflightMsgID = d.uint16()
		n.Inflight = d.message()
	}
	n.NextMsgID = d.uint16()
	n.Upstream = d.bytes()
	return n, d.finish()
}

func appendMessage(b []byte, m *Message) []byte {
	return appendMessageFields(append(b, messageFormat), m)
}

func decodeMessage(b []byte) (Message, error) {
	d := decoder{b: b}
	if f := d.byte(); f != messageFormat {
		return Message{}, formatError("message", f)
	}
	m := d.message()
	if err := d.finish(); err != nil {
		return Message{}, err
	}
	return *m, nil
}

func appendMessageFields(b []byte, m *Message) []byte {
	b = appendString(b, m.Topic)
	b = appendBytes(b, m.Payload)
	b = append(b, byte(m.QoS))
	return appendBool(b, m.Retain)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func formatError(what string, f byte) error {
	return &corruptError{what: what, format: f}
}

type corruptError struct {
	what   string
	format byte
}

func (e *corruptError) Error() string {
	return "store: corrupt record: unknown " + e.what + " format " + strconv.Itoa(int(e.format))
}

func (e *corruptError) Unwrap() error { return errCorrupt }

// decoder reads fields in order; the first error sticks and every later
// read returns a zero value, so decoding code needs one check at the end.
// It never allocates more than the input holds.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail()
	return false
}

func (d *decoder) uint16() uint16 {
	if len(d.b) < 2 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) millis() time.Duration {
	v := d.uvarint()
	if v > math.MaxInt64/uint64(time.Millisecond) {
		d.fail()
		return 0
	}
	return time.Duration(v) * time.Millisecond
}

// count reads a number of elements; each takes at least one byte, so a
// count larger than what is left is corrupt (and is not allocated).
func (d *decoder) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *decoder) raw() []byte {
	v := d.uvarint()
	if v > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:v:v]
	d.b = d.b[v:]
	return p
}

func (d *decoder) string() string { return string(d.raw()) }

// bytes returns a copy (bbolt's memory is valid only inside a
// transaction), or nil for an empty field.
func (d *decoder) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) message() *Message {
	m := &Message{Topic: d.string(), Payload: d.bytes()}
	m.QoS = int8(d.byte())
	m.Retain = d.bool()
	if m.QoS < -1 || m.QoS > 2 {
		d.fail()
	}
	return m
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt // trailing bytes
	}
	return d.err
}
