package upstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

type testPKI struct {
	dir                string
	caFile             string
	clientCert, client string // files
	serverTLS          *tls.Config
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caDER := mkCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	})
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, srvDER := mkCert(t, ca, caKey, &x509.Certificate{
		Subject: pkix.Name{CommonName: "broker.test"}, DNSNames: []string{"broker.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	cliKey, cliDER := mkCert(t, ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "gateway"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p := &testPKI{
		dir:        dir,
		caFile:     writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER),
		clientCert: writePEM(t, dir, "client.pem", "CERTIFICATE", cliDER),
		client:     writeKey(t, dir, "client-key.pem", cliKey),
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p.serverTLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	return p
}

var serial int64 //nolint:gochecknoglobals // test-only certificate serials

func mkCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeKey(t *testing.T, dir, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "EC PRIVATE KEY", der)
}

// startTLSBroker runs mochi with a TLS listener requiring client certs.
func startTLSBroker(t *testing.T, tc *tls.Config) string {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0", TLSConfig: tc})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return l.Address()
}

func TestTLS(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	addr := startTLSBroker(t, pki.serverTLS)
	_, port, _ := net.SplitHostPort(addr)

	good := Config{
		URL:      "mqtts://127.0.0.1:" + port,
		CAFile:   pki.caFile,
		CertFile: pki.clientCert, KeyFile: pki.client,
		ServerName:     "broker.test",
		ConnectTimeout: 5 * time.Second,
	}
	u, err := New(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := opener(u)
	in := make(inbox, 4)
	s := open(t, gateway.SessionOptions{ClientID: "tls", CleanStart: true}, in.deliver)
	subscribe(t, s, "tls/#", 2)
	publish(t, s, "tls/x", "secret", 2, false)
	in.expect(t, "tls/x", "secret", 2)

	for name, mutate := range map[string]func(*Config){
		"no client cert":   func(c *Config) { c.CertFile, c.KeyFile = "", "" },
		"unknown CA":       func(c *Config) { c.CAFile = "" },
		"wrong servername": func(c *Config) { c.ServerName = "other.test" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			mutate(&cfg)
			u, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if s, err := u.Open(ctx, gateway.SessionOptions{ClientID: "bad", CleanStart: true}, func(gateway.Message) {}); err == nil {
				_ = s.Close(ctx)
				t.Fatal("Open succeeded")
			} else {
				t.Logf("Open: %v", err)
			}
		})
	}
}
