package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
)

// README's certificate example: the gateway's certificate names
// gateway.example; a client that reaches it by address checks that name
// with --server-name.
func TestServerNameFlag(t *testing.T) {
	dir := t.TempDir()
	ca := dtlstest.NewCA(t, "Sensor CA")
	gw := ca.Issue(t, "gateway.example", "dns:gateway.example")
	node := ca.Issue(t, "node-1")
	files := map[string][]byte{"ca.pem": ca.PEM, "gateway.pem": gw.CertPEM, "gateway.key": gw.KeyPEM, "node-1.pem": node.CertPEM, "node-1.key": node.KeyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := dtlstransport.Listen(dtlstransport.Config{Listen: "127.0.0.1:0", CertFile: filepath.Join(dir, "gateway.pem"),
		KeyFile: filepath.Join(dir, "gateway.key"), ClientCAFile: filepath.Join(dir, "ca.pem")}, zaptest.NewLogger(t).Named("dtls"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	testgw.Start(t, testbroker.EmbeddedTarget(t), gateway.Config{}, gateway.WithTransport(tr))
	port := strconv.Itoa(tr.LocalAddr().(*net.UDPAddr).Port)
	pub := func(extra ...string) (int, string) {
		ctx, cancel := context.WithTimeout(testgw.Context(t), testgw.Wait)
		defer cancel()
		var errOut strings.Builder
		args := append([]string{"--dtls", "-h", "127.0.0.1", "-p", port, "--cafile", filepath.Join(dir, "ca.pem"),
			"--cert", filepath.Join(dir, "node-1.pem"), "--key", filepath.Join(dir, "node-1.key"), "-t", "a/b", "-m", "x", "-q", "1"}, extra...)
		code := run(ctx, args, strings.NewReader(""), io.Discard, &errOut)
		return code, errOut.String()
	}
	if code, errOut := pub(); code != 1 || !strings.Contains(errOut, "give --server-name") {
		t.Errorf("by address without --server-name: exit %d: %s", code, errOut)
	}
	if code, errOut := pub("--server-name", "gateway.example"); code != 0 {
		t.Errorf("with --server-name gateway.example: exit %d: %s", code, errOut)
	}
}
