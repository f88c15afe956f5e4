// Package config reads the gateway's YAML configuration file. Keys are
// spelled as documented in README.md; an unknown or misspelt key is an error
// that names it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport"
	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream/aggregate"
)

// File is the configuration file's shape.
type File struct {
	Listen struct {
		UDP  StringList `yaml:"udp"`
		DTLS StringList `yaml:"dtls"`
	} `yaml:"listen"`
	Broker struct {
		URL                 string        `yaml:"url"`
		Mode                string        `yaml:"mode"`
		Connections         int           `yaml:"connections"`
		Username            string        `yaml:"username"`
		Password            string        `yaml:"password"`
		ClientIDPrefix      string        `yaml:"client_id_prefix"`
		ProtocolVersion     string        `yaml:"protocol_version"`
		MaxQoS              *uint8        `yaml:"max_qos"`
		CAFile              string        `yaml:"ca_file"`
		CertFile            string        `yaml:"cert_file"`
		KeyFile             string        `yaml:"key_file"`
		ServerName          string        `yaml:"server_name"`
		InsecureSkipVerify  bool          `yaml:"insecure_skip_verify"`
		KeepAlive           time.Duration `yaml:"keep_alive"`
		ConnectTimeout      time.Duration `yaml:"connect_timeout"`
		ReconnectBackoffMin time.Duration `yaml:"reconnect_backoff_min"`
		ReconnectBackoffMax time.Duration `yaml:"reconnect_backoff_max"`
		ReconnectRate       float64       `yaml:"reconnect_rate"`
		ReceiveMaximum      uint16        `yaml:"receive_maximum"`
		SessionExpiry       time.Duration `yaml:"session_expiry"`
		WillDelay           time.Duration `yaml:"will_delay"`
		ProbeInterval       time.Duration `yaml:"probe_interval"`
	} `yaml:"broker"`
	EmbeddedBroker struct {
		// Listen is the embedded broker's address. Empty means
		// DefaultEmbeddedBroker, or a free port when another broker holds
		// it; an address given here (or with --embedded-broker) is used as
		// given, and a start fails when it is taken.
		Listen string `yaml:"listen"`
	} `yaml:"embedded_broker"`
	GatewayID uint8 `yaml:"gateway_id"`
	Discovery struct {
		AdvertiseInterval time.Duration `yaml:"advertise_interval"`
		AdvertiseTo       StringList    `yaml:"advertise_to"`
		GWInfoBroadcast   bool          `yaml:"gwinfo_broadcast"`
	} `yaml:"discovery"`
	Forwarders struct {
		Allow StringList `yaml:"allow"`
	} `yaml:"forwarders"`
	PredefinedTopics map[uint16]string `yaml:"predefined_topics"`
	Retry            struct {
		Interval   time.Duration `yaml:"interval"`
		Count      int           `yaml:"count"`
		BackoffMax time.Duration `yaml:"backoff_max"`
	} `yaml:"retry"`
	QoSMinusOne *bool `yaml:"qos_minus_one"`
	Sleep       struct {
		MaxBuffered      int   `yaml:"max_buffered"`
		MaxBufferedBytes int64 `yaml:"max_buffered_bytes"`
	} `yaml:"sleep"`
	Limits struct {
		MaxClientIDLength int `yaml:"max_client_id_length"`
		MaxTopics         int `yaml:"max_topics"`
		MaxPacketSize     int `yaml:"max_packet_size"`
		Shards            int `yaml:"shards"`
		InboxSize         int `yaml:"inbox_size"`
		UpstreamWorkers   int `yaml:"upstream_workers"`
		UDPReadBuffer     int `yaml:"udp_read_buffer"`
		ReadBatch         int `yaml:"read_batch"`
		// Bounds under abuse (issue 14).
		MaxPendingPerNode int     `yaml:"max_pending_per_node"`
		MaxPendingBytes   int64   `yaml:"max_pending_bytes"`
		MaxTopicBytes     int     `yaml:"max_topic_bytes"`
		MaxSubscriptions  int     `yaml:"max_subscriptions"`
		MaxConnecting     int     `yaml:"max_connecting"`
		MaxSessions       int     `yaml:"max_sessions"`
		ConnectRatePerIP  float64 `yaml:"connect_rate_per_ip"`
		// AmplificationFactor: nil is the default (3); 0 turns the limit off.
		AmplificationFactor *int `yaml:"amplification_factor"`
	} `yaml:"limits"`
	Log struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
	Admin struct {
		// Listen is the admin HTTP listener's address (metrics, health,
		// status page); empty: no admin listener.
		Listen string `yaml:"listen"`
		// Pprof serves net/http/pprof at /debug/pprof on the admin
		// listener.
		Pprof bool `yaml:"pprof"`
	} `yaml:"admin"`
	DTLS struct {
		PSKFile          string        `yaml:"psk_file"`
		CertFile         string        `yaml:"cert_file"`
		KeyFile          string        `yaml:"key_file"`
		ClientCAFile     string        `yaml:"client_ca_file"`
		PSKIdentityHint  string        `yaml:"psk_identity_hint"`
		BindIdentity     *bool         `yaml:"bind_identity"`
		HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
		MaxHandshakes    int           `yaml:"max_handshakes"`
		IdleTimeout      time.Duration `yaml:"idle_timeout"`
		ConnectionIDs    *bool         `yaml:"connection_ids"`
	} `yaml:"dtls"`

	NodeAuth struct {
		// Required: nodes send AUTH (PLAIN) after CONNECT and log in
		// upstream with their own credentials.
		Required bool `yaml:"required"`
	} `yaml:"node_auth"`

	Store struct {
		// Path is the durable session store's file; empty: sessions are
		// kept in memory only and a restart loses them.
		Path string `yaml:"path"`
	} `yaml:"store"`
	// ShutdownTimeout bounds a graceful stop (SIGTERM): in-flight broker
	// operations finish and the store is flushed within it.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Bridging modes (broker.mode).
const (
	ModeTransparent = "transparent"
	ModeAggregating = "aggregating"
)

// MaxConnections bounds broker.connections.
const MaxConnections = 64

// Defaults of the command (the library's own defaults fill the rest).
const (
	DefaultListenUDP      = "0.0.0.0:1884"
	DefaultEmbeddedBroker = "127.0.0.1:1883"
	DefaultGatewayID      = 1
	// DefaultShutdownTimeout is shutdown_timeout's default.
	DefaultShutdownTimeout = 10 * time.Second
)

// StringList is one string or a list of strings.
type StringList []string

// UnmarshalYAML accepts a scalar or a sequence.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == "" {
			*l = nil
			return nil
		}
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		if len(s) == 0 {
			s = nil
		}
		*l = s
		return nil
	default:
		return fmt.Errorf("line %d: want an address or a list of addresses", n.Line)
	}
}

