package aggregate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// node is a node's session in the aggregator: its subscriptions, and where
// its messages go: to the open handle's deliver, or into parked while it is
// disconnected with CleanSession=0.
type node struct {
	id   string
	lane *lane // the shared connection its publishes use

	// subs is guarded by Upstream.mu.
	subs map[string]byte

	mu      sync.Mutex
	cur     *handle // the open session, or nil
	deliver func(gateway.Message)
	queue   []gateway.Message // parked messages, oldest first
	timer   *time.Timer       // parked: forgets the node at expiry
	gone    bool              // dropped: deliver nothing more
}

func (n *node) setSub(filter string, qos byte) { n.subs[filter] = qos }

// attach makes h the node's open session and hands it what was parked.
func (n *node) attach(h *handle, opts gateway.SessionOptions, deliver func(gateway.Message)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
	n.cur, n.deliver = h, deliver
	h.opts = opts
	for _, m := range n.queue {
		deliver(m)
	}
	n.queue = nil
}

// park keeps the node's subscriptions after its session h closed, for
// expiry, collecting its messages meanwhile.
func (n *node) park(h *handle, expiry time.Duration, expire func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cur != h || n.gone {
		return
	}
	n.cur, n.deliver = nil, nil
	n.timer = time.AfterFunc(expiry, expire)
}

// parked reports whether the node has no open session.
func (n *node) parked() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur == nil && !n.gone
}

// detach stops all delivery to the node for good.
func (n *node) detach() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gone, n.cur, n.deliver, n.queue = true, nil, nil, nil
	if n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
}

// deliver hands m to the open session, or parks it (dropping the oldest
// parked message when full).
func (n *node) deliverMsg(m gateway.Message, maxParked int, dropped func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.gone:
	case n.deliver != nil:
		n.deliver(m)
	default:
		if len(n.queue) >= maxParked {
			n.queue = n.queue[1:]
			dropped()
		}
		n.queue = append(n.queue, m)
	}
}

// handle is the gateway.Session returned by one Open.
type handle struct {
	u    *Upstream
	n    *node
	opts gateway.SessionOptions // set by attach

	closeOnce sync.Once
	done      chan struct{}
}

var _ gateway.Session = (*handle)(nil)

// Publish sends msg over the node's shared connection and returns when the
// broker acknowledged it (PUBACK, PUBCOMP; at once for QoS 0).
func (h *handle) Publish(ctx context.Context, msg gateway.Message) error {
	h.u.mu.RLock()
	sess := h.n.lane.sess
	closed := h.u.closed
	h.u.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case sess == nil:
		return fmt.Errorf("aggregate: publish to %q: shared connection %d: %w", msg.Topic, h.n.lane.idx, ErrConnectionDown)
	}
	return sess.Publish(ctx, msg)
}

// Subscribe adds the node to filter; the broker sees a SUBSCRIBE for it
// (at the highest QoS any node asked for) so that it sends the filter's
// retained messages, which go to this node only.
func (h *handle) Subscribe(ctx context.Context, filter string, qos byte) (byte, error) {
	if qos > 2 {
		return 0, fmt.Errorf("aggregate: subscribe to %q: invalid QoS %d", filter, qos)
	}
	if h.closedNow() {
		return 0, ErrClosed
	}
	return h.u.subscribe(ctx, h.n, filter, qos)
}

// Unsubscribe removes the node from filter; the broker sees an
// UNSUBSCRIBE when it was the last node.
func (h *handle) Unsubscribe(ctx context.Context, filter string) error {
	if h.closedNow() {
		return ErrClosed
	}
	h.u.mu.Lock()
	delete(h.n.subs, filter)
	f := h.u.filters[filter]
	last := f != nil && f.leave(h.n)
	h.u.mu.Unlock()
	if last {
		h.u.unsubscribe(ctx, filter)
	}
	return nil
}

// Close ends the session. A CleanSession=0 node's subscriptions stay, and
// its messages are kept, for its SessionExpiry; otherwise they go now.
func (h *handle) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		defer close(h.done)
		if !h.opts.CleanStart && h.opts.SessionExpiry > 0 {
			h.n.park(h, h.opts.SessionExpiry, func() { h.u.expire(h.n) })
			return
		}
		h.u.mu.Lock()
		var release []string
		if h.u.nodes[h.n.id] == h.n {
			release = h.u.dropLocked(h.n)
		}
		h.u.mu.Unlock()
		h.u.unsubscribeAll(ctx, release)
	})
	return nil
}

// Done is closed after Close.
func (h *handle) Done() <-chan struct{} { return h.done }

func (h *handle) closedNow() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}
