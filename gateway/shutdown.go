package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/store"
)

// Graceful shutdown (issue 13). Shutdown(ctx):
//  1. stops reading datagrams (readiness fails from here on);
//  2. waits until no broker operation is in flight and every shard's store
//     writes are committed, so that the nodes whose messages completed are
//     answered;
//  3. stops the shards, closes the upstream sessions cleanly (no will, and
//     the broker keeps CleanSession=0 sessions) and flushes what is left to
//     the store.
//
// Everything is bounded by the caller's ctx. Nodes are sent nothing: with a
// store, they resume after the restart as if nothing happened.

// drainState is the gateway's shutdown bookkeeping.
type drainState struct {
	readers     sync.WaitGroup
	stopReading atomic.Bool
	stopOnce    sync.Once
	directSeq   atomic.Uint64 // buffer positions for messages stored after the shards stopped

	mu  sync.Mutex
	ctx context.Context //nolint:containedctx // Shutdown's context, handed to the stop that Serve runs
}

func (g *Gateway) markStopping() { g.drain.stopOnce.Do(func() { close(g.stopping) }) }

// drainAndStop runs steps 1 and 2, then cancels Serve's context (step 3
// runs in Serve).
func (g *Gateway) drainAndStop(ctx context.Context, cancel context.CancelFunc) {
	defer cancel()
	g.drain.mu.Lock()
	g.drain.ctx = ctx
	g.drain.mu.Unlock()
	g.markStopping()
	g.drain.stopReading.Store(true)
	for _, t := range g.transports {
		_ = t.SetReadDeadline(time.Unix(1, 0))
	}
	readers := make(chan struct{})
	go func() { g.drain.readers.Wait(); close(readers) }()
	select {
	case <-readers:
	case <-ctx.Done():
		return
	}
	start := time.Now()
	g.waitQuiet(ctx)
	g.storeBarrier(ctx)
	g.log.Info("drained", zap.Duration("took", time.Since(start)), zap.Bool("complete", ctx.Err() == nil))
}

// waitQuiet polls the shards until none has work in flight or ctx ends.
func (g *Gateway) waitQuiet(ctx context.Context) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !g.quiet(ctx) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (g *Gateway) quiet(ctx context.Context) bool {
	for _, s := range g.shards {
		reply := make(chan bool, 1)
		if !s.post(ctx, func(time.Time) { reply <- s.quiet() }) {
			return true
		}
		select {
		case q := <-reply:
			if !q {
				return false
			}
		case <-ctx.Done():
			return true
		}
	}
	return true
}

// quiet reports whether the shard has no upstream operation in flight or
// waiting. (Broker messages keep arriving while it drains, each with a
// store write: waiting for no write at all could last the whole timeout.)
func (s *shard) quiet() bool {
	return s.idle == s.g.cfg.UpstreamWorkers && len(s.backlog) == 0
}

// storeBarrier waits until every write each shard had queued is
// committed and its waiters ran (the answers to nodes that depend on it
// went out): commits are applied in order, so a write queued now is done
// only after all earlier ones.
func (g *Gateway) storeBarrier(ctx context.Context) {
	if !g.durable {
		return
	}
	for _, s := range g.shards {
		done := make(chan struct{})
		if !s.post(ctx, func(time.Time) { s.write(func(*store.Batch) {}, func(error) { close(done) }) }) {
			return
		}
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// stopContext is Shutdown's context, or, when Serve's own context ended
// without Shutdown, one that gives the upstream closes a few seconds.
func (g *Gateway) stopContext() (context.Context, context.CancelFunc) {
	g.drain.mu.Lock()
	ctx := g.drain.ctx
	g.drain.mu.Unlock()
	if ctx != nil {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// closeShards closes every shard's upstream sessions and flushes its store
// writes, the shards in parallel. It runs after the shards stopped.
func (g *Gateway) closeShards(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range g.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.closeAll(ctx)
			if err := s.finalFlush(ctx); err != nil {
				s.log.Warn("store not flushed at shutdown", zap.Error(err))
			}
		}()
	}
	wg.Wait()
}

// commitDirect writes to the store without the shard, for upstream
// callbacks that arrive after the shard stopped (shutdown).
func (g *Gateway) commitDirect(write func(*store.Batch)) error {
	if !g.durable {
		return nil
	}
	ctx, cancel := g.stopContext()
	defer cancel()
	var b store.Batch
	write(&b)
	return g.store.Commit(ctx, &b)
}

// storeLate stores a broker message that arrived after the node's shard
// stopped, at the end of its buffer, so that acknowledging it to the
// broker loses nothing.
func (g *Gateway) storeLate(clientID string, m Message) error {
	if m.QoS == 0 {
		return nil
	}
	// After every position the shard has used: above 2^62, by the clock.
	seq := uint64(1<<62 + time.Now().UnixNano())
	for {
		last := g.drain.directSeq.Load()
		seq = max(seq, last+1)
		if g.drain.directSeq.CompareAndSwap(last, seq) {
			break
		}
	}
	return g.commitDirect(func(b *store.Batch) {
		b.PutMessage(clientID, seq, store.Message{Topic: m.Topic, Payload: m.Payload, QoS: int8(m.QoS), Retain: m.Retain})
	})
}
