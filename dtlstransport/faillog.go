package dtlstransport

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Failed handshakes are logged at info (issue 15: a node with a wrong key
// or certificate otherwise just hangs), at most failLogBurst lines per
// failLogWindow: anyone can make handshakes fail, so the log must not
// become theirs. The first line of a window says how many were left out.
const (
	failLogBurst  = 10
	failLogWindow = time.Minute
)

// failLog rate-limits the handshake failure lines.
type failLog struct {
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed uint64
}

// allow reports whether a line may be written now, and how many were
// suppressed since the last one written.
func (f *failLog) allow(now time.Time) (ok bool, suppressed uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.start) >= failLogWindow {
		f.start, f.n = now, 0
	}
	if f.n >= failLogBurst {
		f.suppressed++
		return false, 0
	}
	f.n++
	suppressed, f.suppressed = f.suppressed, 0
	return true, suppressed
}

// logHandshakeFailure writes the info line for a failed handshake.
func (t *Transport) logHandshakeFailure(p *peer, after time.Duration, err error) {
	ok, suppressed := t.failLog.allow(time.Now())
	if !ok {
		return
	}
	fields := []zap.Field{
		zap.Stringer("addr", p.curUA.Load()), zap.String("reason", handshakeFailureReason(err)),
		zap.Duration("after", after), zap.Error(err),
	}
	if suppressed > 0 {
		fields = append(fields, zap.Uint64("not_logged_before", suppressed))
	}
	t.log.Info("DTLS handshake failed", fields...)
}

// handshakeFailureReason names the likely cause of a failed handshake for
// an operator; the error itself follows in the line.
func handshakeFailureReason(err error) string {
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, errUnknownIdentity) || strings.Contains(msg, "unknown psk identity"):
		return "unknown PSK identity"
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "timeout"):
		return "timeout: no answer from the client (wrong PSK key, or the client gave up)"
	case strings.Contains(msg, "required client verification") || strings.Contains(msg, "no certificate provided"):
		return "no client certificate signed by dtls.client_ca_file"
	case strings.Contains(msg, "certificate") || strings.Contains(msg, "x509"):
		return "client certificate not accepted (unknown CA?)"
	case strings.Contains(msg, "cipher suite"):
		return "no cipher suite in common"
	case strings.Contains(msg, "decrypt") || strings.Contains(msg, "verify data") || strings.Contains(msg, "mac"):
		return "keys do not match (wrong PSK key?)"
	case strings.Contains(msg, "alert"):
		return "alert from the client"
	default:
		return "other"
	}
}
