package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed ECDSA certificate and its key as PEM
// files named name.pem and name.key in dir.
func writeCert(t *testing.T, dir, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, name+".pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write(t, filepath.Join(dir, name+".key"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// loadAndCheck writes yaml as dir/gateway.yaml and runs what
// --check-config runs.
func loadAndCheck(t *testing.T, dir, yaml string) error {
	t.Helper()
	p := filepath.Join(dir, "gateway.yaml")
	write(t, p, yaml)
	c, err := Load(p)
	if err != nil {
		return err
	}
	return c.CheckStart()
}

// --check-config opens every file a start would, relative to the config
// file's folder, and names the key of each problem.
func TestCheckStartOpensFiles(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, "gateway")
	writeCert(t, dir, "other")
	writeCert(t, dir, "ca")
	write(t, filepath.Join(dir, "psk.txt"), "# nodes\nnode-1:00112233445566778899aabbccddeeff\n")
	write(t, filepath.Join(dir, "bad-psk.txt"), "node-1:00112233445566778899aabbccddeeff\nnode-2 no colon\n")
	write(t, filepath.Join(dir, "not-a-ca.pem"), "hello\n")
	const head = "listen:\n  udp: \"127.0.0.1:0\"\n  dtls: \"127.0.0.1:0\"\ndtls:\n"

	// Relative names resolve against the config file's folder, whatever
	// the working directory.
	good := head + "  psk_file: psk.txt\n  cert_file: gateway.pem\n  key_file: gateway.key\n  client_ca_file: ca.pem\n"
	if err := loadAndCheck(t, dir, good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, c := range []struct{ name, yaml, want string }{
		{"missing PSK file", head + "  psk_file: nope.txt\n", "dtls.psk_file"},
		{"bad PSK line", head + "  psk_file: bad-psk.txt\n", "bad-psk.txt:2"},
		{"missing certificate", head + "  psk_file: psk.txt\n  cert_file: nope.pem\n  key_file: gateway.key\n  bind_identity: false\n", "dtls.cert_file"},
		{"key does not match", head + "  cert_file: gateway.pem\n  key_file: other.key\n  bind_identity: false\n", "private key does not match"},
		{"CA does not parse", head + "  cert_file: gateway.pem\n  key_file: gateway.key\n  client_ca_file: not-a-ca.pem\n", "dtls.client_ca_file"},
		{"missing CA", head + "  cert_file: gateway.pem\n  key_file: gateway.key\n  client_ca_file: nope.pem\n", "dtls.client_ca_file"},
		{"broker CA", "broker:\n  url: mqtts://127.0.0.1:8883\n  ca_file: not-a-ca.pem\n", "broker.ca_file"},
	} {
		err := loadAndCheck(t, dir, c.yaml)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	// Two problems: both reported.
	err := loadAndCheck(t, dir, head+"  psk_file: nope.txt\n  cert_file: gateway.pem\n  key_file: other.key\n")
	if err == nil || !strings.Contains(err.Error(), "dtls.psk_file") || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("two problems: %v", err)
	}
}

func TestCheckStartOverlappingListeners(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want string // "" means no overlap
	}{
		{"listen:\n  udp: [\"0.0.0.0:1884\", \"[::]:1884\"]\n", `listen.udp "0.0.0.0:1884" and listen.udp "[::]:1884" overlap`},
		{"listen:\n  udp: [\"[::]:1884\", \"10.0.0.1:1884\"]\n", "wildcard address already covers"},
		{"listen:\n  udp: [\"127.0.0.1:1884\", \"127.0.0.1:1884\"]\n", "list each address once"},
		{"listen:\n  udp: \"0.0.0.0:1884\"\n  dtls: \"0.0.0.0:1884\"\ndtls:\n  psk_file: /dev/null\n", "listen.dtls"},
		{"listen:\n  udp: \"[::]:1884\"\nadmin:\n  listen: \"127.0.0.1:1884\"\n", ""}, // TCP and UDP
		{"listen:\n  udp: [\"127.0.0.1:1884\", \"[::1]:1884\"]\n", ""},                // two specific addresses
		{"listen:\n  udp: [\"0.0.0.0:1884\", \"0.0.0.0:1885\"]\n", ""},                // two ports
		{"listen:\n  udp: [\"127.0.0.1:0\", \"127.0.0.1:0\"]\n", ""},                  // free ports
		{"admin:\n  listen: \"127.0.0.1:1883\"\nembedded_broker:\n  listen: \"127.0.0.1:1883\"\n", `embedded_broker.listen "127.0.0.1:1883"`},
		{"listen:\n  udp: \"nohost.invalid:1884\"\n", "nohost.invalid"},
	} {
		cfg, err := Parse(strings.NewReader(c.yaml))
		if err == nil {
			err = cfg.CheckStart()
		}
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v, want no error", c.yaml, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: %v, want an error mentioning %q", c.yaml, err, c.want)
		}
	}
}

// Error messages never show Go's type dumps.
func TestUnknownKeyReadsLikeEnglish(t *testing.T) {
	_, err := Parse(strings.NewReader("broker:\n  urll: mqtt://x\n"))
	if err == nil || strings.Contains(err.Error(), "struct") || strings.Contains(err.Error(), "yaml:") {
		t.Fatalf("%v", err)
	}
	if got := KnownKeys("broker"); len(got) == 0 || got[0] != "ca_file" {
		t.Errorf("KnownKeys(broker) = %v", got)
	}
	if KnownKeys("nope") != nil {
		t.Error("KnownKeys of an unknown section")
	}
}

// A file the service may not read says how to fix it.
func TestPermissionHint(t *testing.T) {
	err := fmt.Errorf("dtls: dtls.psk_file: %w", &os.PathError{Op: "open", Path: "/etc/mqttsn-gateway/psk.txt", Err: fs.ErrPermission})
	if h := permissionHint(err); !strings.Contains(h, "chgrp mqttsn-gateway FILE && chmod 0640 FILE") {
		t.Errorf("hint %q", h)
	}
	if h := permissionHint(os.ErrNotExist); h != "" {
		t.Errorf("hint for a missing file: %q", h)
	}
}
