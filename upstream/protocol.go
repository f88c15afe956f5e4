package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// Protocol levels as CONNECT carries them, stored in Upstream.proto.
const (
	level5   = 5
	level311 = protoLevel311
)

// ProtocolVersion is the MQTT version sessions use: "5" or "3.1.1", as
// configured or as "auto" found out; "" while "auto" has not decided yet
// (no session has reached the broker). For the status page.
func (u *Upstream) ProtocolVersion() string {
	switch u.protocolLevel() {
	case level5:
		return Protocol5
	case level311:
		return Protocol311
	}
	return ""
}

func (u *Upstream) protocolLevel() uint32 {
	switch u.cfg.ProtocolVersion {
	case Protocol5:
		return level5
	case Protocol311:
		return level311
	}
	return u.proto.Load()
}

// settle records what "auto" found, and logs it the first time.
func (u *Upstream) settle(level uint32, why error) {
	if !u.proto.CompareAndSwap(0, level) {
		return
	}
	if level == level5 {
		u.log.Info("upstream: the broker speaks MQTT 5; using it for every session", zap.String("broker", u.ep.hostPort))
		return
	}
	u.log.Info("upstream: the broker refused MQTT 5; using MQTT 3.1.1 for every session (broker.protocol_version: auto)",
		zap.String("broker", u.ep.hostPort), zap.NamedError("mqtt5_error", why))
}

// openNegotiated opens a session with the configured or negotiated
// version. While "auto" has not decided, it tries MQTT 5 and, if the
// broker refuses that version or drops the CONNECT without CONNACK twice
// in a row, MQTT 3.1.1. Only an answer decides: a failed dial or a
// timeout leaves the question open for the next Open, and 3.1.1 is
// settled only when the broker answered a 3.1.1 CONNECT.
func (u *Upstream) openNegotiated(ctx context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	switch u.protocolLevel() {
	case level5:
		return u.openV5(ctx, opts, deliver)
	case level311:
		return u.open311(ctx, opts, deliver)
	}
	s, err := u.openV5(ctx, opts, deliver)
	if err != nil && v5Mismatch(err) && !refusedVersion(err) {
		// Closed without CONNACK. A broker that speaks 3.1.1 only does
		// that every time; a broker in trouble (restarting, behind a
		// load balancer with no backend) might once. Ask again before
		// concluding.
		s, err = u.openV5(ctx, opts, deliver)
	}
	if err == nil || !v5Mismatch(err) {
		if err == nil || answered(err) {
			u.settle(level5, nil)
		}
		return s, err
	}
	s, err311 := u.open311(ctx, opts, deliver)
	if err311 == nil || answered(err311) {
		u.settle(level311, err)
	}
	if err311 != nil {
		// The 3.1.1 attempt's error decides whether retrying helps (a
		// transient failure must not turn into a permanent refusal).
		return nil, fmt.Errorf("%w (MQTT 5 first: %v)", err311, err) //nolint:errorlint // only the 3.1.1 error classifies
	}
	return s, nil
}

// v5Mismatch reports whether an MQTT 5 Open failed in a way a 3.1.1-only
// broker fails it: CONNACK 0x84 (unsupported protocol version), a 3.1.1
// CONNACK with return code 0x01 (which paho cannot decode as MQTT 5), or
// the connection closed without CONNACK (RabbitMQ).
func v5Mismatch(err error) bool {
	var rc *ReasonCodeError
	if errors.As(err, &rc) {
		return refusedVersion(err)
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// refusedVersion reports whether err is a CONNACK that refused the
// protocol version outright.
func refusedVersion(err error) bool {
	var rc *ReasonCodeError
	return errors.As(err, &rc) && rc.Packet == "CONNACK" && (rc.Code == 0x84 || rc.Code == 0x01)
}

// answered reports whether err is a CONNACK refusal: the broker understood
// the CONNECT's version well enough to answer it.
func answered(err error) bool {
	var rc *ReasonCodeError
	return errors.As(err, &rc) && rc.Packet == "CONNACK" && rc.Code != 0x84 && rc.Code != 0x01
}

// open311 opens an MQTT 3.1.1 session.
func (u *Upstream) open311(ctx context.Context, opts gateway.SessionOptions, deliver func(gateway.Message)) (gateway.Session, error) {
	s := newSession311(u, opts, deliver)
	if err := s.open(ctx); err != nil {
		_ = s.Close(context.Background()) // nothing to wait for: no connection
		return nil, err
	}
	s.log.Debug("upstream session open")
	return s, nil
}
