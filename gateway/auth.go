package gateway

import (
	"bytes"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/sleepmgr"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Nodes that present their own broker credentials send an AUTH (MQTT-SN
// v2.0 draft, type 0x03) with the PLAIN method right after CONNECT, without
// waiting for an answer (bisquitt-pub --user/--password does). MQTT-SN
// v1.2's CONNECT has no flag announcing it, so whether the gateway waits
// for one is configuration (Config.RequireAuth): a gateway that guessed
// would sometimes log the node in before its AUTH arrived.

// maxConnectRoutes bounds connectRoutes; when full it starts afresh.
const maxConnectRoutes = 4096

// connectRoutes remembers the shard of each address's last CONNECT, so
// that the AUTH right behind it reaches the same shard before that shard
// has bound the address (which happens when it handles the CONNECT). The
// reader writes it and reads it; the zero value is ready.
type connectRoutes struct {
	mu sync.Mutex
	m  map[peerKey]int
}

func (r *connectRoutes) note(k peerKey, shard int) {
	r.mu.Lock()
	if r.m == nil || len(r.m) >= maxConnectRoutes {
		r.m = make(map[peerKey]int)
	}
	r.m[k] = shard
	r.mu.Unlock()
}

func (r *connectRoutes) get(k peerKey) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.m[k]
	return i, ok
}

// authShard is the shard for an AUTH from k: that of its CONNECT, else the
// one its address is bound to.
func (g *Gateway) authShard(k peerKey) (int, bool) {
	if i, ok := g.connects.get(k); ok {
		return i, true
	}
	return g.lookup(k)
}

// awaitAuth starts waiting for the node's AUTH when the gateway requires
// one; it reports whether it did. will says whether the CONNECT asked for
// the will handshake, which follows the AUTH.
func (s *shard) awaitAuth(now time.Time, sess *session, will bool) bool {
	if !s.g.cfg.RequireAuth {
		return false
	}
	sess.phase = phaseAuth
	sess.authWill = will
	sess.supervise(now)
	s.schedule(sess)
	return true
}

// onAuth handles an AUTH from a node with a session, and anything else
// while the gateway waits for one (a is then nil).
func (s *shard) onAuth(now time.Time, sess *session, a *snpacket.Auth) {
	switch {
	case sess.phase == phaseAuth && a == nil:
		s.g.warn(sess.log, "CONNECT refused: AUTH required (node_auth.required), got another message first")
		s.refuseConnect(sess, snpacket.RejectedNotSupported)
	case sess.phase == phaseAuth:
		user, pass, err := a.Plain()
		if err != nil {
			// Nothing reached the broker: the upstream session is opened
			// only once the node's credentials are known.
			s.g.warn(sess.log, "CONNECT refused: malformed AUTH", zap.Error(err))
			s.refuseConnect(sess, snpacket.RejectedNotSupported)
			return
		}
		creds := &Credentials{Username: user, Password: clone(pass)}
		if sess.up != nil && !sameCredentials(sess.auth, creds) {
			// A connected node logs in again as someone else: its upstream
			// session was made with the old credentials.
			s.closeUpstream(sess, nil)
		}
		sess.auth = creds
		sess.log.Debug("AUTH", zap.String("user", user))
		s.continueConnect(now, sess, sess.authWill)
	case !s.g.cfg.RequireAuth && sess.phase != phaseNone:
		// The node wants to log in as itself and this gateway would log
		// it in with its own credentials: refuse rather than pretend.
		s.g.warn(sess.log, "CONNECT refused: AUTH sent, but this gateway does not take node credentials (node_auth.required is off)")
		s.refuseConnect(sess, snpacket.RejectedNotSupported)
	case !s.g.cfg.RequireAuth && (sess.state == sleepmgr.Active || sess.state == sleepmgr.Awake || sess.state == sleepmgr.Asleep):
		// Its CONNACK went out before the AUTH behind its CONNECT was
		// read: disconnect it before anything of its reaches the broker.
		s.g.warn(sess.log, "disconnected: AUTH sent, but this gateway does not take node credentials (node_auth.required is off)")
		s.send(sess, &snpacket.Disconnect{})
		s.g.stats.Closes[CloseConnectAborted].Add(1)
		sess.transition(sleepmgr.EvDisconnect)
		sess.supervise(now)
		s.closeUpstream(sess, nil)
		s.unbindSession(sess)
		s.forgetIfClean(sess)
	default:
		// A late duplicate of the AUTH of a connect that went on.
		sess.log.Debug("AUTH outside a CONNECT ignored")
	}
}

func sameCredentials(a, b *Credentials) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Username == b.Username && bytes.Equal(a.Password, b.Password)
}
