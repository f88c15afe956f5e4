package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// takeoverLimit is how many connections in a row may be closed by the
// broker right after a successful CONNACK before an MQTT 3.1.1 session
// concludes that another connection with its ClientID keeps taking the
// session over (3.1.1 has no DISCONNECT to say so) and stops
// reconnecting.
const takeoverLimit = 3

// session311 is one upstream MQTT 3.1.1 session, the counterpart of
// session (MQTT 5) with the same contract. It keeps its own session state
// across connections: QoS 1/2 publishes awaiting their acknowledgement
// (resent with their packet identifiers after a reconnect when the broker
// kept the session, MQTT 3.1.1 §4.4) and the identifiers of inbound QoS 2
// messages awaiting PUBREL.
type session311 struct {
	up       *Upstream
	opts     gateway.SessionOptions
	clientID string
	deliver  func(gateway.Message)
	log      *zap.Logger
	// clean is the CleanSession flag of every CONNECT: a clean node's
	// broker session ends with each connection; a persistent one
	// (CleanSession=0) is resumed by every reconnect.
	clean   bool
	connect packets.Packet // the CONNECT packet, reused by reconnects
	qosCap  byte

	mu        sync.Mutex
	cur       *conn311 // nil while disconnected or closing
	nextID    uint16
	seq       uint64
	out       map[uint16]*outFlight           // QoS 1/2 publishes awaiting PUBACK/PUBCOMP
	acks      map[uint16]chan *packets.Packet // SUBSCRIBE/UNSUBSCRIBE awaiting SUBACK/UNSUBACK
	inQoS2    map[uint16]struct{}             // inbound QoS 2 awaiting PUBREL
	subs      map[string]byte                 // filter -> requested QoS
	needResub bool
	closing   bool
	endErr    error // set when the session ended by itself (taken over)
	abort     func()
	drops     int  // connections in a row the broker closed right after CONNACK
	warnedQoS bool // the broker's PUBACK for a QoS 2 PUBLISH was logged

	// epochCtx ends when the session state is discarded (the broker lost
	// the session, or a clean session's connection ended): publishes
	// awaiting an acknowledgement fail then, since nothing will resend
	// them.
	epochCtx context.Context //nolint:containedctx // a cancellation signal, as in session
	endEpoch context.CancelCauseFunc

	wg   sync.WaitGroup // reader goroutines and the reconnect loop
	done chan struct{}
}

// outFlight is one outbound QoS 1/2 PUBLISH in the session state.
type outFlight struct {
	pk       packets.Packet
	seq      uint64 // resend order
	released bool   // QoS 2: PUBREC received, PUBREL sent
	done     chan error
}

var _ gateway.Session = (*session311)(nil)

func newSession311(u *Upstream, opts gateway.SessionOptions, deliver func(gateway.Message)) *session311 {
	clientID := u.cfg.ClientIDPrefix + opts.ClientID
	s := &session311{
		up:       u,
		opts:     opts,
		clientID: clientID,
		deliver:  deliver,
		log:      u.log.With(zap.String("client_id", clientID), zap.String("protocol", Protocol311)),
		clean:    opts.CleanStart || opts.SessionExpiry <= 0,
		qosCap:   u.cfg.maxQoS(),
		out:      make(map[uint16]*outFlight),
		acks:     make(map[uint16]chan *packets.Packet),
		inQoS2:   make(map[uint16]struct{}),
		subs:     make(map[string]byte),
		done:     make(chan struct{}),
	}
	if !opts.CleanStart {
		for f, q := range opts.Subscriptions {
			s.subs[f] = min(q, u.cfg.maxQoS())
		}
	}
	s.epochCtx, s.endEpoch = context.WithCancelCause(context.Background())
	cp := packets.ConnectParams{
		ProtocolName:     []byte("MQTT"),
		ClientIdentifier: clientID,
		Keepalive:        uint16(u.cfg.KeepAlive / time.Second),
		Clean:            s.clean,
	}
	if user, pass := u.credentials(opts); user != "" || pass != nil {
		cp.Username, cp.UsernameFlag = []byte(user), true
		if pass != nil {
			cp.Password, cp.PasswordFlag = pass, true
		}
	}
	// MQTT 3.1.1 has no will delay: the will is registered as it is, so
	// the broker publishes it if the gateway dies, and also if the broker
	// link drops without DISCONNECT (see README, Will). Empty wills are
	// not registered, as in session.
	if w := opts.Will; w != nil && len(w.Payload) > 0 {
		cp.WillFlag, cp.WillTopic, cp.WillPayload = true, w.Topic, w.Payload
		cp.WillQos, cp.WillRetain = min(w.QoS, s.qosCap), w.Retain
	}
	s.connect = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: cp}
	return s
}

