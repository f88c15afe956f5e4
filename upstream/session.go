package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahosession "github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
	"github.com/eclipse/paho.golang/paho/store/memory"
	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// resubscribeBatch is the number of filters per SUBSCRIBE when restoring
// subscriptions after the broker lost the session.
const resubscribeBatch = 64

// session is one upstream MQTT session: the current paho.Client (nil while
// down), the subscriptions to restore, and the paho session state, which
// outlives individual connections so that QoS 1/2 packets in flight are
// resent with their packet identifiers after a reconnect (when the broker
// kept the session).
type session struct {
	up       *Upstream
	opts     gateway.SessionOptions
	clientID string
	deliver  func(gateway.Message)
	log      *zap.Logger
	state    *state.State

	// will is the will registered with the broker (nil if none).
	// wantExpiry is the session expiry the gateway asked for (seconds);
	// sentExpiry is what CONNECT carries: at least Config.WillDelay when
	// a will is registered, so that the broker keeps the session (and
	// holds the delayed will) across a link blip. Close lowers it back to
	// wantExpiry in DISCONNECT.
	will       *paho.WillMessage
	willDelay  uint32
	wantExpiry uint32
	sentExpiry uint32

	mu        sync.Mutex
	cur       *paho.Client    // nil while disconnected or closing
	curExpiry uint32          // session expiry in force for cur (CONNACK may lower it)
	subs      map[string]byte // filter -> requested QoS
	qosCap    byte            // broker.max_qos, lowered by the CONNACK's Maximum QoS
	needResub bool            // the broker lost the session; restore subs
	closing   bool
	abort     func() // cancels the running reconnect loop, or nil

	drops dropRun // connections the broker closed right after CONNACK

	// connCtx ends when the current connection is lost: SUBSCRIBE and
	// UNSUBSCRIBE waiting for an ack fail then (paho does not resend them).
	connCtx context.Context //nolint:containedctx // a cancellation signal, not a request context
	endConn context.CancelCauseFunc
	// epochCtx ends when the paho session state is discarded (the broker
	// lost the session, or the session expiry is 0): QoS 1/2 publishes
	// waiting for an ack fail then, since nothing will resend them.
	epochCtx context.Context //nolint:containedctx // as connCtx
	endEpoch context.CancelCauseFunc

	wg   sync.WaitGroup // the reconnect loop
	done chan struct{}
}

var _ gateway.Session = (*session)(nil)

func newSession(u *Upstream, opts gateway.SessionOptions, deliver func(gateway.Message)) *session {
	clientID := u.cfg.ClientIDPrefix + opts.ClientID
	log := u.log.With(zap.String("client_id", clientID))
	st := state.NewInMemory()
	if opts.Packets != nil {
		st = state.New(newTrackedStore(opts.Packets, opts.Resume), memory.New())
	}
	st.SetErrorLogger(pahoLogger{log: log, level: zap.WarnLevel})
	s := &session{
		up:         u,
		opts:       opts,
		clientID:   clientID,
		deliver:    deliver,
		log:        log,
		state:      st,
		wantExpiry: secondsU32(opts.SessionExpiry),
		subs:       make(map[string]byte),
		done:       make(chan struct{}),
	}
	s.sentExpiry = s.wantExpiry
	if !opts.CleanStart {
		for f, q := range opts.Subscriptions {
			s.subs[f] = min(q, u.cfg.maxQoS())
		}
	}
	// An empty will message is legal in MQTT-SN and MQTT v5, but some
	// brokers (mochi) refuse a CONNECT with an empty will payload. The
	// gateway publishes a lost node's will itself, so such a will is
	// simply not registered with the broker.
	if w := opts.Will; w != nil && len(w.Payload) > 0 {
		s.will = &paho.WillMessage{Topic: w.Topic, Payload: w.Payload, QoS: min(w.QoS, u.cfg.maxQoS()), Retain: w.Retain}
		s.willDelay = secondsU32(u.cfg.WillDelay)
		s.sentExpiry = max(s.wantExpiry, s.willDelay)
	}
	return s
}

