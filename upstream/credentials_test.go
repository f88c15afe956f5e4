package upstream

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

func TestCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cfg      Config
		opts     gateway.SessionOptions
		user     string
		pass     string
		passSent bool
	}{
		{"none", Config{URL: "mqtt://h"}, gateway.SessionOptions{ClientID: "n1"}, "", "", false},
		{"configured", Config{URL: "mqtt://h", Username: "gw", Password: "pw"}, gateway.SessionOptions{ClientID: "n1"}, "gw", "pw", true},
		{"templated", Config{URL: "mqtt://h", Username: "hub.example/{client_id}/?api-version=1", Password: "key-{client_id}", ClientIDPrefix: "p-"},
			gateway.SessionOptions{ClientID: "n1"}, "hub.example/n1/?api-version=1", "key-n1", true},
		{"url", Config{URL: "mqtt://alice:s3cret@h:1883"}, gateway.SessionOptions{ClientID: "n1"}, "alice", "s3cret", true},
		{"url percent-encoded", Config{URL: "mqtt://al%40ice:p%3Ass%2Fw@h"}, gateway.SessionOptions{ClientID: "n1"}, "al@ice", "p:ss/w", true},
		{"url empty password", Config{URL: "mqtt://alice:@h"}, gateway.SessionOptions{ClientID: "n1"}, "alice", "", true},
		{"url user only", Config{URL: "mqtt://alice@h"}, gateway.SessionOptions{ClientID: "n1"}, "alice", "", false},
		{"url templated", Config{URL: "mqtt://%7Bclient_id%7D:x@h"}, gateway.SessionOptions{ClientID: "n1"}, "n1", "x", true},
		{"node's own", Config{URL: "mqtt://h", Username: "gw", Password: "pw"},
			gateway.SessionOptions{ClientID: "n1", Auth: &gateway.Credentials{Username: "node", Password: []byte("np")}}, "node", "np", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, err := New(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			user, pass := u.credentials(tc.opts)
			if user != tc.user || string(pass) != tc.pass || (pass != nil) != tc.passSent {
				t.Fatalf("credentials = (%q, %q, sent %v), want (%q, %q, sent %v)", user, pass, pass != nil, tc.user, tc.pass, tc.passSent)
			}
		})
	}
}

func TestURLCredentialsBothPlacesRefused(t *testing.T) {
	t.Parallel()
	_, err := New(Config{URL: "mqtt://alice:s3cret@h", Username: "bob"}, nil)
	if err == nil || !strings.Contains(err.Error(), "broker.username / broker.password") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v, want one naming broker.username / broker.password without the password", err)
	}
}

// No error message repeats the password of broker.url.
func TestURLPasswordNeverInErrors(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"mqtt://alice:s3cret@h:notaport",
		"mqtt://alice:s3cret@:1883",
		"mqtt://alice:s3cret@h/path",
		"http://alice:s3cret@h",
		"mqtt://alice:s3cret@h\x7f",
	} {
		_, err := New(Config{URL: raw}, nil)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: err = %v", raw, err)
		}
	}
	if got := RedactURL("mqtt://alice:s3cret@host:1883"); got != "mqtt://alice:xxxxx@host:1883" {
		t.Fatalf("RedactURL = %q", got)
	}
	if got := RedactURL("mqtt://host:1883"); got != "mqtt://host:1883" {
		t.Fatalf("RedactURL = %q", got)
	}
}

// On a broker with a password file: the URL's credentials are used, and
// {client_id} logs each node in as itself (and as nobody else).
func TestCredentialsOnBroker(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.MosquittoWithUsers(t, map[string]string{"alice": "s3:cret", "n1": "pw-n1", "n2": "pw-n2"})
	host := strings.TrimPrefix(tg.URL, "mqtt://")
	open := func(u *Upstream, id string) error {
		s, err := u.Open(context.Background(), gateway.SessionOptions{ClientID: id, CleanStart: true}, func(gateway.Message) {})
		if err == nil {
			_ = s.Close(context.Background())
		}
		return err
	}

	core, logs := observer.New(zapcore.DebugLevel)
	u, err := New(Config{URL: "mqtt://alice:s3%3Acret@" + host}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if err := open(u, uniqueID("url")); err != nil {
		t.Fatalf("URL credentials: %v", err)
	}
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "s3") || strings.Contains(strings.Join(fieldStrings(e), " "), "s3:cret") {
			t.Fatalf("password logged: %v", e)
		}
	}

	per, err := New(Config{URL: tg.URL, Username: "{client_id}", Password: "pw-{client_id}"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2"} {
		if err := open(per, id); err != nil {
			t.Fatalf("node %s as itself: %v", id, err)
		}
	}
	if err := open(per, "n3"); !gateway.IsPermanent(err) {
		t.Fatalf("unknown node n3: %v, want a permanent refusal", err)
	}
}

func fieldStrings(e observer.LoggedEntry) []string {
	var out []string
	for k, v := range e.ContextMap() {
		if s, ok := v.(string); ok {
			out = append(out, k+"="+s)
		}
	}
	return out
}
