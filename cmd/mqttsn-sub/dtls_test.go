package main

import (
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
)

func TestSubscribeDTLS(t *testing.T) {
	key := dtlstest.Key("node-1")
	port, b := testgw.StartDTLS(t, map[string][]byte{"node-1": key})
	// A retained message arrives as soon as the subscription is made.
	if err := b.Publish("dtls/a", []byte("secret"), true, 1); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runArgs(t, "--dtls", "-p", port, "--psk-identity", "node-1", "--psk", hex.EncodeToString(key),
		"-t", "dtls/#", "-q", "1", "-v", "-C", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "dtls/a secret\n" {
		t.Errorf("output %q", out)
	}
}

func TestDTLSFlags(t *testing.T) {
	cfg, code := parse([]string{"--dtls", "--psk-identity", "n1", "--psk", "0102", "-t", "a"}, io.Discard, &strings.Builder{})
	if cfg == nil {
		t.Fatalf("parse: exit %d", code)
	}
	if cfg.addr != "127.0.0.1:1885" || cfg.opts.ClientID != "n1" || cfg.opts.Dial == nil {
		t.Errorf("addr %q, client id %q, dial set %v", cfg.addr, cfg.opts.ClientID, cfg.opts.Dial != nil)
	}
	for _, args := range [][]string{{"--psk", "01"}, {"--dtls", "--key", "k.pem"}} {
		if code, _, errOut := runArgs(t, append(args, "-t", "a")...); code != 2 {
			t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
		}
	}
}