// connect dials and performs CONNECT/CONNACK, bounded by ctx and the
// configured ConnectTimeout. On success the client is running but not yet
// installed as s.cur.
func (s *session) connect(ctx context.Context, cleanStart bool) (*paho.Client, *paho.Connack, error) {
	cfg := &s.up.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()

	conn, err := s.up.dial(ctx)
	if err != nil {
		s.up.counters.connectFailures.Add(1)
		return nil, nil, fmt.Errorf("upstream: dial %s: %w", s.up.ep.hostPort, err)
	}

	var cli *paho.Client
	// The callbacks run after cli has shut down (paho closes Done first).
	cli = paho.NewClient(paho.ClientConfig{
		ClientID:          s.clientID,
		Conn:              conn,
		Session:           s.state,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){s.onPublish},
		OnClientError:     func(err error) { s.lost(cli, err) },
		OnServerDisconnect: func(d *paho.Disconnect) {
			err := &ReasonCodeError{Packet: "DISCONNECT", Code: d.ReasonCode}
			if d.Properties != nil {
				err.Reason = d.Properties.ReasonString
			}
			s.lost(cli, err)
		},
		PacketTimeout: cfg.AckTimeout,
	})
	if s.log.Core().Enabled(zap.DebugLevel) {
		cli.SetDebugLogger(pahoLogger{log: s.log, level: zap.DebugLevel})
	}
	cli.SetErrorLogger(pahoLogger{log: s.log, level: zap.WarnLevel})

	expiry := s.sentExpiry
	recvMax := cfg.ReceiveMaximum
	cp := &paho.Connect{
		ClientID:   s.clientID,
		KeepAlive:  uint16(cfg.KeepAlive / time.Second),
		CleanStart: cleanStart,
		Properties: &paho.ConnectProperties{
			SessionExpiryInterval: &expiry,
			ReceiveMaximum:        &recvMax,
			// Left false, paho sends 0 and mochi strips user properties.
			RequestProblemInfo: true,
		},
	}
	if user, pass := s.up.credentials(s.opts); user != "" || pass != nil {
		cp.Username, cp.UsernameFlag = user, user != ""
		cp.Password, cp.PasswordFlag = pass, pass != nil
	}
	if s.will != nil {
		delay := s.willDelay
		cp.WillMessage = s.will
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &delay}
	}

	ca, err := cli.Connect(ctx, cp)
	if err != nil {
		s.up.counters.connectFailures.Add(1)
		if ca != nil && ca.ReasonCode >= 0x80 {
			rc := &ReasonCodeError{Packet: "CONNACK", Code: ca.ReasonCode}
			if ca.Properties != nil {
				rc.Reason = ca.Properties.ReasonString
			}
			return nil, nil, rc
		}
		return nil, nil, fmt.Errorf("upstream: connect %s: %w", s.up.ep.hostPort, s.up.closedAfterHandshake(err))
	}
	s.up.counters.connects.Add(1)
	s.log.Debug("upstream connected", zap.Bool("clean_start", cleanStart), zap.Bool("session_present", ca.SessionPresent))
	return cli, ca, nil
}

// install makes cli the current connection. It reports false (and leaves
// cli to its fate) if cli already shut down or the session is closing.
func (s *session) install(cli *paho.Client, ca *paho.Connack) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	select {
	case <-cli.Done():
		// Its OnClientError will find s.cur != cli and do nothing.
		return false
	default:
	}
	s.setCurLocked(cli, ca)
	return true
}

// setCurLocked installs cli with a fresh connection context, and a fresh
// epoch if the previous one ended.
func (s *session) setCurLocked(cli *paho.Client, ca *paho.Connack) {
	if s.cur == nil {
		s.up.counters.connected.Add(1)
	}
	s.cur = cli
	s.qosCap = s.up.cfg.maxQoS()
	if ca.Properties != nil && ca.Properties.MaximumQoS != nil {
		s.qosCap = min(s.qosCap, *ca.Properties.MaximumQoS)
	}
	// As paho's session state: the broker's value if it sent one.
	s.curExpiry = s.sentExpiry
	if ca.Properties != nil && ca.Properties.SessionExpiryInterval != nil {
		s.curExpiry = *ca.Properties.SessionExpiryInterval
	}
	s.connCtx, s.endConn = context.WithCancelCause(context.Background())
	if s.epochCtx == nil || s.epochCtx.Err() != nil {
		s.epochCtx, s.endEpoch = context.WithCancelCause(context.Background())
	}
}

