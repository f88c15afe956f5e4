package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/store"
)

// A store the gateway cannot use stops the start with an error that names
// store.path and the fix; the gateway never starts empty over it.
func TestBadStoreStopsStart(t *testing.T) {
	dir := t.TempDir()
	locked := filepath.Join(dir, "locked.db")
	held, err := store.Open(locked, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	corrupt := filepath.Join(dir, "corrupt.db")
	if err := os.WriteFile(corrupt, []byte(strings.Repeat("not a database ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"missing folder", filepath.Join(dir, "nope", "state.db"), "does not exist"},
		{"locked", locked, "locked by another process"},
		{"corrupt", corrupt, "move it aside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "gateway.yaml")
			body := "listen:\n  udp: \"127.0.0.1:0\"\nembedded_broker:\n  listen: \"127.0.0.1:0\"\nstore:\n  path: " + tc.path + "\n"
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := runArgs("--config", cfg, "--log-format", "json")
			if code == 0 || !strings.Contains(errOut, "store.path") || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant store.path and %q", code, errOut, tc.want)
			}
		})
	}
}