// Load reads and checks a configuration file. Relative file names in it
// (dtls.psk_file, dtls.cert_file, broker.ca_file, ...) are taken relative
// to the folder of the configuration file, not to the working directory:
// a service's working directory is "/".
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w%s", err, permissionHint(err))
	}
	c, err := parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a configuration from r. Unknown keys are errors. Relative
// file names stay relative to the working directory.
func Parse(r io.Reader) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return parse(data, "")
}

func parse(data []byte, dir string) (*File, error) {
	c := Default()
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, explain(err, data)
	}
	c.resolvePaths(dir)
	if err := c.Check(); err != nil {
		return nil, err
	}
	return c, nil
}

// resolvePaths makes the file names in c relative to dir.
func (c *File) resolvePaths(dir string) {
	if dir == "" {
		return
	}
	for _, p := range []*string{
		&c.DTLS.PSKFile, &c.DTLS.CertFile, &c.DTLS.KeyFile, &c.DTLS.ClientCAFile,
		&c.Broker.CAFile, &c.Broker.CertFile, &c.Broker.KeyFile, &c.Store.Path,
	} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// explain turns yaml's messages into ones that name the key and the fix.
func explain(err error, data []byte) error {
	msg := err.Error()
	lines := strings.Split(string(data), "\n")
	// yaml reports "line N: ..."; name the key written on that line.
	for _, part := range strings.Split(msg, "\n") {
		part = strings.TrimSpace(part)
		var n int
		if _, e := fmt.Sscanf(part, "line %d:", &n); e != nil || n < 1 || n > len(lines) {
			continue
		}
		key := keyPath(lines, n-1)
		hint := ""
		switch {
		case strings.Contains(part, "not found in type"):
			return unknownKey(n, key, part)
		case strings.Contains(part, "time.Duration"):
			hint = " (durations are written like 10s, 1m30s, 2h)"
		case strings.Contains(part, "uint8"):
			hint = " (a number from 0 to 255)"
		case strings.Contains(part, "uint16"):
			hint = " (a number from 0 to 65535)"
		}
		return fmt.Errorf("%s: %s%s", key, part, hint)
	}
	return err
}

// keyPath names the key on line i with its parents, as "retry.interval",
// from the indentation of the lines above it.
func keyPath(lines []string, i int) string {
	indent := func(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }
	key, _, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i]), "- ")), ":")
	path := []string{key}
	level := indent(lines[i])
	for j := i - 1; j >= 0 && level > 0; j-- {
		l := lines[j]
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || indent(l) >= level {
			continue
		}
		k, _, _ := strings.Cut(t, ":")
		path = append([]string{k}, path...)
		level = indent(l)
	}
	return strings.Join(path, ".")
}

