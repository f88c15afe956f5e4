package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const unitFile = "../../deploy/mqttsn-gateway.service"

// unitDirectives reads a systemd unit's [Service] section: every value of
// every directive, in order.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a directive: %q", path, line)
			}
			out[k] = append(out[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The unit starts as README says: the service user can read the config
// (group mqttsn-gateway), has a state directory for the store, checks the
// config before starting, and is hardened. This runs everywhere; the
// systemd-analyze tests below need systemd's tools.
func TestUnitHardening(t *testing.T) {
	d := unitDirectives(t, unitFile)
	want := map[string]string{
		"DynamicUser":             "yes",
		"SupplementaryGroups":     "mqttsn-gateway",
		"StateDirectory":          "mqttsn-gateway",
		"UMask":                   "0077",
		"CapabilityBoundingSet":   "",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"RestrictNamespaces":      "yes",
		"RestrictSUIDSGID":        "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"ExecStartPre":            "/usr/local/bin/mqttsn-gateway --check-config /etc/mqttsn-gateway/gateway.yaml",
		"ExecStart":               "/usr/local/bin/mqttsn-gateway --config /etc/mqttsn-gateway/gateway.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
	}
	for k, v := range want {
		if got := d[k]; len(got) == 0 || got[len(got)-1] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if got := strings.Join(d["SystemCallFilter"], " "); !strings.Contains(got, "@system-service") {
		t.Errorf("SystemCallFilter=%q: want @system-service", got)
	}
	if got := strings.Fields(strings.Join(d["RestrictAddressFamilies"], " ")); len(got) == 0 || strings.Contains(strings.Join(got, " "), "AF_PACKET") {
		t.Errorf("RestrictAddressFamilies=%q", got)
	}
	// The config the install steps put in place passes --check-config.
	// Its store.path is in the unit's StateDirectory, which systemd makes
	// at start; here a temporary folder stands in for it.
	cfg, err := os.ReadFile("../../deploy/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const statePath = "/var/lib/mqttsn-gateway/state.db"
	if !strings.Contains(string(cfg), "path: "+statePath) || !strings.HasSuffix(d["StateDirectory"][0], "mqttsn-gateway") {
		t.Errorf("deploy/gateway.yaml's store.path is not %s, in the unit's StateDirectory", statePath)
	}
	local := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(local, []byte(strings.Replace(string(cfg), statePath, filepath.Join(t.TempDir(), "state.db"), 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runArgs("--check-config", local); code != 0 {
		t.Errorf("deploy/gateway.yaml: %d %s %s", code, out, errOut)
	}
}

// analyzeUnit returns a copy of the unit whose commands point at an
// executable that exists here (systemd-analyze verify checks that), or
// skips without systemd-analyze outside CI.
func analyzeUnit(t *testing.T) (analyze, unit string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze not found: CI installs Debian's systemd package")
		}
		t.Skip("systemd-analyze not installed")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable() // any executable will do: verify checks the path
	if err != nil {
		t.Fatal(err)
	}
	unit = filepath.Join(t.TempDir(), "mqttsn-gateway.service")
	body := strings.ReplaceAll(string(b), "/usr/local/bin/mqttsn-gateway", exe)
	if err := os.WriteFile(unit, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return analyze, unit
}

func TestUnitVerify(t *testing.T) {
	analyze, unit := analyzeUnit(t)
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposureRe = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

func TestUnitSecurityExposure(t *testing.T) {
	analyze, unit := analyzeUnit(t)
	out, err := exec.Command(analyze, "security", "--offline=yes", unit).CombinedOutput()
	m := exposureRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil || score > 3.0 {
		t.Errorf("systemd-analyze security rates the unit %s, want at most 3.0 (OK)\n%s", m[1], out)
	}
}
