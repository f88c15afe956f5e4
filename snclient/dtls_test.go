package snclient_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
)

// startDTLSGateway runs a gateway with a DTLS listener configured by dcfg
// and returns an env whose addr is the DTLS listener's.
func startDTLSGateway(t *testing.T, dcfg dtlstransport.Config) *env {
	t.Helper()
	dcfg.Listen = "127.0.0.1:0"
	tr, err := dtlstransport.Listen(dcfg, zaptest.NewLogger(t).Named("dtls"))
	if err != nil {
		t.Fatalf("dtlstransport.Listen: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	tg := testbroker.EmbeddedTarget(t)
	g := testgw.Start(t, tg, gateway.Config{}, gateway.WithTransport(tr))
	return &env{addr: g.Addrs()[1].String(), broker: tg.Broker()}
}

func TestDTLSPSK(t *testing.T) {
	key := dtlstest.Key("node-1")
	e := startDTLSGateway(t, dtlstransport.Config{
		PSKFile: dtlstest.PSKFile(t, t.TempDir(), map[string][]byte{"node-1": key}),
	})
	w := e.watch(t, "dtls/#")
	c := client(t, e.addr, snclient.Options{ClientID: "node-1", // the gateway binds the ClientId to the PSK identity
		Dial: snclient.DialDTLS(snclient.DTLSConfig{PSKIdentity: "node-1", PSK: key})})
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := c.Publish(ctx(t), "dtls/up", []byte("secret"), 1, false); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got, want := next(t, w, "the publish on the broker"), (received{"dtls/up", "secret", 1, false}); got != want {
		t.Fatalf("broker got %+v, want %+v", got, want)
	}
	if err := c.Disconnect(ctx(t)); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
}

func TestDTLSWrongPSK(t *testing.T) {
	e := startDTLSGateway(t, dtlstransport.Config{
		PSKFile: dtlstest.PSKFile(t, t.TempDir(), map[string][]byte{"node-1": dtlstest.Key("node-1")}),
	})
	for name, cfg := range map[string]snclient.DTLSConfig{
		"wrong key":        {PSKIdentity: "node-1", PSK: dtlstest.Key("other")},
		"unknown identity": {PSKIdentity: "node-2", PSK: dtlstest.Key("node-1")},
	} {
		t.Run(name, func(t *testing.T) {
			cx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			c, err := snclient.DialClient(cx, e.addr, snclient.Options{Dial: snclient.DialDTLS(cfg)})
			if err == nil {
				err = c.Connect(cx)
				_ = c.Close()
			}
			if err == nil {
				t.Fatal("connected with a wrong PSK")
			}
			t.Logf("error (as expected): %v", err)
		})
	}
}

func TestDTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := dtlstest.NewCA(t, "test CA")
	srv := ca.Issue(t, "gateway", "dns:localhost")
	caFile := dtlstest.WriteFile(t, dir, "ca.pem", ca.PEM)
	e := startDTLSGateway(t, dtlstransport.Config{
		CertFile:     dtlstest.WriteFile(t, dir, "cert.pem", srv.CertPEM),
		KeyFile:      dtlstest.WriteFile(t, dir, "key.pem", srv.KeyPEM),
		ClientCAFile: caFile,
	})
	leaf := ca.Issue(t, "cert-node")
	w := e.watch(t, "dtls/#")
	c := client(t, e.addr, snclient.Options{ClientID: "cert-node", // the certificate's CN
		Dial: snclient.DialDTLS(snclient.DTLSConfig{CAFile: caFile, ServerName: "localhost",
			CertFile: dtlstest.WriteFile(t, dir, "client.pem", leaf.CertPEM),
			KeyFile:  dtlstest.WriteFile(t, dir, "client-key.pem", leaf.KeyPEM)})})
	if err := c.Connect(ctx(t)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := c.Publish(ctx(t), "dtls/cert", []byte("signed"), 1, false); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got, want := next(t, w, "the publish on the broker"), (received{"dtls/cert", "signed", 1, false}); got != want {
		t.Fatalf("broker got %+v, want %+v", got, want)
	}

	// The server name must match the gateway's certificate.
	cx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := snclient.DialClient(cx, e.addr, snclient.Options{
		Dial: snclient.DialDTLS(snclient.DTLSConfig{CAFile: caFile, ServerName: "elsewhere"})}); err == nil {
		t.Fatal("handshake with a mismatched server name succeeded")
	}
}

func TestDTLSConfigValidate(t *testing.T) {
	for _, cfg := range []snclient.DTLSConfig{
		{PSKIdentity: "a"},
		{PSK: []byte{1}},
		{PSKIdentity: "a", PSK: []byte{1}, CAFile: "ca.pem"},
		{CertFile: "c.pem"},
		{CAFile: "ca.pem", InsecureSkipVerify: true},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
		if _, err := snclient.DialDTLS(cfg)(ctx(t), "127.0.0.1:1885"); err == nil {
			t.Errorf("%+v: dial succeeded", cfg)
		}
	}
}
