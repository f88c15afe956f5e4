package upstream

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// DefaultProbeInterval is how often the Prober connects when
// Config.ProbeInterval is zero.
const DefaultProbeInterval = 30 * time.Second

// LinkStatus is what the last probe found out about the broker link.
type LinkStatus struct {
	// Up: the last probe's CONNECT was accepted.
	Up bool
	// Protocol is the MQTT version the probe spoke ("5", "3.1.1"), ""
	// before a probe succeeded.
	Protocol string
	// LastError says why the last probe failed, with the key to fix
	// ("not authorized (0x87): check broker.username /
	// broker.password"); "" while Up (but see SetNodeAuth).
	LastError string
	// Since is when Up last changed (the first probe counts as a change).
	Since time.Time
	// Checked is when the last probe ended; zero before the first.
	Checked time.Time
}

// ProbeClientID is the ClientID of the gateway's probe connection, derived
// from its gateway id so that gateways sharing a broker do not take each
// other's probe sessions over (broker.client_id_prefix still applies).
func ProbeClientID(gatewayID uint8) string {
	return "mqttsn-gateway-" + strconv.Itoa(int(gatewayID)) + "-probe"
}

// Prober checks the broker link the way a node's connection uses it: a
// real MQTT CONNECT through Open (so with the gateway's credentials and
// protocol version), with CleanStart, then DISCONNECT. It probes when Run
// starts and every Config.ProbeInterval (broker.probe_interval), and logs
// each change of the link's state once: down at warn with the reason and
// the key to fix, up at info.
type Prober struct {
	u        *Upstream
	clientID string
	log      *zap.Logger

	mu       sync.Mutex
	st       LinkStatus
	nodeAuth bool
}

// SetNodeAuth tells the prober that nodes bring their own credentials
// (node_auth.required). If the gateway then has none of its own, the
// broker refusing the probe's anonymous CONNECT for its credentials (bad
// user name or password, not authorized) shows a broker that is up and
// checking credentials, which is all nodes need: the link counts as up,
// and LastError keeps the broker's answer.
func (p *Prober) SetNodeAuth(required bool) {
	p.mu.Lock()
	p.nodeAuth = required
	p.mu.Unlock()
}

// credentialRefusal reports whether err is the broker refusing the probe's
// credentials, which the prober does not have.
func (p *Prober) credentialRefusal(err error) bool {
	var rc *ReasonCodeError
	if !p.nodeAuth || p.u.ep.username != "" || p.u.ep.hasPassword || !errors.As(err, &rc) || rc.Packet != "CONNACK" {
		return false
	}
	switch rc.Code {
	case 0x04, 0x05, 0x86, 0x87: // 3.1.1 and 5: bad user name or password, not authorized
		return true
	}
	return false
}

// NewProber returns a Prober for u's broker that connects as clientID
// (see ProbeClientID). A nil log means no logging.
func NewProber(u *Upstream, clientID string, log *zap.Logger) *Prober {
	if log == nil {
		log = zap.NewNop()
	}
	return &Prober{u: u, clientID: clientID, log: log.With(zap.String("client_id", clientID))}
}

// Status returns the last probe's findings. It is safe to call at any
// time; before the first probe ended the link counts as down.
func (p *Prober) Status() LinkStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Run probes at once and then every interval until ctx ends, and returns
// only then; it starts no goroutine that outlives it.
func (p *Prober) Run(ctx context.Context) {
	t := time.NewTicker(p.u.cfg.ProbeInterval)
	defer t.Stop()
	for {
		_ = p.Check(ctx) // recorded in Status and logged on change
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check probes once now, records the result and returns it (nil: up). A
// probe cut short by ctx records nothing.
func (p *Prober) Check(ctx context.Context) error {
	s, err := p.u.Open(ctx, gateway.SessionOptions{ClientID: p.clientID, CleanStart: true}, func(gateway.Message) {})
	protocol := ""
	if err == nil {
		protocol = protocolOf(s)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.u.cfg.ConnectTimeout)
		_ = s.Close(cctx) // DISCONNECT; nothing to keep
		cancel()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	p.record(time.Now(), protocol, err)
	return err
}

func (p *Prober) record(now time.Time, protocol string, err error) {
	p.mu.Lock()
	prev := p.st
	st := LinkStatus{Up: err == nil, Protocol: protocol, Since: prev.Since, Checked: now}
	var d Diagnosis
	if err != nil {
		d = Diagnose(err)
		st.LastError = d.String()
		st.Protocol = prev.Protocol // what it last spoke, for the status page
		st.Up = p.credentialRefusal(err)
	}
	changed := prev.Checked.IsZero() || prev.Up != st.Up
	if changed {
		st.Since = now
	}
	p.st = st
	p.mu.Unlock()

	switch {
	case !changed:
	case st.Up && err != nil:
		p.log.Info("broker link up: it refuses the gateway's own (absent) credentials, nodes bring theirs", d.fields()...)
	case st.Up:
		p.log.Info("broker link up", zap.String("protocol", protocol))
	default:
		p.log.Warn("broker link down", append(d.fields(), zap.Error(err))...)
	}
}

// protocolOf names the MQTT version a session speaks.
func protocolOf(s gateway.Session) string {
	if v, ok := s.(interface{ ProtocolVersion() string }); ok {
		return v.ProtocolVersion()
	}
	return ""
}

// ProtocolVersion is the MQTT version of the session: "5".
func (s *session) ProtocolVersion() string { return "5" }
