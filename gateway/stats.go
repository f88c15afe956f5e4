package gateway

import (
	"errors"
	"sync/atomic"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// CloseReason says why a node left the active, asleep or awake states.
type CloseReason uint8

// Close reasons.
const (
	CloseDisconnect     CloseReason = iota // DISCONNECT from the node
	CloseKeepAlive                         // keep-alive expired: lost
	CloseSleepExpired                      // sleep duration expired: lost
	CloseRetries                           // retransmissions exhausted: lost
	CloseTakeover                          // the ClientId connected again from elsewhere
	CloseConnectAborted                    // will handshake aborted or timed out
	CloseMoved                             // the broker session moved to another connection (another gateway)
	closeReasons
)

var closeReasonNames = [...]string{"disconnect", "keepalive_expired", "sleep_expired", "retries_exhausted", "takeover", "connect_aborted", "moved"} //nolint:gochecknoglobals // constant table

func (r CloseReason) String() string {
	if int(r) < len(closeReasonNames) {
		return closeReasonNames[r]
	}
	return "unknown"
}

// CloseReasons lists every CloseReason, for metrics.
func CloseReasons() []CloseReason {
	out := make([]CloseReason, closeReasons)
	for i := range out {
		out[i] = CloseReason(i)
	}
	return out
}

// MalformedKind classifies a dropped datagram by the codec's error.
type MalformedKind uint8

// Malformed datagram kinds.
const (
	MalformedTooShort MalformedKind = iota
	MalformedLengthMismatch
	MalformedUnknownType
	MalformedReservedTopicIDType
	MalformedOther
	MalformedReservedQoS
	malformedKinds
)

var malformedNames = [...]string{"too_short", "length_mismatch", "unknown_type", "reserved_topic_id_type", "malformed", "reserved_qos"} //nolint:gochecknoglobals // constant table

func (k MalformedKind) String() string {
	if int(k) < len(malformedNames) {
		return malformedNames[k]
	}
	return "unknown"
}

// MalformedKinds lists every MalformedKind, for metrics.
func MalformedKinds() []MalformedKind {
	out := make([]MalformedKind, malformedKinds)
	for i := range out {
		out[i] = MalformedKind(i)
	}
	return out
}

func malformedKind(err error) MalformedKind {
	switch {
	case errors.Is(err, snpacket.ErrTooShort):
		return MalformedTooShort
	case errors.Is(err, snpacket.ErrLengthMismatch):
		return MalformedLengthMismatch
	case errors.Is(err, snpacket.ErrUnknownType):
		return MalformedUnknownType
	case errors.Is(err, snpacket.ErrReservedTopicIDType):
		return MalformedReservedTopicIDType
	case errors.Is(err, snpacket.ErrReservedQoS):
		return MalformedReservedQoS
	default:
		return MalformedOther
	}
}

// Stats are the gateway's counters, safe to read at any time. Arrays
// indexed by message type use the MsgType value; by QoS, QoS+1 (so index 0
// is QoS -1).
type Stats struct {
	DatagramsIn     atomic.Uint64
	ReadBatches     atomic.Uint64 // batched reads from UDP listeners (DatagramsIn / ReadBatches: datagrams per system call)
	DatagramsOut    atomic.Uint64
	BytesIn         atomic.Uint64
	BytesOut        atomic.Uint64
	InByType        [256]atomic.Uint64
	InBytesByType   [256]atomic.Uint64
	OutByType       [256]atomic.Uint64
	OutBytesByType  [256]atomic.Uint64
	Malformed       atomic.Uint64
	MalformedByKind [malformedKinds]atomic.Uint64
	InboxDropped    atomic.Uint64
	NoSession       atomic.Uint64
	WriteErrors     atomic.Uint64
	QoSMinusOneIn   atomic.Uint64
	QoSMinusOneOut  atomic.Uint64
	QoSMinusOneDrop atomic.Uint64
	// PublishesUp counts node messages the broker accepted, by node QoS.
	PublishesUp    atomic.Uint64
	PublishesUpQoS [4]atomic.Uint64
	// PublishesDown counts PUBLISH sent to nodes (first transmissions), by QoS.
	PublishesDown    atomic.Uint64
	PublishesDownQoS [4]atomic.Uint64
	Retransmits      atomic.Uint64
	// ReturnCodes counts the return codes sent to nodes (CONNACK, REGACK,
	// PUBACK, SUBACK, WILL*RESP), by code 0 to 3.
	ReturnCodes [4]atomic.Uint64
	// BufferDropped counts messages for nodes that were dropped, and
	// BufferDroppedQoS0/Overflow/Budget/TooLarge/Unacked why.
	BufferDropped         atomic.Uint64
	BufferDroppedQoS0     atomic.Uint64
	BufferDroppedOverflow atomic.Uint64
	BufferDroppedBudget   atomic.Uint64
	BufferDroppedTooLarge atomic.Uint64
	BufferDroppedUnacked  atomic.Uint64 // retransmissions exhausted (see exhausted)
	Connects              atomic.Uint64
	Closes                [closeReasons]atomic.Uint64
	Lost                  atomic.Uint64
	UpstreamClosed        atomic.Uint64
	UpstreamFailures      atomic.Uint64
	StoreFailures         atomic.Uint64 // store commits that failed (persist.go)
	IdentityRefused       atomic.Uint64
	ForwarderDenied       atomic.Uint64
	WakeCycles            atomic.Uint64
	// Rejected counts node messages refused before they reached the
	// broker (answered with a return code, or dropped at QoS 0 and -1),
	// by reason.
	Rejected [rejectReasons]atomic.Uint64
	// Limited counts requests refused, and messages dropped or held, by a
	// bound (limits.go, amplify.go), by reason.
	Limited [limitReasons]atomic.Uint64
}

// countOut records a datagram sent.
func (st *Stats) countOut(t snpacket.MsgType, n int) {
	st.DatagramsOut.Add(1)
	st.BytesOut.Add(uint64(n))
	st.OutByType[t].Add(1)
	st.OutBytesByType[t].Add(uint64(n))
}

// countIn records a datagram decoded.
func (st *Stats) countIn(t snpacket.MsgType, n int) {
	st.InByType[t].Add(1)
	st.InBytesByType[t].Add(uint64(n))
}

// returnCode returns the return code p carries, if any.
func returnCodeOf(p snpacket.Packet) (snpacket.ReturnCode, bool) {
	switch p := p.(type) {
	case *snpacket.Connack:
		return p.ReturnCode, true
	case *snpacket.Regack:
		return p.ReturnCode, true
	case *snpacket.Puback:
		return p.ReturnCode, true
	case *snpacket.Suback:
		return p.ReturnCode, true
	case *snpacket.WillTopicResp:
		return p.ReturnCode, true
	case *snpacket.WillMsgResp:
		return p.ReturnCode, true
	}
	return 0, false
}
