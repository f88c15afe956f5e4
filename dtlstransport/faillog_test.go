package dtlstransport

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestFailLogRateLimit(t *testing.T) {
	var f failLog
	t0 := time.Unix(1000, 0)
	for i := range failLogBurst {
		if ok, s := f.allow(t0.Add(time.Duration(i) * time.Millisecond)); !ok || s != 0 {
			t.Fatalf("line %d: allow = %v, %d", i, ok, s)
		}
	}
	for i := range 5 {
		if ok, _ := f.allow(t0.Add(time.Second)); ok {
			t.Fatalf("line %d beyond the burst allowed", failLogBurst+i)
		}
	}
	// A new window: allowed, and it says how many were left out.
	if ok, s := f.allow(t0.Add(failLogWindow)); !ok || s != 5 {
		t.Fatalf("new window: allow = %v, suppressed %d; want true, 5", ok, s)
	}
	if ok, s := f.allow(t0.Add(failLogWindow + time.Second)); !ok || s != 0 {
		t.Fatalf("second line of the window: allow = %v, %d", ok, s)
	}
}

func TestHandshakeFailureReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("handshake: %w", errUnknownIdentity), "unknown PSK identity"},
		{context.DeadlineExceeded, "timeout: no answer from the client (wrong PSK key, or the client gave up)"},
		{errors.New("server required client verification, but got none"), "no client certificate signed by dtls.client_ca_file"},
		{errors.New("x509: certificate signed by unknown authority"), "client certificate not accepted (unknown CA?)"},
		{errors.New("certificate chain is not signed by an acceptable CA"), "client certificate not accepted (unknown CA?)"},
		{errors.New("alert: Alert LevelFatal: DecryptError"), "keys do not match (wrong PSK key?)"},
		{errors.New("expected and actual verify data does not match"), "keys do not match (wrong PSK key?)"},
		{errors.New("client+server do not support any shared cipher suites"), "no cipher suite in common"},
		{errors.New("something else"), "other"},
	} {
		if got := handshakeFailureReason(c.err); got != c.want {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}
