package test

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// Issue 15 item 4: a failed DTLS handshake leaves an info line naming the
// peer and the reason; the PSK identity hint reaches the client.
func TestDTLSHandshakeFailureLoggedAndHint(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		core, logs := observer.New(zapcore.InfoLevel)
		log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
		dcfg := dtlsPSK(t, map[string][]byte{"node": dtlstest.Key("right")})
		dcfg.HandshakeTimeout = time.Second // the wrong key shows as a timeout
		dcfg.PSKIdentityHint = "gw-hint"
		dcfg.Listen = "127.0.0.1:0"
		tr, err := dtlstransport.Listen(dcfg, log.Named("dtls"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		e := RunGateway(t, tg, gateway.Config{}, gateway.WithTransport(tr))
		addr := e.GW.Addrs()[1].String()

		failed := func(from string) []observer.LoggedEntry {
			return logs.Filter(func(l observer.LoggedEntry) bool {
				return l.Message == "DTLS handshake failed" && l.Level == zapcore.InfoLevel && l.ContextMap()["addr"] == from
			}).All()
		}
		for _, c := range []struct {
			name    string
			opts    []dtls.ClientOption
			timeout time.Duration
			reason  string
		}{
			{"unknown identity", dtlsPSKClient("intruder", dtlstest.Key("right")), Wait, "unknown PSK identity"},
			{"wrong key", dtlsPSKClient("node", dtlstest.Key("wrong")), 3 * time.Second, "timeout: no answer from the client (wrong PSK key, or the client gave up)"},
		} {
			sc, err := dtlstest.NewSwapConn("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			from := sc.LocalAddr().String()
			if _, err := dtlsDial(t, addr, sc, c.timeout, c.opts...); err == nil {
				t.Fatalf("%s: handshake succeeded", c.name)
			}
			Eventually(t, c.name+" logged", func() bool { return len(failed(from)) == 1 })
			if got := failed(from)[0].ContextMap()["reason"]; got != c.reason {
				t.Errorf("%s: reason %q, want %q", c.name, got, c.reason)
			}
		}

		// The hint reaches a client that asks for it; the handshake and
		// the session work.
		var mu sync.Mutex
		var hint string
		opts := dtlsPSKClient("node", dtlstest.Key("right"), dtls.WithPSK(func(h []byte) ([]byte, error) {
			mu.Lock()
			hint = string(h)
			mu.Unlock()
			return dtlstest.Key("right"), nil
		}))
		n := dtlsMustDial(t, addr, nil, opts...)
		n.Connect("node")
		mu.Lock()
		defer mu.Unlock()
		if hint != "gw-hint" {
			t.Fatalf("client saw hint %q", hint)
		}
	})
}

// Certificate handshakes: no client certificate, or one from another CA,
// each leave an info line with the peer's address and the reason.
func TestDTLSCertificateFailureLogged(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		core, logs := observer.New(zapcore.InfoLevel)
		log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
		dir := t.TempDir()
		ca := dtlstest.NewCA(t, "sensor CA")
		srv := ca.Issue(t, "gateway", "localhost")
		tr, err := dtlstransport.Listen(dtlstransport.Config{
			Listen:       "127.0.0.1:0",
			CertFile:     dtlstest.WriteFile(t, dir, "cert.pem", srv.CertPEM),
			KeyFile:      dtlstest.WriteFile(t, dir, "key.pem", srv.KeyPEM),
			ClientCAFile: dtlstest.WriteFile(t, dir, "ca.pem", ca.PEM),
		}, log.Named("dtls"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		e := RunGateway(t, tg, gateway.Config{}, gateway.WithTransport(tr))
		addr := e.GW.Addrs()[1].String()
		other := dtlstest.NewCA(t, "someone else's CA").Issue(t, "cert-node")
		for _, c := range []struct {
			name   string
			extra  []dtls.ClientOption
			reason string
		}{
			{"no client certificate", nil, "no client certificate signed by dtls.client_ca_file"},
			// pion's client sends no certificate the server's CAs did not sign.
			{"unknown CA", []dtls.ClientOption{dtls.WithCertificates(other.TLS)}, "no client certificate signed by dtls.client_ca_file"},
		} {
			sc, err := dtlstest.NewSwapConn("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			from := sc.LocalAddr().String()
			opts := append([]dtls.ClientOption{
				dtls.WithRootCAs(ca.Pool()), dtls.WithServerName("localhost"),
				dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
				dtls.WithLoggerFactory(dtlstest.QuietLogger()),
			}, c.extra...)
			if _, err := dtlsDial(t, addr, sc, Wait, opts...); err == nil {
				t.Fatalf("%s: handshake succeeded", c.name)
			}
			var got []observer.LoggedEntry
			Eventually(t, c.name+" logged", func() bool {
				got = logs.Filter(func(l observer.LoggedEntry) bool {
					return l.Message == "DTLS handshake failed" && l.ContextMap()["addr"] == from
				}).All()
				return len(got) == 1
			})
			if r := got[0].ContextMap()["reason"]; r != c.reason {
				t.Errorf("%s: reason %q (error %v), want %q", c.name, r, got[0].ContextMap()["error"], c.reason)
			}
		}
	})
}