// EmbeddedListen returns the embedded broker's address and whether it was
// given (in the file or by flag) rather than defaulted.
func (c *File) EmbeddedListen() (addr string, explicit bool) {
	if c.EmbeddedBroker.Listen == "" {
		return DefaultEmbeddedBroker, false
	}
	return c.EmbeddedBroker.Listen, true
}

// Default is the configuration with no file.
func Default() *File {
	c := &File{GatewayID: DefaultGatewayID}
	c.Listen.UDP = StringList{DefaultListenUDP}
	c.Log.Level = "info"
	c.ShutdownTimeout = DefaultShutdownTimeout
	return c
}

// Check validates what the library cannot (it validates the rest in
// gateway.New and upstream.New, naming the same keys).
func (c *File) Check() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not a level: use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "json", "console":
	default:
		return fmt.Errorf("log.format: %q: use json or console", c.Log.Format)
	}
	if a := c.Admin.Listen; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("admin.listen: %q is not host:port: use e.g. 127.0.0.1:9184 (empty: off)", a)
		}
	}
	if c.GatewayID == 0 {
		return errors.New("gateway_id: must be between 1 and 255")
	}
	if c.Retry.Interval < 0 || (c.Retry.Interval > 0 && c.Retry.Interval < 10*time.Millisecond) {
		return fmt.Errorf("retry.interval: %s is too short: use at least 10ms (the spec recommends 10s to 15s)", c.Retry.Interval)
	}
	if c.Retry.Count < 0 {
		return fmt.Errorf("retry.count: %d: must be 0 (default 3) or more", c.Retry.Count)
	}
	if c.Sleep.MaxBuffered < 0 {
		return fmt.Errorf("sleep.max_buffered: %d: must be positive", c.Sleep.MaxBuffered)
	}
	if c.Sleep.MaxBufferedBytes < 0 {
		return fmt.Errorf("sleep.max_buffered_bytes: %d: must be positive", c.Sleep.MaxBufferedBytes)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("shutdown_timeout: %s: must be positive (default %s)", c.ShutdownTimeout, DefaultShutdownTimeout)
	}
	if len(c.Listen.UDP) == 0 && len(c.Listen.DTLS) == 0 {
		return errors.New("listen.udp: nothing to listen on: give an address such as 0.0.0.0:1884")
	}
	for _, d := range c.DTLSConfigs() {
		if err := d.Validate(); err != nil {
			return err
		}
	}
	if len(c.Listen.DTLS) > 0 && c.bindIdentity() && c.DTLS.PSKFile == "" && c.DTLS.ClientCAFile == "" {
		return errors.New("dtls.bind_identity: nodes have no identity without dtls.psk_file or dtls.client_ca_file: set one, or dtls.bind_identity: false")
	}
	// Checked here too because upstream.New is only asked with a URL (the
	// embedded broker also takes these two).
	switch c.Broker.ProtocolVersion {
	case "", upstream.ProtocolAuto, upstream.Protocol5, upstream.Protocol311:
	default:
		return fmt.Errorf("broker.protocol_version: %q: use \"5\", \"3.1.1\" or \"auto\"", c.Broker.ProtocolVersion)
	}
	switch c.Broker.Mode {
	case "", ModeTransparent, ModeAggregating:
	default:
		return fmt.Errorf("broker.mode: %q: use \"transparent\" (one broker connection per node) or \"aggregating\" (all nodes over broker.connections shared ones)", c.Broker.Mode)
	}
	if c.Aggregating() {
		// Per-node logins exist only where each node has its own broker
		// connection.
		if c.NodeAuth.Required {
			return errors.New("node_auth.required: the broker checks node credentials on each node's own connection, which broker.mode \"aggregating\" does not have: use broker.mode \"transparent\", or turn node_auth.required off")
		}
		for key, v := range map[string]string{"broker.username": c.Broker.Username, "broker.password": c.Broker.Password} {
			if strings.Contains(v, upstream.ClientIDPlaceholder) {
				return fmt.Errorf("%s: %s names a node, but in broker.mode \"aggregating\" the gateway logs in once for all nodes: give one user, or use broker.mode \"transparent\"", key, upstream.ClientIDPlaceholder)
			}
		}
	}
	if f := c.Limits.AmplificationFactor; f != nil && (*f < 0 || *f > 100) {
		return fmt.Errorf("limits.amplification_factor: %d: use 1 to 100 (bytes sent per byte received from an unproven address; default 3), or 0 to turn the limit off where addresses cannot be spoofed", *f)
	}
	if n := c.Broker.Connections; n < 0 || n > MaxConnections {
		return fmt.Errorf("broker.connections: %d: use 1 to %d (0: the default, %d)", n, MaxConnections, aggregate.DefaultConnections)
	}
	// Checked here too: upstream.New is only asked with a URL, and the
	// gateway's QoS -1 connection to the embedded broker is paced as well.
	if r := c.Broker.ReconnectRate; r < 0 || r != r { // NaN too
		return fmt.Errorf("broker.reconnect_rate: %v: must be positive (reconnects per second, gateway-wide; default %d)", r, upstream.DefaultReconnectRate)
	}
	if q := c.Broker.MaxQoS; q != nil && *q > 2 {
		return fmt.Errorf("broker.max_qos: %d: use 0, 1 or 2", *q)
	}
	if err := checkBrokerURL(c.Broker.URL); err != nil {
		return err
	}
	if _, err := upstream.New(c.Upstream(), nil); c.Broker.URL != "" && err != nil {
		return err
	}
	if err := c.Gateway().Check(); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "gateway: "))
	}
	return nil
}

