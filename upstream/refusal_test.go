package upstream

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

func TestReasonCodeErrorClassifies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		packet    string
		code      byte
		name      string
		permanent bool
		key       string
	}{
		{"CONNACK", 0x87, "not authorized", true, "broker.username / broker.password"},
		{"CONNACK", 0x86, "bad user name or password", true, "broker.username / broker.password"},
		{"CONNACK", 0x84, "unsupported protocol version", true, "broker.protocol_version"},
		{"CONNACK", 0x89, "server busy", false, ""},
		{"CONNACK", 0x97, "quota exceeded", false, ""},
		{"CONNACK", 0x04, "bad user name or password", true, "broker.username / broker.password"}, // 3.1.1
		{"CONNACK", 0x01, "unacceptable protocol version", true, "broker.protocol_version"},       // 3.1.1
		{"CONNACK", 0x03, "server unavailable", false, ""},                                        // 3.1.1
		{"PUBACK", 0x87, "not authorized", false, "broker.username / broker.password"},            // not a connect refusal
		{"DISCONNECT", 0x8E, "session taken over", false, ""},
		{"CONNACK", 0xFE, "", false, ""},
	} {
		t.Run(fmt.Sprintf("%s-%#x", tc.packet, tc.code), func(t *testing.T) {
			t.Parallel()
			e := &ReasonCodeError{Packet: tc.packet, Code: tc.code}
			if e.Name() != tc.name || e.Permanent() != tc.permanent || e.Key() != tc.key {
				t.Fatalf("got (%q, %v, %q), want (%q, %v, %q)", e.Name(), e.Permanent(), e.Key(), tc.name, tc.permanent, tc.key)
			}
			if gateway.IsPermanent(fmt.Errorf("wrapped: %w", e)) != tc.permanent {
				t.Fatalf("gateway.IsPermanent disagrees with Permanent()")
			}
			if tc.name != "" && !strings.Contains(e.Error(), tc.name) {
				t.Fatalf("Error() %q does not name %q", e.Error(), tc.name)
			}
		})
	}
}
