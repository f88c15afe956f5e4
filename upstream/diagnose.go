package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Diagnosis says in an operator's words why a connection to the broker
// failed: the reason's name ("not authorized", "connection refused"), the
// MQTT reason or return code when the broker gave one, and the
// configuration key to look at.
type Diagnosis struct {
	Reason string
	// Code is the CONNACK reason code (v5) or return code (3.1.1) as
	// "0x87", or "" when the broker sent none (dial, TLS, timeout).
	Code string
	// Key is the configuration key to fix ("broker.username /
	// broker.password"), or "" when nothing in the configuration helps.
	Key string
}

// Diagnose classifies an error from Open (or from a reconnect).
func Diagnose(err error) Diagnosis {
	var rc *ReasonCodeError
	if errors.As(err, &rc) {
		d := Diagnosis{Reason: rc.Name(), Code: fmt.Sprintf("0x%02x", rc.Code), Key: rc.Key()}
		if d.Reason == "" {
			d.Reason = "reason code " + d.Code
		}
		return d
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		recHdr    tls.RecordHeaderError
		dnsErr    *net.DNSError
		netErr    net.Error
	)
	var closedTLS *tlsClosedError
	switch {
	case errors.As(err, &closedTLS):
		return Diagnosis{Reason: "TLS: the broker closed the connection after the handshake (client certificate refused?)", Key: "broker.cert_file / broker.key_file"}
	case errors.As(err, &unknownCA):
		return Diagnosis{Reason: "TLS: broker certificate signed by an unknown authority", Key: "broker.ca_file"}
	case errors.As(err, &hostErr):
		return Diagnosis{Reason: "TLS: broker certificate is not valid for " + hostErr.Host, Key: "broker.server_name"}
	case errors.As(err, &invalid):
		return Diagnosis{Reason: "TLS: broker certificate invalid", Key: "broker.ca_file"}
	case errors.As(err, &recHdr):
		return Diagnosis{Reason: "TLS: the broker does not speak TLS on this port", Key: "broker.url"}
	case isAlert(err):
		return Diagnosis{Reason: "TLS: handshake refused by the broker", Key: "broker.cert_file / broker.key_file"}
	case errors.As(err, &dnsErr):
		return Diagnosis{Reason: "broker host not found", Key: "broker.url"}
	case errors.Is(err, syscall.ECONNREFUSED):
		return Diagnosis{Reason: "connection refused", Key: "broker.url"}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return Diagnosis{Reason: "connect timeout", Key: "broker.url / broker.connect_timeout"}
	case errors.Is(err, errConnDropped):
		return Diagnosis{Reason: "broker closed the connection right after CONNACK (another connection with this ClientID?)", Key: "broker.client_id_prefix"}
	case brokerClosed(err):
		// What a broker that does not speak this protocol version does
		// (RabbitMQ's 3.1.1-only plugin closes on an MQTT 5 CONNECT).
		return Diagnosis{Reason: "connection closed by the broker before CONNACK", Key: "broker.protocol_version"}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Diagnosis{Reason: "broker unreachable", Key: "broker.url"}
	}
	return Diagnosis{Reason: err.Error()}
}

// brokerClosed reports an error that means the broker closed the
// connection.
func brokerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// tlsClosedError marks a TLS connection the broker closed between the
// handshake and CONNACK: with TLS 1.3 that is how a refused client
// certificate shows (the alert may be lost when the broker closes first).
type tlsClosedError struct{ err error }

func (e *tlsClosedError) Error() string { return e.err.Error() }
func (e *tlsClosedError) Unwrap() error { return e.err }

// closedAfterHandshake marks err (from CONNECT/CONNACK) as a tlsClosedError
// when the connection is TLS and the broker closed it.
func (u *Upstream) closedAfterHandshake(err error) error {
	if u.ep.tls != nil && brokerClosed(err) {
		return &tlsClosedError{err: err}
	}
	return err
}

// isAlert reports a TLS alert from the peer (it refused our certificate,
// or the handshake): crypto/tls returns it in a net.OpError whose Op is
// "remote error".
func isAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// Fields are the diagnosis as log fields.
func (d Diagnosis) fields() []zap.Field {
	f := []zap.Field{zap.String("reason", d.Reason)}
	if d.Code != "" {
		f = append(f, zap.String("code", d.Code))
	}
	if d.Key != "" {
		f = append(f, zap.String("fix", d.Key))
	}
	return f
}

// String is "not authorized (CONNACK 0x87): check broker.username /
// broker.password", or shorter forms when code or key is missing.
func (d Diagnosis) String() string {
	s := d.Reason
	if d.Code != "" {
		s += " (" + d.Code + ")"
	}
	if d.Key != "" {
		s += ": check " + d.Key
	}
	return s
}

// refusalEvery is how often each kind of refusal is logged at most.
const refusalEvery = 10 * time.Second

// refusalLog logs connection failures at warn, at most one line per reason
// per interval, with the number of lines it held back since the last one.
// Every node hits the same refusal when the broker refuses the gateway's
// credentials: without this, thousands of nodes make thousands of lines.
type refusalLog struct {
	log   *zap.Logger
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	seen map[string]*refusalSeen // by Diagnosis.String(), or "unclassified"
}

type refusalSeen struct {
	at         time.Time
	suppressed int
}

func newRefusalLog(log *zap.Logger, every time.Duration) *refusalLog {
	return &refusalLog{log: log, every: every, now: time.Now, seen: make(map[string]*refusalSeen)}
}

// maxRefusalKinds bounds the map: reasons are few, but err.Error() of an
// unknown error may carry addresses.
const maxRefusalKinds = 64

// allow reports whether a line for key may be written now, and how many
// were held back since the last one.
func (l *refusalLog) allow(key string) (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.seen[key]
	if s == nil {
		if len(l.seen) >= maxRefusalKinds {
			for k, v := range l.seen {
				if now.Sub(v.at) >= l.every {
					delete(l.seen, k)
				}
			}
		}
		l.seen[key] = &refusalSeen{at: now}
		return true, 0
	}
	if now.Sub(s.at) < l.every {
		s.suppressed++
		return false, 0
	}
	n := s.suppressed
	s.at, s.suppressed = now, 0
	return true, n
}

// note logs err (an Open or reconnect failure for clientID), rate-limited.
func (l *refusalLog) note(err error, clientID string) {
	if !l.log.Core().Enabled(zap.WarnLevel) {
		return
	}
	d := Diagnose(err)
	key := d.String()
	if d.Code == "" && d.Key == "" {
		key = "unclassified" // its text may name ephemeral ports: one budget for all
	}
	ok, suppressed := l.allow(key)
	if !ok {
		return
	}
	msg := "broker connection failed"
	if d.Code != "" {
		msg = "broker refused the connection"
	}
	fields := append(d.fields(), zap.String("client_id", clientID), zap.Error(err))
	if suppressed > 0 {
		fields = append(fields, zap.Int("suppressed", suppressed), zap.Duration("suppressed_in", l.every))
	}
	l.log.Warn(msg, fields...)
}