// dial makes one connection with the session's CONNECT.
func (s *session311) dial(ctx context.Context, initial bool) (*conn311, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.up.cfg.ConnectTimeout)
	defer cancel()
	pk := s.connect // encoding writes into the copy's header only
	c, present, err := s.up.dial311(ctx, &pk)
	if err != nil {
		s.up.counters.connectFailures.Add(1)
		return nil, false, err
	}
	c.initial = initial
	s.up.counters.connects.Add(1)
	s.log.Debug("upstream connected", zap.Bool("clean_session", s.clean), zap.Bool("session_present", present))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		c.readLoop(func(pk *packets.Packet) error { return s.handle(c, pk) }, func(err error) { s.lost(c, err) })
	}()
	c.startPinger()
	return c, present, nil
}

// open makes the first connection (Upstream.Open).
func (s *session311) open(ctx context.Context) error {
	c, present, err := s.dial(ctx, true)
	if err != nil {
		return err
	}
	if !s.opts.CleanStart && !present && len(s.subs) > 0 {
		// The broker did not keep the session (a gateway restart, say):
		// subscribe again to what the gateway kept.
		if err := s.resubscribe(ctx, c); err != nil {
			c.disconnect()
			return err
		}
	}
	if len(s.opts.Resume) > 0 {
		if err := s.resume(c, present); err != nil {
			c.disconnect()
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-c.done:
		return fmt.Errorf("upstream: connect %s: %w", s.up.ep.hostPort, errConnDropped)
	default:
	}
	s.cur = c
	s.up.counters.connected.Add(1)
	return nil
}

// lost is called once per connection when its reader ended. For the
// current connection it starts the reconnect loop, or ends the session
// when the broker keeps closing fresh connections (another connection
// with the same ClientID takes the session over each time).
func (s *session311) lost(c *conn311, err error) {
	s.mu.Lock()
	if s.cur != c {
		s.mu.Unlock()
		return // not installed yet (a reconnect attempt sees c.done), or Close took it
	}
	s.cur = nil
	s.up.counters.connected.Add(-1)
	s.up.counters.lost.Add(1)
	if s.clean {
		s.discardStateLocked() // the broker dropped the session with the connection
	}
	if s.closing {
		s.mu.Unlock()
		return
	}
	if s.countDropLocked(c, err) {
		s.endTakenOverLocked()
		return // unlocked by endTakenOverLocked
	}
	s.log.Warn("upstream connection lost; reconnecting", zap.Error(err))
	ctx, cancel := context.WithCancel(context.Background())
	s.abort = cancel
	s.wg.Add(1)
	go s.reconnectLoop(ctx, cancel)
	s.mu.Unlock()
}

// countDropLocked counts c's end towards takeoverLimit, or resets the
// count, and reports whether the limit is exceeded. Only connections made
// by the reconnect loop count, when the broker closed them (EOF, reset,
// DISCONNECT) within takeoverWindow of their CONNACK.
func (s *session311) countDropLocked(c *conn311, err error) bool {
	closedByBroker := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, errServerDisconnect)
	switch {
	case closedByBroker && !c.initial && time.Since(c.connected) < s.takeoverWindow():
		s.drops++
	default:
		s.drops = 0
	}
	return s.drops > takeoverLimit
}

// endTakenOverLocked ends the session as taken over (s.mu held; unlocks
// it).
func (s *session311) endTakenOverLocked() {
	s.up.counters.takenOver.Add(1)
	s.endLocked(fmt.Errorf("upstream: %s: the broker closed %d connections in a row right after CONNACK: %w",
		s.clientID, s.drops, gateway.ErrTakenOver))
}

// takeoverWindow is how soon after CONNACK a close by the broker counts
// towards takeoverLimit. Two gateways fighting over a ClientID reconnect
// within their backoff, so a connection that lived longer than the
// longest backoff was not taken by such a fight.
func (s *session311) takeoverWindow() time.Duration {
	return max(s.up.cfg.ReconnectBackoffMax, time.Second)
}

// endLocked ends the session by itself (called with s.mu held; unlocks
// it): waiting operations fail, later ones get ErrNotConnected, Done is
// closed and opts.Ended is called once.
func (s *session311) endLocked(err error) {
	s.endErr = err
	s.closing = true
	s.discardStateLocked()
	s.mu.Unlock()
	s.log.Info("upstream session taken over by another connection; not reconnecting", zap.Error(err))
	if s.opts.Ended != nil {
		s.opts.Ended(err)
	}
	go func() {
		s.wg.Wait()
		close(s.done)
	}()
}

// discardStateLocked forgets the session state: the broker has none for
// it any more. Publishes awaiting an acknowledgement fail with
// ErrConnectionLost.
func (s *session311) discardStateLocked() {
	s.endEpoch(ErrConnectionLost)
	s.epochCtx, s.endEpoch = context.WithCancelCause(context.Background())
	clear(s.out)
	clear(s.inQoS2)
	if ps := s.opts.Packets; ps != nil {
		ps.Reset()
	}
}

