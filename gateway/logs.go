package gateway

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Per-node logging (issue 14): a node's logger is built lazily
// (zap.Logger.WithLazy: no encoded fields until it writes), routine events
// (connected, asleep, disconnected) are at debug, and per-node warnings
// are rate-limited gateway-wide, so that many misbehaving nodes cost
// neither memory nor the operator's attention.

// Warning limits: at most warnBurst lines of one message per warnPeriod;
// the next line after a quiet spell says how many were held back.
const (
	warnPeriod = 10 * time.Second
	warnBurst  = 10
)

// warnLimiter rate-limits warnings by message. Messages are constants, so
// its table stays small. Safe for concurrent use (shards and upstream
// workers log through it).
type warnLimiter struct {
	mu sync.Mutex
	m  map[string]*warnState
}

type warnState struct {
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether msg may be logged at now and how many lines of it
// were held back before.
func (w *warnLimiter) allow(msg string, now time.Time) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = make(map[string]*warnState)
	}
	st := w.m[msg]
	if st == nil {
		st = &warnState{start: now}
		w.m[msg] = st
	}
	if now.Sub(st.start) >= warnPeriod {
		st.start, st.n = now, 0
	}
	if st.n >= warnBurst {
		st.suppressed++
		return false, 0
	}
	st.n++
	held := st.suppressed
	st.suppressed = 0
	return true, held
}

// warn logs a per-node warning through log, rate-limited by message.
func (g *Gateway) warn(log *zap.Logger, msg string, fields ...zap.Field) {
	ce := log.Check(zap.WarnLevel, msg)
	if ce == nil {
		return
	}
	ok, held := g.warns.allow(msg, time.Now())
	if !ok {
		return
	}
	if held > 0 {
		fields = append(fields, zap.Int("suppressed", held))
	}
	ce.Write(fields...)
}
