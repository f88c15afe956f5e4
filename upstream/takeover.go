package upstream

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// reasonSessionTakenOver is the MQTT 5 DISCONNECT reason code a broker
// sends when another connection with the same ClientID took the session.
const reasonSessionTakenOver = 0x8E

// takenOver reports whether err, from a lost connection, says another
// connection took the session over.
func takenOver(err error) bool {
	var rc *ReasonCodeError
	return errors.As(err, &rc) && rc.Packet == "DISCONNECT" && rc.Code == reasonSessionTakenOver
}

// endTakenOverLocked ends the session because another connection took it
// over (the node connected through another gateway). Reconnecting would
// take the session back, and the two gateways would fight over the
// ClientID for ever; so the session ends, without DISCONNECT (the
// connection is gone) and without reconnecting, and opts.Ended hears
// gateway.ErrTakenOver once. s.mu is held; s.cur is already nil.
func (s *session) endTakenOverLocked(cause error) {
	s.closing = true
	s.abort = nil
	if s.endConn != nil {
		s.endConn(ErrConnectionLost)
		s.endEpoch(ErrConnectionLost)
	}
	s.up.counters.takenOver.Add(1)
	s.log.Debug("upstream session taken over by another connection; not reconnecting", zap.Error(cause))
	ended := s.opts.Ended
	go func() {
		s.wg.Wait()
		_ = s.state.Close() // fails Publish calls still waiting for an ack
		if ended != nil {
			ended(fmt.Errorf("%w: %w", gateway.ErrTakenOver, cause))
		}
		close(s.done)
	}()
}

// takeoverDrops is how many reconnected connections in a row the broker
// may close right after CONNACK before the session is taken to have moved
// to another connection. Brokers that do not send DISCONNECT 0x8E
// (mosquitto 2.0.11, and every MQTT 3.1.1 broker) just close the old
// connection when another one with the same ClientID connects: two
// gateways then take the session from each other for ever. The session
// that was there first reconnects first, so it reaches this count first
// and gives up; the newcomer's first connection (made by Open) is not
// counted, so it wins.
const takeoverDrops = 3

// takeoverWindow is how young a reconnected connection must be when the
// broker closes it to count as taken over: twice the longest first retry
// delay of the other gateway (ReconnectBackoffMin), and at least 2 s for
// loaded machines.
func (u *Upstream) takeoverWindow() time.Duration {
	return max(4*u.cfg.ReconnectBackoffMin, 2*time.Second)
}

// errMovedAway explains a session ended by the takeover heuristic.
var errMovedAway = fmt.Errorf("broker closed the connection right after CONNACK %d times in a row: another connection uses this ClientID", takeoverDrops)

// dropRun counts the connections in a row that the broker closed (EOF or
// reset, without a reason code), soon after the reconnect loop made them.
// It is guarded by the session's mutex.
type dropRun struct {
	deadline time.Time // the current connection is young until then; zero: made by Open
	n        int
}

// reconnected notes a connection made by the reconnect loop.
func (d *dropRun) reconnected(window time.Duration) { d.deadline = time.Now().Add(window) }

// lost notes the loss of the current connection with err and reports
// whether the run is long enough to give up.
func (d *dropRun) lost(err error) bool {
	closedByBroker := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	young := !d.deadline.IsZero() && time.Now().Before(d.deadline) && closedByBroker
	d.deadline = time.Time{}
	if !young {
		d.n = 0
		return false
	}
	d.n++
	return d.n >= takeoverDrops
}