// lost is called by paho (after cli shut down) when the connection failed
// or the broker disconnected. It starts the reconnect loop once per cli.
func (s *session) lost(cli *paho.Client, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cli == nil || s.cur != cli {
		return // not the current connection, or Close took it
	}
	s.cur = nil
	s.up.counters.connected.Add(-1)
	s.up.counters.lost.Add(1)
	s.endConn(ErrConnectionLost)
	if s.curExpiry == 0 {
		s.endEpoch(ErrConnectionLost) // paho's state dropped everything
	}
	if s.closing {
		return
	}
	if takenOver(err) {
		s.endTakenOverLocked(err)
		return
	}
	if s.drops.lost(err) {
		s.endTakenOverLocked(fmt.Errorf("%w (last: %w)", errMovedAway, err))
		return
	}
	s.log.Warn("upstream connection lost; reconnecting", zap.Error(err))
	ctx, cancel := context.WithCancel(context.Background())
	s.abort = cancel
	s.wg.Add(1)
	go s.reconnectLoop(ctx, cancel)
}

// reconnectLoop reconnects with CleanStart=false, exponential jittered
// backoff and a slot on the gateway-wide limiter before each attempt
// (pace.go), until it succeeds or Close cancels ctx. If the broker lost
// the session, it restores every subscription before the connection is
// used.
func (s *session) reconnectLoop(ctx context.Context, cancel context.CancelFunc) {
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
		if ctx.Err() != nil {
			return
		}
		s.up.refusals.note(err, s.clientID)
		s.log.Debug("upstream reconnect failed", zap.Int("attempt", attempt), zap.Error(err))
	}
}

var (
	errReconnectAborted = errors.New("upstream: reconnect aborted")
	errConnDropped      = errors.New("connection dropped right after CONNACK")
)

func (s *session) reconnectOnce(ctx context.Context) error {
	cli, ca, err := s.connect(ctx, false)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !ca.SessionPresent {
		s.needResub = true
		if s.endEpoch != nil {
			s.endEpoch(ErrConnectionLost) // paho's state dropped everything
		}
	}
	resub := s.needResub
	s.mu.Unlock()

	if resub {
		if err := s.resubscribe(ctx, cli); err != nil {
			_ = cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
			return err
		}
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = cli.Disconnect(s.closingDisconnect())
		return errReconnectAborted
	}
	select {
	case <-cli.Done():
		s.mu.Unlock()
		return errConnDropped
	default:
	}
	s.setCurLocked(cli, ca)
	s.drops.reconnected(s.up.takeoverWindow())
	s.abort = nil
	s.mu.Unlock()
	return nil
}

// resubscribe restores every subscription of the session on cli. A refusal
// by the broker (failure reason code) is logged, not retried.
func (s *session) resubscribe(ctx context.Context, cli *paho.Client) error {
	s.mu.Lock()
	opts := make([]paho.SubscribeOptions, 0, len(s.subs))
	for f, q := range s.subs {
		// RetainHandling 1: retained messages only if the subscription
		// did not exist (it may, when an earlier attempt got halfway).
		opts = append(opts, paho.SubscribeOptions{Topic: f, QoS: q, RetainHandling: 1})
	}
	s.mu.Unlock()

	for len(opts) > 0 {
		n := min(len(opts), resubscribeBatch)
		batch := opts[:n]
		opts = opts[n:]
		sa, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: batch})
		if sa == nil {
			return fmt.Errorf("upstream: restoring subscriptions: %w", err)
		}
		for i, code := range sa.Reasons {
			if code >= 0x80 && i < len(batch) {
				s.log.Warn("upstream: broker refused restored subscription",
					zap.String("filter", batch[i].Topic), zap.Uint8("reason_code", code))
			}
		}
	}
	s.mu.Lock()
	s.needResub = false
	s.mu.Unlock()
	s.log.Debug("upstream subscriptions restored")
	return nil
}

