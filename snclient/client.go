package snclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// Defaults of Options.
const (
	DefaultKeepAlive     = 60 * time.Second
	DefaultRetryInterval = 10 * time.Second // Tretry (spec §7.2: 10-15 s)
	DefaultRetryCount    = 3                // Nretry (spec §7.2: 3-5)
)

// Errors of Client. ErrTimeout (retransmissions exhausted) is shared with
// Conn. A rejection by the gateway is returned as an error wrapping the
// snpacket.ReturnCode: test it with errors.Is(err,
// snpacket.RejectedCongestion) or errors.As.
var (
	// ErrNotConnected is returned by calls that need an active connection
	// (Connect first), and by Wake when the client is not asleep.
	ErrNotConnected = errors.New("snclient: not connected")
	// ErrDisconnected is returned by calls in progress when the gateway
	// sends an unsolicited DISCONNECT (spec §6.12); Connect again.
	ErrDisconnected = errors.New("snclient: disconnected by the gateway")
	// ErrClosed is returned by calls on a closed client.
	ErrClosed = errors.New("snclient: client closed")
	// ErrInvalidTopic is returned for a topic that cannot be used as asked:
	// empty, a wildcard in a topic name, a malformed filter, or a normal
	// topic name at QoS -1 (which allows only short and predefined topics).
	ErrInvalidTopic = errors.New("snclient: invalid topic")
)

// State is the client's connection state as the client sees it (the states
// of spec §6.14, Fig. 4).
type State int32

// Client states.
const (
	StateDisconnected State = iota // never connected, or DISCONNECT done
	StateActive                    // CONNACK accepted
	StateAsleep                    // DISCONNECT with a sleep duration acknowledged
	StateAwake                     // asleep, PINGREQ sent, collecting buffered messages
	StateLost                      // the gateway stopped answering (or the transport broke)
)