func (c *File) bindIdentity() bool { return c.DTLS.BindIdentity == nil || *c.DTLS.BindIdentity }

// DTLSConfigs returns one DTLS listener configuration per listen.dtls
// address.
func (c *File) DTLSConfigs() []dtlstransport.Config {
	var out []dtlstransport.Config
	for _, a := range c.Listen.DTLS {
		out = append(out, dtlstransport.Config{
			Listen: a, PSKFile: c.DTLS.PSKFile, CertFile: c.DTLS.CertFile, KeyFile: c.DTLS.KeyFile,
			ClientCAFile: c.DTLS.ClientCAFile, PSKIdentityHint: c.DTLS.PSKIdentityHint, HandshakeTimeout: c.DTLS.HandshakeTimeout,
			MaxHandshakes: c.DTLS.MaxHandshakes, IdleTimeout: c.DTLS.IdleTimeout,
			DisableConnectionIDs: c.DTLS.ConnectionIDs != nil && !*c.DTLS.ConnectionIDs,
		})
	}
	return out
}

// Gateway returns the session engine's configuration.
func (c *File) Gateway() gateway.Config {
	g := gateway.Config{
		GatewayID:              c.GatewayID,
		Predefined:             c.PredefinedTopics,
		RetryInterval:          c.Retry.Interval,
		RetryCount:             c.Retry.Count,
		RetryBackoffMax:        c.Retry.BackoffMax,
		DisableQoSMinusOne:     c.QoSMinusOne != nil && !*c.QoSMinusOne,
		RequireAuth:            c.NodeAuth.Required,
		MaxBuffered:            c.Sleep.MaxBuffered,
		MaxBufferedBytes:       c.Sleep.MaxBufferedBytes,
		MaxClientIDLen:         c.Limits.MaxClientIDLength,
		MaxTopics:              c.Limits.MaxTopics,
		MaxPacketSize:          c.Limits.MaxPacketSize,
		Shards:                 c.Limits.Shards,
		InboxSize:              c.Limits.InboxSize,
		UpstreamWorkers:        c.Limits.UpstreamWorkers,
		UDPReadBuffer:          c.Limits.UDPReadBuffer,
		ReadBatch:              c.Limits.ReadBatch,
		MaxPendingPerNode:      c.Limits.MaxPendingPerNode,
		MaxPendingBytes:        c.Limits.MaxPendingBytes,
		MaxTopicBytes:          c.Limits.MaxTopicBytes,
		MaxSubscriptions:       c.Limits.MaxSubscriptions,
		MaxConnecting:          c.Limits.MaxConnecting,
		MaxSessions:            c.Limits.MaxSessions,
		ConnectRatePerIP:       c.Limits.ConnectRatePerIP,
		AmplificationFactor:    amplificationFactor(c.Limits.AmplificationFactor),
		SessionExpiry:          c.Broker.SessionExpiry,
		Listen:                 c.Listen.UDP,
		DisableIdentityBinding: !c.bindIdentity(),
		AdvertiseInterval:      c.Discovery.AdvertiseInterval,
		AdvertiseTo:            c.Discovery.AdvertiseTo,
		GWInfoBroadcast:        c.Discovery.GWInfoBroadcast,
		ForwarderAllow:         c.Forwarders.Allow,
	}
	return g
}

