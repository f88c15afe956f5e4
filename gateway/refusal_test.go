package gateway

import (
	"fmt"
	"testing"
	"testing/synctest"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// permanentErr is a refusal that retrying cannot fix, as the upstream
// package's ReasonCodeError for "not authorized".
type permanentErr struct{}

func (permanentErr) Error() string   { return "refused: not authorized" }
func (permanentErr) Permanent() bool { return true }

// A broker refusal that retrying cannot fix gets "not supported" (0x03), so
// the node stops retrying; transient trouble stays "congestion" (0x01).
func TestConnectRefusalCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want sn.ReturnCode
	}{
		{"permanent", permanentErr{}, sn.RejectedNotSupported},
		{"permanent wrapped", fmt.Errorf("upstream: %w", permanentErr{}), sn.RejectedNotSupported},
		{"transient", errDown, sn.RejectedCongestion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Config{})
				r.up.mu.Lock()
				r.up.openErr = tc.err
				r.up.mu.Unlock()
				r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
				r.expect(&sn.Connack{ReturnCode: tc.want})
				// Refused: the node has no session; once the broker
				// accepts, it connects.
				r.up.mu.Lock()
				r.up.openErr = nil
				r.up.mu.Unlock()
				r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
				r.expect(&sn.Connack{ReturnCode: sn.Accepted})
			})
		})
	}
}