// String returns "disconnected", "active", "asleep", "awake" or "lost".
func (s State) String() string {
	switch s {
	case StateDisconnected:
		return "disconnected"
	case StateActive:
		return "active"
	case StateAsleep:
		return "asleep"
	case StateAwake:
		return "awake"
	case StateLost:
		return "lost"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Will is the will a client leaves with the gateway at Connect.
type Will struct {
	Topic   string
	Payload []byte
	QoS     snpacket.QoS // 0, 1 or 2
	Retain  bool
}

// Message is a PUBLISH received from the gateway.
type Message struct {
	// Topic is the topic name: the registered name of a normal topic id,
	// the two characters of a short topic, the name of a predefined id in
	// Options.Predefined, or PredefinedID(id) for a predefined id the
	// client has no name for.
	Topic       string
	Payload     []byte // owned by the message; shared by every handler it is given to
	QoS         snpacket.QoS
	Retain      bool
	Duplicate   bool // DUP: the gateway may have sent it before
	TopicIDType snpacket.TopicIDType
	TopicID     uint16
}

// Handler receives messages. Handlers run one at a time, in arrival order,
// on a goroutine of the client (never the caller's); they may call the
// client's methods except Close.
type Handler func(Message)

// Options configures a Client. The zero value of every field means "use
// the default".
type Options struct {
	// ClientID identifies the client in CONNECT and in the PINGREQ that
	// wakes it up. Default: "snclient-" and 8 random hex digits.
	ClientID string
	// CleanSession asks the gateway to drop the previous session's
	// subscriptions and will (spec §6.3).
	CleanSession bool
	// KeepAlive is the Duration of CONNECT, whole seconds up to 65535;
	// the client sends PINGREQ when it has sent nothing for 3/4 of it.
	// Default 60s; negative sends 0 (no keep-alive) and never pings.
	KeepAlive time.Duration
	// Will, when set, is given to the gateway at Connect (WILLTOPIC and
	// WILLMSG when prompted).
	Will *Will
	// RetryInterval is Tretry: how long to wait for the gateway's reply
	// before retransmitting (spec §6.13). Default 10s.
	RetryInterval time.Duration
	// RetryCount is Nretry: retransmissions before a call fails with
	// ErrTimeout and the client considers itself disconnected. Default 3;
	// negative means no retransmission.
	RetryCount int
	// Predefined maps predefined topic ids to topic names, as configured
	// on the gateway. Publish and Subscribe use the id for these names.
	Predefined map[uint16]string
	// DefaultHandler receives messages that match no subscription of this
	// client (say, for a session that outlived a previous process).
	// Default: such messages are acknowledged and dropped.
	DefaultHandler Handler
	// OnConnectionLost is called, on the handlers' goroutine, when the
	// client stops being connected without Disconnect: retransmissions
	// exhausted (ErrTimeout), an unsolicited DISCONNECT (ErrDisconnected)
	// or a broken transport.
	OnConnectionLost func(error)
	// Dial opens the transport in DialClient. Default DialUDP; set it to
	// talk DTLS or through anything else datagram-shaped.
	Dial DialFunc
	// Logger receives debug logs of the protocol. Default: none.
	Logger *zap.Logger
}

// Client is an MQTT-SN v1.2 client of one gateway: connection with will,
// topic registration, publish at QoS -1, 0, 1 and 2, subscriptions with
// handlers, sleep and wake-up, keep-alive and retransmission (spec §6).
//
// All methods are safe for concurrent use. Requests of one kind are
// serialized, as the spec requires (one REGISTER, one QoS 1/2 PUBLISH, one
// SUBSCRIBE or UNSUBSCRIBE outstanding at a time); requests of different
// kinds proceed together. Every call gives up when its context ends.
//
// A client owns three goroutines: the reader, the protocol loop that owns
// all state, and the one that runs handlers. Close stops all three.
type Client struct {
	opts     Options // with defaults
	log      *zap.Logger
	tr       Transport
	predef   *topicreg.Predefined
	wireKA   uint16        // KeepAlive in seconds, as sent
	pingIdle time.Duration // send PINGREQ after this long without sending

	ops      chan *op
	abandon  chan *op
	in       chan snpacket.Packet
	readErr  chan error
	dispatch chan func()
	quit     chan struct{}
	state    atomic.Int32

	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// DialClient opens a transport to the gateway at addr (host:port) with
// opts.Dial (UDP by default) and returns a client over it. It does not
// connect: call Connect, or Publish at QoS -1 straight away.
func DialClient(ctx context.Context, addr string, opts Options) (*Client, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	dial := opts.Dial
	if dial == nil {
		dial = DialUDP
	}
	tr, err := dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("snclient: dial %s: %w", addr, err)
	}
	c, err := NewClient(tr, opts)
	if err != nil {
		_ = tr.Close()
		return nil, err
	}
	return c, nil
}

// NewClient returns a client over an open transport, which it owns and
// closes on Close.
func NewClient(tr Transport, opts Options) (*Client, error) {
	if tr == nil {
		return nil, errors.New("snclient: nil transport")
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	predef, err := topicreg.NewPredefined(opts.Predefined)
	if err != nil {
		return nil, fmt.Errorf("snclient: Options.Predefined: %w", err)
	}
	opts.setDefaults()
	if opts.Will != nil {
		w := *opts.Will
		w.Payload = append([]byte(nil), w.Payload...)
		opts.Will = &w
	}
	c := &Client{
		opts:     opts,
		tr:       tr,
		predef:   predef,
		ops:      make(chan *op),
		abandon:  make(chan *op),
		in:       make(chan snpacket.Packet),
		readErr:  make(chan error, 1),
		dispatch: make(chan func()),
		quit:     make(chan struct{}),
	}
	c.log = opts.Logger.With(zap.String("client_id", opts.ClientID))
	if opts.KeepAlive > 0 {
		secs := (opts.KeepAlive + time.Second - 1) / time.Second
		c.wireKA = uint16(secs)
		c.pingIdle = time.Duration(secs) * time.Second * 3 / 4
	}
	c.wg.Add(3)
	go c.read()
	go c.run(newEngine(c))
	go c.runHandlers()
	return c, nil
}

func (o *Options) check() error {
	switch {
	case o.KeepAlive > math.MaxUint16*time.Second:
		return errors.New("snclient: Options.KeepAlive is above 65535s")
	case o.RetryInterval < 0:
		return errors.New("snclient: Options.RetryInterval must be positive")
	}
	if w := o.Will; w != nil {
		if w.Topic == "" || topicreg.HasWildcard(w.Topic) {
			return fmt.Errorf("snclient: Options.Will.Topic %q: %w", w.Topic, ErrInvalidTopic)
		}
		if w.QoS < 0 || w.QoS > 2 {
			return fmt.Errorf("snclient: Options.Will.QoS %d must be 0, 1 or 2", w.QoS)
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.ClientID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.ClientID = "snclient-" + hex.EncodeToString(b[:])
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	switch {
	case o.RetryCount == 0:
		o.RetryCount = DefaultRetryCount
	case o.RetryCount < 0:
		o.RetryCount = 0
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// ClientID returns the client id (generated when Options left it empty).
func (c *Client) ClientID() string { return c.opts.ClientID }

// State returns the connection state.
func (c *Client) State() State { return State(c.state.Load()) }

// Connect sends CONNECT and waits for CONNACK, answering WILLTOPICREQ and
// WILLMSGREQ with Options.Will (spec §6.2). It may be called again to
// reconnect, from any state; from asleep it makes the client active.
func (c *Client) Connect(ctx context.Context) error {
	_, err := c.do(ctx, &op{kind: kindConnect})
	return err
}

// Register registers a normal topic name and returns its topic id
// (spec §6.5). Publish registers by itself; Register is for callers that
// want the id or want to register ahead of time.
func (c *Client) Register(ctx context.Context, topic string) (uint16, error) {
	if !validTopicName(topic) || isPredefinedID(topic) {
		return 0, fmt.Errorf("snclient: register %s: %w", topicLabel(topic), ErrInvalidTopic)
	}
	r, err := c.do(ctx, &op{kind: kindRegister, topic: topic})
	return r.id, err
}

// Publish publishes payload to topic at qos (-1, 0, 1 or 2) and, at QoS 1
// and 2, waits for the end of the exchange (PUBACK, or PUBREC, PUBREL and
// PUBCOMP). The topic is sent as a predefined id when it is
// PredefinedID(id) or a name of Options.Predefined, as a short topic when
// it has two characters, and otherwise as a normal topic id, registered
// first when the client has none for it (and again if the gateway rejects
// the id as invalid).
//
// QoS -1 needs no connection (spec §6.8) and allows only predefined and
// short topics. payload must not be modified until Publish returns.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte, qos snpacket.QoS, retain bool) error {
	if qos < snpacket.QoSMinusOne || qos > snpacket.QoS2 {
		return fmt.Errorf("snclient: publish: invalid %v", qos)
	}
	if !isPredefinedID(topic) && !validTopicName(topic) {
		return fmt.Errorf("snclient: publish %s: %w", topicLabel(topic), ErrInvalidTopic)
	}
	k := kindPublish
	if qos <= snpacket.QoS0 {
		k = kindNow
	}
	reRegistered := false
	for range 3 {
		_, err := c.do(ctx, &op{kind: k, topic: topic, payload: payload, qos: qos, retain: retain})
		switch {
		case errors.Is(err, errNeedRegister):
		case errors.Is(err, snpacket.RejectedInvalidTopicID) && !reRegistered && c.normalTopic(topic):
			reRegistered = true
		default:
			return err
		}
		if _, err := c.Register(ctx, topic); err != nil {
			return err
		}
	}
	return fmt.Errorf("snclient: publish %s: topic id lost again after registering", topicLabel(topic))
}

// Subscribe subscribes to filter at qos (0, 1 or 2) and calls handler for
// each message that matches it (spec §6.9). filter is a topic name, a
// filter with wildcards, a two-character short topic, a name of
// Options.Predefined, or PredefinedID(id). A nil handler sends the
// messages to Options.DefaultHandler. Subscribing to the same filter again
// replaces its handler.
func (c *Client) Subscribe(ctx context.Context, filter string, qos snpacket.QoS, handler Handler) error {
	if qos < snpacket.QoS0 || qos > snpacket.QoS2 {
		return fmt.Errorf("snclient: subscribe %s: invalid %v", topicLabel(filter), qos)
	}
	if !isPredefinedID(filter) && !topicreg.ValidFilter(filter) {
		return fmt.Errorf("snclient: subscribe %s: %w", topicLabel(filter), ErrInvalidTopic)
	}
	_, err := c.do(ctx, &op{kind: kindSubscribe, topic: filter, qos: qos, handler: handler})
	return err
}

// Unsubscribe ends the subscription to filter, given as to Subscribe.
func (c *Client) Unsubscribe(ctx context.Context, filter string) error {
	if !isPredefinedID(filter) && !topicreg.ValidFilter(filter) {
		return fmt.Errorf("snclient: unsubscribe %s: %w", topicLabel(filter), ErrInvalidTopic)
	}
	_, err := c.do(ctx, &op{kind: kindSubscribe, topic: filter, unsubscribe: true})
	return err
}

// Ping sends PINGREQ and waits for PINGRESP (spec §6.11). The client pings
// by itself for keep-alive; Ping is for checking the gateway on demand.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, &op{kind: kindPing})
	return err
}

// Sleep sends DISCONNECT with a sleep duration (whole seconds, 1 to
// 65535) and waits for the gateway's DISCONNECT (spec §6.14). The gateway
// buffers messages for the client until it wakes up; Wake must be called
// before d runs out, or the gateway considers the client lost.
func (c *Client) Sleep(ctx context.Context, d time.Duration) error {
	secs := (d + time.Second - 1) / time.Second
	if secs < 1 || secs > math.MaxUint16 {
		return fmt.Errorf("snclient: sleep duration %v must be between 1s and 65535s", d)
	}
	_, err := c.do(ctx, &op{kind: kindDisconnect, sleep: uint16(secs)})
	return err
}

// Wake sends PINGREQ with the client id from the asleep state and handles
// what the gateway buffered (REGISTER and PUBLISH, answered and given to
// the handlers) until PINGRESP, when the client is asleep again
// (spec §6.14). It returns the number of messages received; every one of
// them has been given to its handlers when Wake returns. When the gateway
// does not answer, Wake fails with ErrTimeout and the client stays asleep.
func (c *Client) Wake(ctx context.Context) (int, error) {
	r, err := c.do(ctx, &op{kind: kindPing, wake: true})
	return r.n, err
}

// Disconnect sends DISCONNECT and waits for the gateway's DISCONNECT
// (spec §6.12). The client can Connect again afterwards.
func (c *Client) Disconnect(ctx context.Context) error {
	_, err := c.do(ctx, &op{kind: kindDisconnect})
	return err
}

// UpdateWillTopic replaces the will topic, QoS and retain flag stored at
// the gateway (WILLTOPICUPD, spec §6.4); an empty topic deletes the will.
// A later Connect uses the new will.
func (c *Client) UpdateWillTopic(ctx context.Context, topic string, qos snpacket.QoS, retain bool) error {
	if topicreg.HasWildcard(topic) {
		return fmt.Errorf("snclient: will topic %q: %w", topic, ErrInvalidTopic)
	}
	if qos < 0 || qos > 2 {
		return fmt.Errorf("snclient: will: invalid %v", qos)
	}
	_, err := c.do(ctx, &op{kind: kindWillTopic, topic: topic, qos: qos, retain: retain})
	return err
}

// UpdateWillMessage replaces the will message stored at the gateway
// (WILLMSGUPD, spec §6.4). A later Connect uses the new message.
func (c *Client) UpdateWillMessage(ctx context.Context, payload []byte) error {
	_, err := c.do(ctx, &op{kind: kindWillMsg, payload: append([]byte(nil), payload...)})
	return err
}

// Close stops the client and closes its transport without telling the
// gateway (call Disconnect first for that; without it the gateway will
// publish the will once the keep-alive runs out). Calls in progress fail
// with ErrClosed. Close waits for the client's goroutines, including a
// handler that is running, so a handler must not call it. It is
// idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.quit)
		c.closeErr = c.tr.Close()
		c.wg.Wait()
	})
	return c.closeErr
}

// do submits o to the protocol loop and waits for its result.
func (c *Client) do(ctx context.Context, o *op) (result, error) {
	o.res = make(chan result, 1)
	select {
	case c.ops <- o:
	case <-ctx.Done():
		return result{}, ctx.Err()
	case <-c.quit:
		return result{}, ErrClosed
	}
	select {
	case r := <-o.res:
		return r, r.err
	case <-ctx.Done():
		select {
		case c.abandon <- o:
		case <-c.quit:
		}
		return result{}, ctx.Err()
	case <-c.quit:
		return result{}, ErrClosed
	}
}

// normalTopic reports whether topic is sent as a normal topic id.
func (c *Client) normalTopic(topic string) bool {
	if _, ok := c.predef.ID(topic); ok || isPredefinedID(topic) {
		return false
	}
	_, short := snpacket.ShortTopicID(topic)
	return !short
}