// amplificationFactor maps limits.amplification_factor to
// gateway.Config: unset is the default, 0 is off (negative there).
func amplificationFactor(f *int) int {
	switch {
	case f == nil:
		return 0
	case *f == 0:
		return -1
	}
	return *f
}

// Upstream returns the broker connection's configuration.
func (c *File) Upstream() upstream.Config {
	b := c.Broker
	return upstream.Config{
		URL: b.URL, Username: b.Username, Password: b.Password, ClientIDPrefix: b.ClientIDPrefix,
		ProtocolVersion: b.ProtocolVersion, MaxQoS: b.MaxQoS,
		CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile, ServerName: b.ServerName,
		InsecureSkipVerify: b.InsecureSkipVerify, KeepAlive: b.KeepAlive, ConnectTimeout: b.ConnectTimeout,
		ReconnectBackoffMin: b.ReconnectBackoffMin, ReconnectBackoffMax: b.ReconnectBackoffMax, ReconnectRate: b.ReconnectRate,
		ReceiveMaximum: b.ReceiveMaximum, WillDelay: b.WillDelay, ProbeInterval: b.ProbeInterval,
	}
}

// Aggregating reports whether broker.mode is "aggregating".
func (c *File) Aggregating() bool { return c.Broker.Mode == ModeAggregating }

// Mode returns broker.mode with its default filled in.
func (c *File) Mode() string {
	if c.Broker.Mode == "" {
		return ModeTransparent
	}
	return c.Broker.Mode
}

// Aggregate returns the aggregating mode's configuration. The shared
// connections are named after gateway_id (the upstream adds
// broker.client_id_prefix), so that gateways on one broker do not take
// each other's connections over as long as their ids or prefixes differ.
// A disconnected CleanSession=0 node keeps at most sleep.max_buffered
// messages, as a sleeping one does.
func (c *File) Aggregate() aggregate.Config {
	expiry, parked := c.Broker.SessionExpiry, c.Sleep.MaxBuffered
	if expiry == 0 {
		expiry = gateway.DefaultSessionExpiry
	}
	if parked == 0 {
		parked = gateway.DefaultMaxBuffered
	}
	return aggregate.Config{
		Connections:   c.Broker.Connections,
		ClientID:      AggregateClientID(c.GatewayID),
		SessionExpiry: expiry,
		MaxParked:     parked,
	}
}

// AggregateClientID is the stem of the shared connections' ClientIDs:
// "mqttsn-gateway-<gateway_id>-shared", connections "-shared-0", "-shared-1", ...
func AggregateClientID(gatewayID uint8) string {
	return fmt.Sprintf("mqttsn-gateway-%d-shared", gatewayID)
}