// reconnectLoop is session.reconnectLoop for MQTT 3.1.1.
func (s *session311) reconnectLoop(ctx context.Context, cancel context.CancelFunc) {
	defer s.wg.Done()
	defer cancel()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for attempt := 1; ; attempt++ {
		if !s.up.awaitReconnect(ctx, t, attempt-1) {
			return
		}
		err := s.reconnectOnce(ctx)
		if err == nil {
			s.up.counters.reconnects.Add(1)
			s.log.Info("upstream reconnected", zap.Int("attempts", attempt))
			return
		}
		if ctx.Err() != nil || errors.Is(err, errTakenOver) {
			return
		}
		s.log.Debug("upstream reconnect failed", zap.Int("attempt", attempt), zap.Error(err))
	}
}

func (s *session311) reconnectOnce(ctx context.Context) error {
	c, present, err := s.dial(ctx, false)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !present {
		s.needResub = true
		s.discardStateLocked()
	}
	resub := s.needResub
	resend := make([]*outFlight, 0, len(s.out))
	for _, of := range s.out {
		resend = append(resend, of)
	}
	s.mu.Unlock()

	if resub {
		if err := s.resubscribe(ctx, c); err != nil {
			select {
			case <-c.done:
				return s.droppedBeforeInstall(c)
			default:
			}
			c.disconnect()
			return err
		}
	}
	// Unacknowledged PUBLISH and PUBREL packets go again, in their
	// original order and with their identifiers [MQTT-4.4.0-1].
	slices.SortFunc(resend, func(a, b *outFlight) int { return cmp.Compare(a.seq, b.seq) })
	for _, of := range resend {
		s.mu.Lock()
		pk, released := of.pk, of.released
		s.mu.Unlock()
		if released {
			pk = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: pk.PacketID}
		} else {
			pk.FixedHeader.Dup = true
		}
		if err := c.write(&pk); err != nil {
			return err
		}
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.disconnect()
		return errReconnectAborted
	}
	select {
	case <-c.done:
		s.mu.Unlock()
		return s.droppedBeforeInstall(c)
	default:
	}
	defer s.mu.Unlock()
	s.cur = c
	s.up.counters.connected.Add(1)
	s.abort = nil
	return nil
}

// droppedBeforeInstall handles a reconnect whose connection the broker
// closed before it was installed (while restoring subscriptions, say): it
// counts towards takeoverLimit like any other.
func (s *session311) droppedBeforeInstall(c *conn311) error {
	<-c.done
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errReconnectAborted
	}
	if s.countDropLocked(c, c.readErr) {
		s.endTakenOverLocked()
		return errTakenOver
	}
	s.mu.Unlock()
	return fmt.Errorf("%w: %w", errConnDropped, c.readErr)
}

// errTakenOver stops the reconnect loop of a session that ended as taken
// over.
var errTakenOver = fmt.Errorf("upstream: reconnect stopped: %w", gateway.ErrTakenOver)

// resubscribe restores every subscription on c (the broker lost the
// session). A refusal (SUBACK 0x80) is logged, not retried.
func (s *session311) resubscribe(ctx context.Context, c *conn311) error {
	s.mu.Lock()
	filters := make(packets.Subscriptions, 0, len(s.subs))
	for f, q := range s.subs {
		filters = append(filters, packets.Subscription{Filter: f, Qos: q})
	}
	s.mu.Unlock()
	for len(filters) > 0 {
		n := min(len(filters), resubscribeBatch)
		batch := filters[:n]
		filters = filters[n:]
		sa, err := s.request(ctx, c, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, Filters: batch})
		if err != nil {
			return fmt.Errorf("upstream: restoring subscriptions: %w", err)
		}
		for i, code := range sa.ReasonCodes {
			if code >= 0x80 && i < len(batch) {
				s.log.Warn("upstream: broker refused restored subscription", zap.String("filter", batch[i].Filter), zap.Uint8("return_code", code))
			}
		}
	}
	s.mu.Lock()
	s.needResub = false
	s.mu.Unlock()
	s.log.Debug("upstream subscriptions restored")
	return nil
}

// Close sends DISCONNECT (the broker discards the will), stops
// reconnecting and releases everything. It returns when done or when ctx
// ends; Done is closed once everything has stopped. Close is idempotent.
func (s *session311) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		c, abort := s.cur, s.abort
		s.cur, s.abort = nil, nil
		if c != nil {
			s.up.counters.connected.Add(-1)
		}
		s.endEpoch(ErrClosed)
		s.mu.Unlock()
		if abort != nil {
			abort()
		}
		// The reader may be inside deliver; wait for it off the caller's
		// goroutine so that ctx bounds Close.
		go func() {
			if c != nil {
				c.disconnect()
			}
			s.wg.Wait()
			s.log.Debug("upstream session closed")
			close(s.done)
		}()
	} else {
		s.mu.Unlock()
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed once the session has ended: after Close, or when another
// connection took the session over (opts.Ended says so).
func (s *session311) Done() <-chan struct{} { return s.done }

// Connected reports whether the session's connection is up now.
func (s *session311) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil
}
