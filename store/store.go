// Package store keeps what the gateway promised its nodes across a restart:
// each node's session (ClientId, flags, timers, state, address, will, topic
// registrations, subscriptions, the downlink message in flight), its sleep
// buffer, and its QoS 2 receive state. The session engine writes a Batch at
// the points where the protocol says something is safe (before PUBREC,
// before acknowledging the broker's PUBLISH) and reads everything back with
// Load at start.
//
// Two implementations: Nop (store.path empty: nothing survives a restart)
// and Bolt, a single-instance file on go.etcd.io/bbolt with group commit. A
// store shared by several gateway instances is a third implementation of
// the same interface; the engine does not change.
//
// The package knows nothing of sockets, MQTT libraries or the engine's
// types: records are plain values.
package store

import (
	"context"
	"errors"
	"time"
)

// Store persists node records. Commit and Load may be called from any
// goroutine.
type Store interface {
	// Load calls fn for every stored node, with its buffer (oldest first)
	// and QoS 2 state. It is called once, at start, before any Commit.
	Load(fn func(*Record) error) error
	// Commit applies b atomically and returns once it is durable (or
	// failed: nothing of b is stored then). Concurrent commits are grouped
	// into one transaction. If ctx ends first, Commit returns ctx.Err()
	// and b may or may not be stored.
	Commit(ctx context.Context, b *Batch) error
	// Close waits for commits in progress and releases the store.
	Close() error
}

// AsyncCommitter is implemented by stores that can take several commits
// from one caller without waiting for each (Bolt): done is called once b
// is durable, from the store's goroutine, and must not block; commits are
// applied in call order.
type AsyncCommitter interface {
	CommitAsync(b *Batch, done func(error)) error
}

// ErrClosed is returned by Commit after Close.
var ErrClosed = errors.New("store: closed")

// State is a node's state as stored.
type State uint8

// Node states. A node that disconnected (CleanSession=0) is Disconnected;
// one whose keep-alive or sleep expired is Lost.
const (
	Active State = iota + 1
	Asleep
	Disconnected
	Lost
)

func (s State) String() string {
	switch s {
	case Active:
		return "active"
	case Asleep:
		return "asleep"
	case Disconnected:
		return "disconnected"
	case Lost:
		return "lost"
	}
	return "unknown"
}

// Message is an application message: a will, a buffered downlink message
// or the one in flight to the node.
type Message struct {
	Topic   string
	Payload []byte
	QoS     int8 // -1, 0, 1 or 2
	Retain  bool
}

// Registration maps a topic id to a topic name for one node.
type Registration struct {
	ID   uint16
	Name string
	// Acked: the node knows the id (it REGISTERed the name, or
	// acknowledged the gateway's REGISTER); otherwise the gateway assigned
	// it for downlink and registers it before the next PUBLISH.
	Acked bool
}

// Subscription is one of a node's subscriptions.
type Subscription struct {
	Filter      string
	QoS         int8
	TopicIDType uint8  // as in the node's SUBSCRIBE: 0 name, 1 predefined, 2 short
	TopicID     uint16 // predefined id or short name, when TopicIDType says so
}

// Node is a node's session, everything but its buffer and QoS 2 state.
type Node struct {
	ClientID      string
	CleanSession  bool
	KeepAlive     time.Duration
	SleepDuration time.Duration
	State         State
	Addr          string // last address the node was seen at
	Will          *Message
	Registrations []Registration
	Subscriptions []Subscription
	// Inflight is the downlink message sent to the node and not yet
	// acknowledged, with the MsgId it was sent with; nil if none.
	Inflight      *Message
	InflightMsgID uint16
	// NextMsgID is the next MsgId the gateway will use towards the node.
	NextMsgID uint16
	// Upstream is what the upstream needs to resume the node's broker
	// session, opaque to the store.
	Upstream []byte
}

// Buffered is a message held for a node, with its position in the buffer.
type Buffered struct {
	Seq uint64
	Msg Message
}

