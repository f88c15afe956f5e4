package gateway

import (
	"context"
	"errors"
	"time"
)

// Message is an application message crossing the gateway, in MQTT terms.
// QoS is 0, 1 or 2 (an MQTT-SN QoS -1 publish is forwarded at QoS 0).
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// SessionOptions describe the upstream MQTT session opened for one node.
type SessionOptions struct {
	// ClientID is the MQTT client identifier (the node's ClientId plus any
	// configured prefix).
	ClientID string
	// CleanStart maps the node's CleanSession flag.
	CleanStart bool
	// SessionExpiry is how long the broker keeps the session after the
	// connection ends (used when CleanStart is false).
	SessionExpiry time.Duration
	// Will is the node's Last Will, or nil.
	Will *Message
	// Auth holds the credentials the node presented (MQTT-SN AUTH with
	// the PLAIN method), or nil. When set, the upstream logs in with them
	// instead of its configured credentials.
	Auth *Credentials
	// Packets, if not nil, is told of the session's QoS 2 packets to the
	// broker, so that they survive a restart of the gateway (see
	// PacketStore). Upstreams that cannot do that ignore it.
	Packets PacketStore
	// Resume holds packets Put in an earlier life of the session (before
	// a restart): they are resent with DUP when the broker kept the
	// session, as if the connection had only dropped.
	Resume []StoredPacket
	// Subscriptions are the node's subscriptions (filter to QoS) as the
	// gateway kept them: with CleanStart false, the upstream subscribes
	// to them again when the broker did not keep the session.
	Subscriptions map[string]byte
	// Ended, if not nil, is called once, from an upstream goroutine, when
	// the session ends by itself (never after Close), with the reason:
	// errors.Is(err, ErrTakenOver) when another connection took the
	// broker session over (the node moved to another gateway). It must
	// not block.
	Ended func(err error)
}

// Credentials are a user name and password for the broker.
type Credentials struct {
	Username string
	Password []byte
}

// ErrTakenOver is reported through SessionOptions.Ended when the broker
// handed the session to another connection with the same ClientID: the
// node connected elsewhere, so the session is not resumed.
var ErrTakenOver = errors.New("gateway: upstream session taken over by another connection")

// IsPermanent reports whether err, from Upstream.Open, is a refusal that
// retrying will not fix (bad credentials, not authorized, banned, an
// unsupported protocol version, a rejected ClientID). The gateway answers
// such a CONNECT with "not supported" (0x03) instead of congestion, so that
// the node stops retrying. An error is permanent if it, or one it wraps,
// has a method Permanent() bool that returns true.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// Upstream opens MQTT sessions on a broker. The gateway never sees the MQTT
// library behind it; the paho adapter lives in package upstream.
type Upstream interface {
	// Open connects one upstream session. deliver is called for every
	// message the broker sends to the session, from the session's own
	// goroutine; it must not block for long. Open returns once the session
	// is connected, or with an error (the gateway answers the node with
	// CONNACK congestion).
	Open(ctx context.Context, opts SessionOptions, deliver func(Message)) (Session, error)
}

// Session is one upstream MQTT session.
type Session interface {
	// Publish sends msg and returns once the broker acknowledged it at
	// msg.QoS (PUBACK for QoS 1, PUBCOMP for QoS 2; at once for QoS 0).
	// It returns an error if the connection is down or the broker refused.
	Publish(ctx context.Context, msg Message) error
	// Subscribe subscribes to filter at qos and returns the granted QoS.
	Subscribe(ctx context.Context, filter string, qos byte) (byte, error)
	// Unsubscribe removes the subscription to filter.
	Unsubscribe(ctx context.Context, filter string) error
	// Close ends the session cleanly: the broker does not publish the will.
	Close(ctx context.Context) error
	// Done is closed when the session ended and will not come back
	// (after Close, or when reconnecting gave up).
	Done() <-chan struct{}
}

// PacketStore keeps an upstream session's QoS 2 packets to the broker
// across a restart. The upstream calls Put with each QoS 2 PUBLISH before
// it writes it, and with the PUBREL that replaces it once the broker
// answered PUBREC; Put returns once the packet is stored (an error: the
// packet must not be sent). Delete follows the broker's PUBCOMP; Reset
// means the broker lost the session, and every packet with it. Methods are
// called from the upstream's goroutines and may block for a disk write.
type PacketStore interface {
	Put(id uint16, packet []byte) error
	Delete(id uint16)
	Reset()
}

// StoredPacket is a packet given to PacketStore.Put: its packet identifier
// and its MQTT encoding.
type StoredPacket struct {
	ID   uint16
	Data []byte
}