// current returns the live client or an error saying why there is none.
func (s *session) current() (*paho.Client, error) {
	cli, _, _, err := s.currentCtx()
	return cli, err
}

func (s *session) currentCtx() (cli *paho.Client, conn, epoch context.Context, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closing:
		return nil, nil, nil, ErrClosed
	case s.cur == nil:
		return nil, nil, nil, ErrNotConnected
	}
	return s.cur, s.connCtx, s.epochCtx, nil
}

// maxQoS is the highest QoS the broker takes (broker.max_qos and CONNACK).
func (s *session) maxQoS() byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.qosCap
}

// bound returns ctx, additionally cancelled (with its cause) when end ends.
func bound(ctx, end context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(end, func() { cancel(context.Cause(end)) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

// lostErr returns the cause if ctx was ended by bound's end context.
func lostErr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); errors.Is(c, ErrConnectionLost) || errors.Is(c, ErrClosed) {
		return c
	}
	return err
}

func (s *session) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	if ce := s.log.Check(zap.DebugLevel, "upstream message"); ce != nil {
		ce.Write(zap.String("topic", p.Topic), zap.Uint8("qos", p.QoS), zap.Bool("retain", p.Retain), zap.Int("len", len(p.Payload)))
	}
	// The packet was decoded into fresh buffers; the receiver owns them.
	// paho sends PUBACK/PUBREC after this returns.
	s.deliver(gateway.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain})
	return true, nil
}

// Publish sends msg and waits for PUBACK (QoS 1) or PUBCOMP (QoS 2); QoS 0
// returns once written. It fails at once with ErrNotConnected while the
// connection is down. If the connection drops while waiting, the message
// stays in the session state and is resent after the reconnect (when the
// broker kept the session); Publish keeps waiting until ctx or
// Config.AckTimeout ends.
func (s *session) Publish(ctx context.Context, msg gateway.Message) error {
	if msg.QoS > 2 {
		return fmt.Errorf("upstream: publish to %q: invalid QoS %d", msg.Topic, msg.QoS)
	}
	cli, _, epoch, err := s.currentCtx()
	if err != nil {
		return fmt.Errorf("upstream: publish to %q: %w", msg.Topic, err)
	}
	msg.QoS = min(msg.QoS, s.maxQoS())
	if msg.QoS > 0 {
		var done func()
		ctx, done = bound(ctx, epoch)
		defer done()
	}
	if ce := s.log.Check(zap.DebugLevel, "upstream publish"); ce != nil {
		ce.Write(zap.String("topic", msg.Topic), zap.Uint8("qos", msg.QoS), zap.Bool("retain", msg.Retain), zap.Int("len", len(msg.Payload)))
	}
	resp, err := cli.Publish(ctx, &paho.Publish{Topic: msg.Topic, Payload: msg.Payload, QoS: msg.QoS, Retain: msg.Retain})
	if resp != nil && resp.ReasonCode >= 0x80 {
		rc := &ReasonCodeError{Packet: "PUBACK", Code: resp.ReasonCode}
		if msg.QoS == 2 {
			rc.Packet = "PUBREC"
		}
		if resp.Properties != nil {
			rc.Reason = resp.Properties.ReasonString
		}
		return rc
	}
	if err != nil {
		return fmt.Errorf("upstream: publish to %q: %w", msg.Topic, mapErr(lostErr(ctx, err), msg.QoS == 0))
	}
	return nil
}