// QoS2 is a QoS 2 MsgId received from a node and not yet released by its
// PUBREL. Forwarded says whether the broker has the message: a retry of an
// unforwarded one must wait for the forwarding's outcome, a retry of a
// forwarded one is answered PUBREC without reaching the broker again.
type QoS2 struct {
	MsgID     uint16
	Forwarded bool
	// UpstreamID is the packet identifier the message has on the broker
	// connection, 0 if none yet (see Packet).
	UpstreamID uint16
}

// Packet is a packet the upstream session sent to the broker and must
// resend (with DUP) after a restart if the broker kept the session: a QoS 2
// PUBLISH not yet acknowledged with PUBREC, or the PUBREL that follows.
// Data is opaque to the store.
type Packet struct {
	ID   uint16
	Data []byte
}

// Record is everything stored for one node.
type Record struct {
	Node    Node
	Buffer  []Buffered // by Seq
	QoS2    []QoS2
	Packets []Packet // by ID
}

// Batch is a set of writes applied together. The zero value is empty and
// ready to use. Values given to a Batch must not be changed until Commit
// returns.
type Batch struct {
	ops []op
}

type opKind uint8

const (
	opPutNode opKind = iota + 1
	opDeleteNode
	opPutMessage
	opDeleteMessage
	opPutQoS2
	opDeleteQoS2
	opPutPacket
	opDeletePacket
)

type op struct {
	kind     opKind
	clientID string
	node     *Node
	seq      uint64
	msg      Message
	qos2     QoS2
	data     []byte
}

// PutNode stores n, replacing the node's previous record.
func (b *Batch) PutNode(n *Node) {
	b.ops = append(b.ops, op{kind: opPutNode, clientID: n.ClientID, node: n})
}

// DeleteNode removes a node with its buffer and QoS 2 state.
func (b *Batch) DeleteNode(clientID string) {
	b.ops = append(b.ops, op{kind: opDeleteNode, clientID: clientID})
}

// PutMessage stores m at position seq of the node's buffer.
func (b *Batch) PutMessage(clientID string, seq uint64, m Message) {
	b.ops = append(b.ops, op{kind: opPutMessage, clientID: clientID, seq: seq, msg: m})
}

// DeleteMessage removes position seq of the node's buffer.
func (b *Batch) DeleteMessage(clientID string, seq uint64) {
	b.ops = append(b.ops, op{kind: opDeleteMessage, clientID: clientID, seq: seq})
}

// PutQoS2 records a node's QoS 2 MsgId and whether it was forwarded.
func (b *Batch) PutQoS2(clientID string, q QoS2) {
	b.ops = append(b.ops, op{kind: opPutQoS2, clientID: clientID, qos2: q})
}

// DeleteQoS2 forgets a node's QoS 2 MsgId (after its PUBREL).
func (b *Batch) DeleteQoS2(clientID string, msgID uint16) {
	b.ops = append(b.ops, op{kind: opDeleteQoS2, clientID: clientID, qos2: QoS2{MsgID: msgID}})
}

// PutPacket stores an upstream packet of the node's broker session.
func (b *Batch) PutPacket(clientID string, id uint16, data []byte) {
	b.ops = append(b.ops, op{kind: opPutPacket, clientID: clientID, qos2: QoS2{UpstreamID: id}, data: data})
}

// DeletePacket forgets an upstream packet (the broker completed it).
func (b *Batch) DeletePacket(clientID string, id uint16) {
	b.ops = append(b.ops, op{kind: opDeletePacket, clientID: clientID, qos2: QoS2{UpstreamID: id}})
}

// Append adds the writes of o after those of b.
func (b *Batch) Append(o *Batch) { b.ops = append(b.ops, o.ops...) }

// Len is the number of writes in b.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties b for reuse.
func (b *Batch) Reset() { b.ops = b.ops[:0] }

// Nop is the store used when store.path is empty: it keeps nothing, so a
// restart loses every session. Commit succeeds at once.
type Nop struct{}

var _ Store = Nop{}

// Load finds nothing.
func (Nop) Load(func(*Record) error) error { return nil }

// Commit stores nothing.
func (Nop) Commit(ctx context.Context, _ *Batch) error { return ctx.Err() }

// Close does nothing.
func (Nop) Close() error { return nil }
