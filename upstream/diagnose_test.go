package upstream

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

func TestDiagnose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want Diagnosis
	}{
		{&ReasonCodeError{Packet: "CONNACK", Code: 0x87}, Diagnosis{"not authorized", "0x87", "broker.username / broker.password"}},
		{fmt.Errorf("x: %w", &ReasonCodeError{Packet: "CONNACK", Code: 0x05}), Diagnosis{"not authorized", "0x05", "broker.username / broker.password"}},
		{&ReasonCodeError{Packet: "CONNACK", Code: 0xF0}, Diagnosis{"reason code 0xf0", "0xf0", ""}},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, Diagnosis{"connection refused", "", "broker.url"}},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), Diagnosis{"connect timeout", "", "broker.url / broker.connect_timeout"}},
		{fmt.Errorf("connect: %w", io.EOF), Diagnosis{"connection closed by the broker before CONNACK", "", "broker.protocol_version"}},
		{fmt.Errorf("dial: %w", x509.UnknownAuthorityError{}), Diagnosis{"TLS: broker certificate signed by an unknown authority", "", "broker.ca_file"}},
		{fmt.Errorf("dial: %w", x509.HostnameError{Host: "b.example"}), Diagnosis{"TLS: broker certificate is not valid for b.example", "", "broker.server_name"}},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}, Diagnosis{"TLS: handshake refused by the broker", "", "broker.cert_file / broker.key_file"}},
	} {
		if got := Diagnose(tc.err); got != tc.want {
			t.Errorf("Diagnose(%v) = %+v, want %+v", tc.err, got, tc.want)
		}
	}
}

// One line per reason per interval, then one line that says how many were
// held back.
func TestRefusalLogRateLimited(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.WarnLevel)
	l := newRefusalLog(zap.New(core), 10*time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	auth := &ReasonCodeError{Packet: "CONNACK", Code: 0x87}
	for range 100 {
		l.note(auth, "n")
	}
	l.note(&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "n") // another reason: its own line
	if n := logs.Len(); n != 2 {
		t.Fatalf("%d lines, want 2", n)
	}
	now = now.Add(10 * time.Second)
	l.note(auth, "n")
	all := logs.All()
	if len(all) != 3 {
		t.Fatalf("%d lines, want 3", len(all))
	}
	last := all[2].ContextMap()
	if last["reason"] != "not authorized" || last["code"] != "0x87" || last["fix"] != "broker.username / broker.password" || last["suppressed"] != int64(99) {
		t.Fatalf("line %q %v", all[2].Message, last)
	}
}

// A wrong password on a real broker: the refusal is permanent, names the
// reason and the keys to fix, and is logged once at warn.
func TestOpenWrongPassword(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.MosquittoWithUsers(t, map[string]string{"alice": "right"})
	core, logs := observer.New(zapcore.WarnLevel)
	u, err := New(Config{URL: tg.URL, Username: "alice", Password: "wrong", ConnectTimeout: 5 * time.Second}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err = u.Open(context.Background(), gateway.SessionOptions{ClientID: uniqueID("wrongpw"), CleanStart: true}, func(gateway.Message) {})
		if !gateway.IsPermanent(err) {
			t.Fatalf("Open: %v, want a permanent refusal", err)
		}
	}
	d := Diagnose(err)
	if d.Key != "broker.username / broker.password" || d.Code == "" {
		t.Fatalf("diagnosis %+v of %v", d, err)
	}
	if logs.Len() != 1 {
		t.Fatalf("%d warn lines, want 1: %v", logs.Len(), logs.All())
	}
	line := logs.All()[0]
	if line.Level != zapcore.WarnLevel || !strings.Contains(line.ContextMap()["fix"].(string), "broker.password") {
		t.Fatalf("line %v", line)
	}
	t.Logf("%s %v", line.Message, line.ContextMap())

	// The right password gets in.
	u2, err := New(Config{URL: tg.URL, Username: "alice", Password: "right"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := u2.Open(context.Background(), gateway.SessionOptions{ClientID: uniqueID("rightpw"), CleanStart: true}, func(gateway.Message) {})
	if err != nil {
		t.Fatalf("Open with the right password: %v", err)
	}
	_ = s.Close(context.Background())
}

// Errors the diagnosis cannot name share one budget: their text may differ
// in every line (ports).
func TestRefusalLogUnclassifiedShareBudget(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.WarnLevel)
	l := newRefusalLog(zap.New(core), 10*time.Second)
	for i := range 50 {
		l.note(fmt.Errorf("read tcp 127.0.0.1:%d: odd failure", 40000+i), "n")
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d lines, want 1", n)
	}
}

// TLS failures on a real TLS broker name the key to fix.
func TestDiagnoseTLS(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	addr := startTLSBroker(t, pki.serverTLS)
	_, port, _ := net.SplitHostPort(addr)
	good := Config{
		URL: "mqtts://127.0.0.1:" + port, CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.client,
		ServerName: "broker.test", ConnectTimeout: 5 * time.Second,
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		key    string
	}{
		{"unknown CA", func(c *Config) { c.CAFile = "" }, "broker.ca_file"},
		{"wrong server name", func(c *Config) { c.ServerName = "other.test" }, "broker.server_name"},
		{"no client certificate", func(c *Config) { c.CertFile, c.KeyFile = "", "" }, "broker.cert_file / broker.key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mutate(&cfg)
			u, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := u.Open(context.Background(), gateway.SessionOptions{ClientID: "bad", CleanStart: true}, func(gateway.Message) {})
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatal("Open succeeded")
			}
			if d := Diagnose(err); d.Key != tc.key || gateway.IsPermanent(err) {
				t.Fatalf("Diagnose(%v) = %+v, want key %q (and congestion: TLS trouble is not a broker refusal)", err, d, tc.key)
			}
		})
	}
}
