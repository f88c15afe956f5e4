package dtlstransport

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
)

func TestValidateNamesConfigKeys(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{PSKFile: "p"}, "listen.dtls is empty"},
		{Config{Listen: "nonsense", PSKFile: "p"}, "listen.dtls \"nonsense\""},
		{Config{Listen: ":1885"}, "set dtls.psk_file"},
		{Config{Listen: ":1885", CertFile: "c"}, "dtls.key_file is empty"},
		{Config{Listen: ":1885", KeyFile: "k"}, "dtls.cert_file is empty"},
		{Config{Listen: ":1885", PSKFile: "p", ClientCAFile: "ca"}, "dtls.client_ca_file needs dtls.cert_file"},
		{Config{Listen: ":1885", CertFile: "c", KeyFile: "k", PSKIdentityHint: "h"}, "dtls.psk_identity_hint needs dtls.psk_file"},
		{Config{Listen: ":1885", PSKFile: "p", MaxHandshakes: -1}, "max handshakes"},
		{Config{Listen: ":1885", PSKFile: "p", IdleTimeout: -time.Second}, "idle timeout"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{Listen: "127.0.0.1:0", PSKFile: "p"}).Validate(); err != nil {
		t.Fatal(err)
	}
	d := Config{}.WithDefaults()
	if d.HandshakeTimeout != 30*time.Second || d.MaxHandshakes != 256 || d.IdleTimeout != 25*time.Hour {
		t.Fatalf("defaults %+v", d)
	}
}

func TestParsePSK(t *testing.T) {
	keys, err := parsePSK("psk.txt", strings.NewReader(`
# nodes of building 4
node-1:000102030405060708090a0b0c0d0e0f
  urn:dev:ops:42 : 0F0E0D0C0B0A09080706050403020100

`))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || len(keys["node-1"]) != 16 || keys["urn:dev:ops:42"][0] != 0x0f {
		t.Fatalf("keys %x", keys)
	}
	for text, want := range map[string]string{
		"a:00\nno-colon\n":   "psk.txt:2: want identity:hexkey",
		"a:00\n:0011\n":      "psk.txt:2: empty identity",
		"a:00\n\nb:xyz\n":    "psk.txt:3: identity \"b\": key is not hexadecimal",
		"a:\n":               "psk.txt:1: identity \"a\": key is not hexadecimal",
		"a:00\na:01\n":       "psk.txt:2: identity \"a\" is listed twice",
		"# nothing here\n\n": "holds no identity:hexkey line",
	} {
		if _, err := parsePSK("psk.txt", strings.NewReader(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", text, err, want)
		}
	}
}

func TestListenFileErrors(t *testing.T) {
	dir := t.TempDir()
	ca := dtlstest.NewCA(t, "ca")
	leaf := ca.Issue(t, "gw", "localhost")
	cert := dtlstest.WriteFile(t, dir, "cert.pem", leaf.CertPEM)
	key := dtlstest.WriteFile(t, dir, "key.pem", leaf.KeyPEM)
	rsaCert, rsaKey := rsaPair(t, dir)
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"missing psk file": {Config{PSKFile: filepath.Join(dir, "none.txt")}, "dtls.psk_file"},
		"bad psk line":     {Config{PSKFile: dtlstest.WriteFile(t, dir, "bad.txt", []byte("# x\n\nn1 00\n"))}, "bad.txt:3"},
		"missing cert":     {Config{CertFile: filepath.Join(dir, "none.pem"), KeyFile: key}, "dtls.cert_file"},
		"rsa key":          {Config{CertFile: rsaCert, KeyFile: rsaKey}, "dtls.key_file"},
		"bad ca":           {Config{CertFile: cert, KeyFile: key, ClientCAFile: key}, "dtls.client_ca_file"},
		"missing ca":       {Config{CertFile: cert, KeyFile: key, ClientCAFile: filepath.Join(dir, "none.pem")}, "dtls.client_ca_file"},
		"port in use":      {Config{CertFile: cert, KeyFile: key}, "listen.dtls"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Listen = "127.0.0.1:0"
			if name == "port in use" {
				tr, err := Listen(Config{Listen: "127.0.0.1:0", CertFile: cert, KeyFile: key}, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				tc.cfg.Listen = tr.LocalAddr().String()
			}
			tr, err := Listen(tc.cfg, nil)
			if err == nil {
				_ = tr.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func rsaPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsa"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "rsa-cert.pem")
	keyFile = filepath.Join(dir, "rsa-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