// Subscribe subscribes to filter at qos and returns the granted QoS. The
// filter is remembered and restored if the broker loses the session.
func (s *session) Subscribe(ctx context.Context, filter string, qos byte) (byte, error) {
	if qos > 2 {
		return 0, fmt.Errorf("upstream: subscribe to %q: invalid QoS %d", filter, qos)
	}
	cli, conn, _, err := s.currentCtx()
	if err != nil {
		return 0, fmt.Errorf("upstream: subscribe to %q: %w", filter, err)
	}
	qos = min(qos, s.maxQoS())
	ctx, done := bound(ctx, conn)
	defer done()
	sa, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa != nil && len(sa.Reasons) == 1 && sa.Reasons[0] >= 0x80 {
		rc := &ReasonCodeError{Packet: "SUBACK", Code: sa.Reasons[0]}
		if sa.Properties != nil {
			rc.Reason = sa.Properties.ReasonString
		}
		return 0, rc
	}
	if err != nil {
		return 0, fmt.Errorf("upstream: subscribe to %q: %w", filter, mapErr(lostErr(ctx, err), false))
	}
	if sa == nil || len(sa.Reasons) != 1 {
		return 0, fmt.Errorf("upstream: subscribe to %q: malformed SUBACK", filter)
	}
	s.mu.Lock()
	s.subs[filter] = qos
	s.mu.Unlock()
	s.log.Debug("upstream subscribed", zap.String("filter", filter), zap.Uint8("qos", qos), zap.Uint8("granted", sa.Reasons[0]))
	return sa.Reasons[0], nil
}

// Unsubscribe removes the subscription to filter.
func (s *session) Unsubscribe(ctx context.Context, filter string) error {
	cli, conn, _, err := s.currentCtx()
	if err != nil {
		return fmt.Errorf("upstream: unsubscribe from %q: %w", filter, err)
	}
	ctx, done := bound(ctx, conn)
	defer done()
	ua, err := cli.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{filter}})
	if ua != nil && len(ua.Reasons) == 1 && ua.Reasons[0] >= 0x80 {
		rc := &ReasonCodeError{Packet: "UNSUBACK", Code: ua.Reasons[0]}
		if ua.Properties != nil {
			rc.Reason = ua.Properties.ReasonString
		}
		return rc
	}
	if err != nil {
		return fmt.Errorf("upstream: unsubscribe from %q: %w", filter, mapErr(lostErr(ctx, err), false))
	}
	s.mu.Lock()
	delete(s.subs, filter)
	s.mu.Unlock()
	s.log.Debug("upstream unsubscribed", zap.String("filter", filter))
	return nil
}

// Close sends a normal DISCONNECT (the broker discards the will), stops
// reconnecting and releases everything. It returns when done or when ctx
// ends; Done is closed once everything has stopped. Close is idempotent.
func (s *session) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		cli, abort := s.cur, s.abort
		s.cur, s.abort = nil, nil
		if cli != nil {
			s.up.counters.connected.Add(-1)
		}
		if s.endConn != nil {
			s.endConn(ErrClosed)
			s.endEpoch(ErrClosed)
		}
		s.mu.Unlock()
		if abort != nil {
			abort()
		}
		// Disconnect waits for paho's goroutines, which wait for a deliver
		// in progress; do it off the caller's goroutine so ctx bounds Close.
		go func() {
			if cli != nil {
				_ = cli.Disconnect(s.closingDisconnect())
			}
			s.wg.Wait()
			_ = s.state.Close() // fails Publish calls still waiting for an ack
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

// closingDisconnect is the DISCONNECT that ends the session: reason code
// 0x00 (the broker discards the will) and, if CONNECT raised the session
// expiry for the will delay, the expiry the gateway asked for (MQTT 5
// §3.14.2.2.2 allows lowering a non-zero CONNECT value), so that the
// broker session of a clean node ends at once.
func (s *session) closingDisconnect() *paho.Disconnect {
	d := &paho.Disconnect{ReasonCode: 0}
	if s.wantExpiry < s.sentExpiry {
		want := s.wantExpiry
		d.Properties = &paho.DisconnectProperties{SessionExpiryInterval: &want}
	}
	return d
}

// Done is closed once the session has ended: after Close, or when another
// connection took the session over (then opts.Ended was called first).
// Reconnecting never gives up on its own.
func (s *session) Done() <-chan struct{} { return s.done }

// mapErr marks errors that mean "nothing was sent" with ErrNotConnected.
func mapErr(err error, writeFailed bool) error {
	switch {
	case errors.Is(err, pahosession.ErrNoConnection):
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	case writeFailed && !errors.Is(err, paho.ErrInvalidArguments):
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	return err
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half)
}

// Connected reports whether the session's connection is up now.
func (s *session) Connected() bool {
	_, _, _, err := s.currentCtx()
	return err == nil
}
