package main

import (
	"context"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
)

func TestPublishDTLS(t *testing.T) {
	key := dtlstest.Key("node-1")
	port, b := testgw.StartDTLS(t, map[string][]byte{"node-1": key})
	seen := make(chan msg, 10)
	if err := b.Subscribe("#", func(topic string, payload []byte, qos byte, retain bool) {
		seen <- msg{topic, string(payload), qos, retain}
	}); err != nil {
		t.Fatal(err)
	}
	// No -i: the client id defaults to the PSK identity, which the
	// gateway requires.
	code, _, errOut := runArgs(t, "", "--dtls", "-p", port, "--psk-identity", "node-1", "--psk", hex.EncodeToString(key),
		"-t", "dtls/a", "-m", "secret", "-q", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	select {
	case got := <-seen:
		if want := (msg{"dtls/a", "secret", 1, false}); got != want {
			t.Errorf("broker got %+v, want %+v", got, want)
		}
	case <-time.After(testgw.Wait):
		t.Fatal("no message on the broker")
	}

	// A wrong key fails the handshake: the gateway drops the client's
	// Finished, so the handshake runs until the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errBuf strings.Builder
	code = run(ctx, []string{"--dtls", "-p", port, "--psk-identity", "node-1", "--psk", hex.EncodeToString(dtlstest.Key("x")),
		"-t", "dtls/a", "-m", "secret", "-q", "1"}, strings.NewReader(""), io.Discard, &errBuf)
	if code != 1 || !strings.Contains(errBuf.String(), "handshake") {
		t.Errorf("wrong key: exit %d, stderr %q", code, errBuf.String())
	}
}

func TestDTLSFlags(t *testing.T) {
	cfg, code := parse([]string{"--dtls", "--psk-identity", "n1", "--psk", "0102", "-t", "a", "-m", "x"}, io.Discard, &strings.Builder{})
	if cfg == nil {
		t.Fatalf("parse: exit %d", code)
	}
	if cfg.addr != "127.0.0.1:1885" || cfg.opts.ClientID != "n1" || cfg.opts.Dial == nil {
		t.Errorf("addr %q, client id %q, dial set %v", cfg.addr, cfg.opts.ClientID, cfg.opts.Dial != nil)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--psk-identity", "n1", "--psk", "01"}, "need --dtls"},
		{[]string{"--cafile", "ca.pem"}, "need --dtls"},
		{[]string{"--dtls", "--psk-identity", "n1"}, "go together"},
		{[]string{"--dtls", "--psk", "01"}, "go together"},
		{[]string{"--dtls", "--psk-identity", "n1", "--psk", "zz"}, "hexadecimal"},
		{[]string{"--dtls", "--psk-identity", "n1", "--psk", "01", "--cafile", "ca.pem"}, "cannot be combined"},
		{[]string{"--dtls", "--cert", "c.pem"}, "--cert and --key"},
		{[]string{"--dtls", "--insecure", "--cafile", "ca.pem"}, "--insecure"},
	}
	for _, tc := range cases {
		code, _, errOut := runArgs(t, "", append(tc.args, "-t", "a", "-m", "x")...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
