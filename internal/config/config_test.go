package config

import (
	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The example file is README's configuration block, loads, and documents
// the real defaults.
func TestExampleFile(t *testing.T) {
	c, err := Load("../../examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := string(example[strings.Index(string(example), "listen:"):])
	if !strings.Contains(string(readme), "```yaml\n"+body+"```") {
		t.Error("examples/gateway.yaml and README's configuration block differ: keep them the same")
	}

	got := c.Gateway().WithDefaults()
	want := Default().Gateway().WithDefaults()
	got.Predefined, want.Predefined = nil, nil
	got.Shards, want.Shards = 0, 0 // documented as "0: 4 per CPU"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("documented defaults differ from the code's:\n file %+v\n code %+v", got, want)
	}
	u := c.Upstream()
	if u.KeepAlive != upstream.DefaultKeepAlive || u.ConnectTimeout != upstream.DefaultConnectTimeout ||
		u.ReconnectBackoffMin != upstream.DefaultReconnectBackoffMin || u.ReconnectBackoffMax != upstream.DefaultReconnectBackoffMax ||
		u.ReceiveMaximum != upstream.DefaultReceiveMaximum || u.WillDelay != upstream.DefaultWillDelay ||
		u.ProtocolVersion != upstream.ProtocolAuto || u.MaxQoS == nil || *u.MaxQoS != upstream.DefaultMaxQoS ||
		u.ProbeInterval != upstream.DefaultProbeInterval || u.ReconnectRate != upstream.DefaultReconnectRate {
		t.Errorf("documented broker defaults differ from the code's: %+v", u)
	}
	d := c.DTLS
	fileDTLS := dtlstransport.Config{HandshakeTimeout: d.HandshakeTimeout, MaxHandshakes: d.MaxHandshakes, IdleTimeout: d.IdleTimeout}
	if codeDTLS := (dtlstransport.Config{}).WithDefaults(); fileDTLS != codeDTLS || !*d.BindIdentity || !*d.ConnectionIDs {
		t.Errorf("documented DTLS defaults differ from the code's:\n file %+v\n code %+v", fileDTLS, codeDTLS)
	}
	if len(c.PredefinedTopics) != 0 {
		t.Errorf("the example lists predefined topics %v, but there are none by default", c.PredefinedTopics)
	}
	if c.Store.Path != "" || c.ShutdownTimeout != DefaultShutdownTimeout {
		t.Errorf("store.path %q, shutdown_timeout %s: the defaults are empty and %s", c.Store.Path, c.ShutdownTimeout, DefaultShutdownTimeout)
	}
	if *c.QoSMinusOne != true || c.EmbeddedBroker.Listen != "" {
		t.Errorf("qos_minus_one %v, embedded_broker.listen %q", *c.QoSMinusOne, c.EmbeddedBroker.Listen)
	}
}

// The keys that outside acceptance tests use, spelled exactly so.
func TestIssueKeys(t *testing.T) {
	c, err := Parse(strings.NewReader(`
listen:
  udp: ["127.0.0.1:1884", "[::1]:1884"]
broker:
  url: "mqtt://127.0.0.1:1883"
  username: "u"
  password: "p"
  protocol_version: 3.1.1
  max_qos: 1
gateway_id: 7
predefined_topics:
  1: "sensors/temperature"
  2: "sensors/humidity"
retry:
  interval: 2s
  count: 5
qos_minus_one: false
sleep:
  max_buffered: 50
  max_buffered_bytes: 1048576
admin:
  listen: "127.0.0.1:9184"
`))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gateway()
	if !reflect.DeepEqual(g.Listen, []string{"127.0.0.1:1884", "[::1]:1884"}) || g.GatewayID != 7 ||
		g.RetryInterval != 2*time.Second || g.RetryCount != 5 || !g.DisableQoSMinusOne ||
		g.MaxBuffered != 50 || g.MaxBufferedBytes != 1<<20 || g.Predefined[2] != "sensors/humidity" {
		t.Errorf("gateway config %+v", g)
	}
	u := c.Upstream()
	if u.URL != "mqtt://127.0.0.1:1883" || u.Username != "u" || u.Password != "p" ||
		u.ProtocolVersion != upstream.Protocol311 || u.MaxQoS == nil || *u.MaxQoS != 1 {
		t.Errorf("upstream config %+v", u)
	}
	if c.Admin.Listen != "127.0.0.1:9184" {
		t.Errorf("admin.listen %q", c.Admin.Listen)
	}
	if Default().Admin.Listen != "" {
		t.Error("the admin listener is on by default")
	}
	one, err := Parse(strings.NewReader("listen:\n  udp: \"127.0.0.1:1999\"\n"))
	if err != nil || !reflect.DeepEqual([]string(one.Listen.UDP), []string{"127.0.0.1:1999"}) {
		t.Errorf("single address: %v %v", one.Listen.UDP, err)
	}
}

// A config mistake gets an error naming the key and the fix.
func TestErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"listn:\n  udp: x\n", `unknown key "listn": did you mean "listen"?`},
		{"broker:\n  urll: mqtt://x\n", `line 2: unknown key "urll" in broker: did you mean "url"?`},
		{"dtls:\n  psk: a\n", `unknown key "psk" in dtls: did you mean "psk_file"?`},
		{"broker:\n  zzzzzz: 1\n", `unknown key "zzzzzz" in broker: the keys there are ca_file, cert_file`},
		{"broker:\n  url: \"127.0.0.1:1883\"\n", "use mqtt://127.0.0.1:1883"},
		{"retry:\n  interval: ten\n", "retry.interval"},
		{"retry:\n  interval: ten\n", "10s"},
		{"retry:\n  count: -1\n", "retry.count"},
		{"gateway_id: 0\n", "gateway_id"},
		{"gateway_id: 300\n", "gateway_id"},
		{"broker:\n  url: http://x\n", "broker.url"},
		{"listen:\n  udp: \"nohost\"\n", "listen.udp"},
		{"predefined_topics:\n  0: a\n", "predefined_topics"},
		{"predefined_topics:\n  3: \"a/+\"\n", "predefined_topics"},
		{"log:\n  level: loud\n", "log.level"},
		{"sleep:\n  max_buffered: -5\n", "sleep.max_buffered"},
		{"listen:\n  dtls: \"0.0.0.0:1885\"\n", "dtls.psk_file"},
		{"listen:\n  dtls: \"0.0.0.0:1885\"\ndtls:\n  cert_file: c.pem\n  key_file: k.pem\n", "dtls.bind_identity"},
		{"listen:\n  dtls: \"nohost\"\ndtls:\n  psk_file: psk.txt\n", "listen.dtls"},
		{"admin:\n  listen: \"9184\"\n", "admin.listen"},
		{"admin:\n  lisen: \"127.0.0.1:9184\"\n", `unknown key "lisen" in admin: did you mean "listen"?`},
		{"broker:\n  protocol_version: \"4\"\n", "broker.protocol_version"},
		{"broker:\n  protocol_version: v5\n", "broker.protocol_version"},
		{"broker:\n  max_qos: 3\n", "broker.max_qos"},
		{"broker:\n  mode: aggregated\n", "broker.mode"},
		{"limits:\n  amplification_factor: -1\n", "limits.amplification_factor"},
		{"broker:\n  connections: -1\n", "broker.connections"},
		{"broker:\n  connections: 1000\n", "broker.connections"},
		{"broker:\n  mode: aggregating\nnode_auth:\n  required: true\n", "node_auth.required"},
		{"broker:\n  mode: aggregating\n  username: \"{client_id}\"\n", "broker.username"},
		{"broker:\n  reconnect_rate: -1\n", "broker.reconnect_rate"},
		{"broker:\n  url: mqtt://x\n  reconnect_rate: -5\n", "broker.reconnect_rate"},
		{"broker:\n  reconnect_rate: .nan\n", "broker.reconnect_rate"},
		{"broker:\n  url: mqtt://x\n  max_qos: 3\n", "broker.max_qos"},
		{"limits:\n  max_pending_per_node: -1\n", "limits.max_pending_per_node"},
		{"limits:\n  max_pending_bytes: -1\n", "limits.max_pending_bytes"},
		{"limits:\n  max_topic_bytes: -1\n", "limits.max_topic_bytes"},
		{"limits:\n  max_subscriptions: -1\n", "limits.max_subscriptions"},
		{"limits:\n  max_connecting: -1\n", "limits.max_connecting"},
		{"limits:\n  max_sessions: -1\n", "limits.max_sessions"},
		{"limits:\n  connect_rate_per_ip: -2\n", "limits.connect_rate_per_ip"},
		{"limits:\n  max_pending_per_nod: 1\n", `did you mean "max_pending_per_node"?`},
	} {
		_, err := Parse(strings.NewReader(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one mentioning %q", c.yaml, err, c.want)
		}
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	c, err := Parse(strings.NewReader("# nothing\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("%+v", c)
	}
}

// The admin listener has no authentication: an example that turns it on
// binds it to loopback.
func TestExampleAdminOnLoopback(t *testing.T) {
	c, err := Load("../../examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Admin.Listen == "" {
		return
	}
	host, _, err := net.SplitHostPort(c.Admin.Listen)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		t.Errorf("examples/gateway.yaml: admin.listen %q is not a loopback address", c.Admin.Listen)
	}
}

// The DTLS keys, spelled as issue 5 has them, reach the listener's config.
func TestDTLSKeys(t *testing.T) {
	dir := t.TempDir()
	psk := dir + "/psk.txt"
	if err := os.WriteFile(psk, []byte("node-1:00112233445566778899aabbccddeeff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(strings.NewReader(`
listen:
  dtls: "127.0.0.1:1885"
dtls:
  psk_file: "` + psk + `"
  cert_file: ""
  key_file: ""
  client_ca_file: ""
  bind_identity: true
  psk_identity_hint: "gw-1"
`))
	if err != nil {
		t.Fatal(err)
	}
	ds := c.DTLSConfigs()
	if len(ds) != 1 || ds[0].Listen != "127.0.0.1:1885" || ds[0].PSKFile != psk || ds[0].DisableConnectionIDs ||
		ds[0].PSKIdentityHint != "gw-1" {
		t.Fatalf("DTLS configs %+v", ds)
	}
	if c.Gateway().DisableIdentityBinding {
		t.Fatal("bind_identity: true did not bind")
	}
	off, err := Parse(strings.NewReader("listen:\n  dtls: \"127.0.0.1:1885\"\ndtls:\n  psk_file: \"" + psk + "\"\n  bind_identity: false\n"))
	if err != nil || !off.Gateway().DisableIdentityBinding {
		t.Fatalf("bind_identity: false: %v", err)
	}
}

// store.path and shutdown_timeout, spelled exactly so; a relative store.path
// is taken from the configuration file's folder.
func TestStoreKeys(t *testing.T) {
	c, err := Parse(strings.NewReader("store:\n  path: /var/lib/mqttsn-gateway/state.db\nshutdown_timeout: 3s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Path != "/var/lib/mqttsn-gateway/state.db" || c.ShutdownTimeout != 3*time.Second {
		t.Errorf("store.path %q, shutdown_timeout %s", c.Store.Path, c.ShutdownTimeout)
	}
	if _, err := Parse(strings.NewReader("shutdown_timeout: -1s\n")); err == nil || !strings.Contains(err.Error(), "shutdown_timeout") {
		t.Errorf("negative shutdown_timeout: %v", err)
	}
	dir := t.TempDir()
	p := dir + "/gateway.yaml"
	if err := os.WriteFile(p, []byte("store:\n  path: state.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Path != dir+"/state.db" {
		t.Errorf("relative store.path resolved to %q", c.Store.Path)
	}
	if err := c.CheckStart(); err != nil {
		t.Errorf("CheckStart: %v", err)
	}
	c.Store.Path = dir + "/missing/state.db"
	if err := c.CheckStart(); err == nil || !strings.Contains(err.Error(), "store.path") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing folder: %v", err)
	}
}

// broker.mode and broker.connections reach the aggregator's settings; the
// shared connections are named after gateway_id.
func TestAggregateSettings(t *testing.T) {
	c, err := Parse(strings.NewReader("broker:\n  mode: aggregating\n  connections: 3\n  session_expiry: 1h\ngateway_id: 7\nsleep:\n  max_buffered: 50\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Aggregate()
	if !c.Aggregating() || c.Mode() != ModeAggregating || a.Connections != 3 || a.ClientID != "mqttsn-gateway-7-shared" ||
		a.SessionExpiry != time.Hour || a.MaxParked != 50 {
		t.Errorf("mode %q, aggregate config %+v", c.Mode(), a)
	}
	if d := Default(); d.Aggregating() || d.Mode() != ModeTransparent {
		t.Errorf("default mode %q", d.Mode())
	}
}

// limits.amplification_factor: unset is the default, 0 turns the limit off.
func TestAmplificationFactorKey(t *testing.T) {
	for yaml, want := range map[string]int{"": 0, "limits:\n  amplification_factor: 0\n": -1, "limits:\n  amplification_factor: 5\n": 5} {
		c, err := Parse(strings.NewReader(yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Gateway().AmplificationFactor; got != want {
			t.Errorf("%q: gateway AmplificationFactor %d, want %d", yaml, got, want)
		}
	}
}
