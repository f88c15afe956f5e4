package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Defaults applied by New when a Config field is zero.
const (
	DefaultKeepAlive           = 60 * time.Second
	DefaultConnectTimeout      = 10 * time.Second
	DefaultReconnectBackoffMin = 1 * time.Second
	DefaultReconnectBackoffMax = 30 * time.Second
	DefaultReceiveMaximum      = 16
	// DefaultAckTimeout bounds how long Publish, Subscribe and Unsubscribe
	// wait for the broker's acknowledgement when the caller's context has
	// no earlier deadline.
	DefaultAckTimeout = 30 * time.Second
	// DefaultWillDelay is the Will Delay Interval registered with the
	// broker together with a node's will.
	DefaultWillDelay = 60 * time.Second
	// DefaultMaxQoS is the highest QoS used upstream unless
	// Config.MaxQoS lowers it.
	DefaultMaxQoS = 2
)

// Protocol versions (Config.ProtocolVersion, broker.protocol_version),
// spelled as in the configuration file.
const (
	ProtocolAuto = "auto"  // MQTT 5 first, MQTT 3.1.1 if the broker refuses it
	Protocol5    = "5"     // MQTT 5 only
	Protocol311  = "3.1.1" // MQTT 3.1.1 only
)

// Config configures the upstream MQTT connections. Zero values mean "use
// the default". Field names in errors follow the configuration file keys
// (broker.url, broker.keep_alive, ...).
type Config struct {
	// URL of the broker: mqtt://host:port or mqtts://host:port (tcp://,
	// ssl:// and tls:// are accepted as aliases). The port defaults to 1883
	// or 8883. It may carry credentials, mqtt://user:password@host:port
	// (percent-encoded), instead of Username and Password: giving both is
	// an error. Logs show it with the password masked (RedactURL).
	URL string

	// Dial, if set, makes every connection to the broker (sessions, the
	// probe, Ping) instead of dialling URL: the embedded broker's
	// in-process connections (broker.Broker.Dial), which take no socket
	// and no file descriptor. URL may then be empty; if given, it only
	// names the broker in logs and errors (and may carry credentials).
	// TLS settings cannot be combined with Dial: its connection is used as
	// it is. Dial must honour ctx.
	Dial func(ctx context.Context) (net.Conn, error)

	// Username and Password log every session in. Both may contain
	// ClientIDPlaceholder ("{client_id}"), replaced by the node's ClientId,
	// so that each node logs in as itself. A node that sent its own
	// credentials (MQTT-SN AUTH) logs in with those instead.
	Username string
	Password string

	// ClientIDPrefix is prepended to every session's ClientID.
	ClientIDPrefix string

	// ProtocolVersion (broker.protocol_version) is "5", "3.1.1" or
	// "auto" (the default, also for ""): MQTT 5 first and, when the broker
	// refuses an MQTT 5 CONNECT (CONNACK 0x84 or 3.1.1 return code 0x01)
	// or closes the connection without CONNACK, MQTT 3.1.1. The outcome
	// is remembered for the Upstream's lifetime; a transient failure
	// (broker unreachable, timeout) decides nothing.
	ProtocolVersion string
	// MaxQoS (broker.max_qos: 0, 1 or 2; nil means 2) caps the QoS of
	// every PUBLISH and SUBSCRIBE sent to the broker, for brokers that
	// support less than QoS 2 (RabbitMQ, AWS IoT Core). An MQTT 5
	// broker's Maximum QoS (CONNACK) lowers it further. The node's leg
	// keeps its own QoS: a node's QoS 2 PUBLISH stays exactly-once
	// between node and gateway.
	MaxQoS *byte

	// TLS (mqtts:// only). CAFile replaces the system roots; CertFile and
	// KeyFile give a client certificate; ServerName overrides the name
	// checked against the broker's certificate (default: the URL's host).
	CAFile             string
	CertFile           string
	KeyFile            string
	ServerName         string
	InsecureSkipVerify bool

	// KeepAlive is the MQTT keep-alive of each connection (default 60s,
	// whole seconds, at most 65535s).
	KeepAlive time.Duration
	// ConnectTimeout bounds dialling plus CONNECT/CONNACK (default 10s).
	ConnectTimeout time.Duration
	// ReconnectBackoffMin and ReconnectBackoffMax bound the exponential,
	// jittered delay between reconnect attempts (defaults 1s and 30s).
	ReconnectBackoffMin time.Duration
	ReconnectBackoffMax time.Duration
	// ReconnectRate (broker.reconnect_rate, default 100) limits reconnect
	// attempts per second across every connection of the Upstream: each
	// attempt waits for its backoff and then for a slot on one shared
	// limiter, so connections lost together (a broker restart) come back
	// at this rate. Open, for a node's CONNECT, is not limited by it.
	ReconnectRate float64
	// ReceiveMaximum is sent in CONNECT (default 16). paho allocates a
	// channel of this many slots per connection, so keep it small.
	ReceiveMaximum uint16
	// AckTimeout bounds the wait for PUBACK/PUBCOMP/SUBACK/UNSUBACK
	// (default 30s); the caller's context may end the wait earlier.
	AckTimeout time.Duration
	// WillDelay (broker.will_delay, default 60s, whole seconds) is sent as
	// the Will Delay Interval of every will registered with the broker,
	// and the session expiry sent in CONNECT is raised to at least this
	// much for sessions with a will. The broker then publishes a node's
	// will only if the gateway stays away longer than WillDelay (a gateway
	// crash); a broker-side link blip that the reconnect loop repairs
	// within WillDelay publishes nothing (MQTT 5 §3.1.3.2.2). MQTT 3.1.1
	// has no will delay: 3.1.1 sessions register the will as it is.
	WillDelay time.Duration
	// ProbeInterval (broker.probe_interval, default 30s) is how often the
	// Prober makes a real CONNECT to check the broker link.
	ProbeInterval time.Duration
}

// endpoint is the validated, resolved form of Config.URL plus TLS.
type endpoint struct {
	scheme   string      // as given in the URL; "" without one
	host     string      // the URL's host name; "" without one
	hostPort string      // host:port, or what names the broker with Config.Dial
	tls      *tls.Config // nil for plain TCP
	// username and password (hasPassword: one was given, maybe empty)
	// from Username and Password or from the URL's user information.
	username    string
	password    string
	hasPassword bool
}

func (c *Config) setDefaults() {
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.ReconnectBackoffMin == 0 {
		c.ReconnectBackoffMin = DefaultReconnectBackoffMin
	}
	if c.ReconnectBackoffMax == 0 {
		c.ReconnectBackoffMax = max(DefaultReconnectBackoffMax, c.ReconnectBackoffMin)
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = DefaultReceiveMaximum
	}
	if c.ReconnectRate == 0 {
		c.ReconnectRate = DefaultReconnectRate
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.WillDelay == 0 {
		c.WillDelay = DefaultWillDelay
	}
	if c.ProtocolVersion == "" {
		c.ProtocolVersion = ProtocolAuto
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
}

// maxQoS is the configured QoS cap (DefaultMaxQoS when unset).
func (c *Config) maxQoS() byte {
	if c.MaxQoS == nil {
		return DefaultMaxQoS
	}
	return *c.MaxQoS
}

// validate checks c (after setDefaults) and resolves the endpoint.
func (c *Config) validate() (endpoint, error) {
	ep, secure, err := c.parseURL()
	if err != nil {
		return ep, err
	}
	if c.Dial != nil {
		if ep.hostPort == "" {
			ep.hostPort = "in-process broker"
		} else {
			ep.hostPort += " (in-process)"
		}
	}
	if err := c.validateSettings(); err != nil {
		return ep, err
	}
	tlsSet := c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.InsecureSkipVerify
	switch {
	case c.Dial != nil && (secure || tlsSet):
		return ep, errors.New("broker.url: TLS settings given for the in-process broker connection, which has no TLS")
	case !secure && tlsSet:
		return ep, fmt.Errorf("broker.url: TLS settings given but scheme is %q: use mqtts://", ep.scheme)
	case !secure:
		return ep, nil
	}
	ep.tls, err = c.tlsConfig(ep.host)
	return ep, err
}

// parseURL resolves URL: host and port, credentials, and whether it asks
// for TLS. An empty URL is an error unless Dial is set.
func (c *Config) parseURL() (ep endpoint, secure bool, err error) {
	if c.URL == "" {
		if c.Dial == nil {
			return ep, false, errors.New("broker.url: empty")
		}
		ep.username, ep.password, ep.hasPassword = c.Username, c.Password, c.Password != ""
		return ep, false, nil
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		// url.Error repeats the URL, password included: give only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return ep, false, fmt.Errorf("broker.url: %s: %w", RedactURL(c.URL), err)
	}
	ep.scheme = u.Scheme
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
	case "mqtts", "ssl", "tls":
		secure = true
	default:
		return ep, false, fmt.Errorf("broker.url: unsupported scheme %q: use mqtt:// or mqtts://", u.Scheme)
	}
	if u.Hostname() == "" {
		return ep, false, fmt.Errorf("broker.url: %q has no host", u.Redacted())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return ep, false, fmt.Errorf("broker.url: %q: path and query are not supported", u.Redacted())
	}
	ep.username, ep.password, ep.hasPassword = c.Username, c.Password, c.Password != ""
	if u.User != nil {
		if c.Username != "" || c.Password != "" {
			return ep, false, fmt.Errorf("broker.url: %q carries a user name and broker.username / broker.password are set too: give the credentials in one place", u.Redacted())
		}
		ep.username = u.User.Username()
		ep.password, ep.hasPassword = u.User.Password()
	}
	port := u.Port()
	if port == "" {
		port = "1883"
		if secure {
			port = "8883"
		}
	}
	ep.host = u.Hostname()
	ep.hostPort = net.JoinHostPort(u.Hostname(), port)
	return ep, secure, nil
}

// validateSettings checks everything but the URL and TLS.
func (c *Config) validateSettings() error {
	switch {
	case c.KeepAlive < 0 || c.KeepAlive > 65535*time.Second:
		return fmt.Errorf("broker.keep_alive: %v out of range 0..65535s", c.KeepAlive)
	case c.KeepAlive%time.Second != 0:
		return fmt.Errorf("broker.keep_alive: %v is not whole seconds", c.KeepAlive)
	case c.ConnectTimeout < 0:
		return fmt.Errorf("broker.connect_timeout: %v is negative", c.ConnectTimeout)
	case c.AckTimeout < 0:
		return fmt.Errorf("broker.ack_timeout: %v is negative", c.AckTimeout)
	case c.WillDelay < 0:
		return fmt.Errorf("broker.will_delay: %v is negative", c.WillDelay)
	case c.ProbeInterval < 0:
		return fmt.Errorf("broker.probe_interval: %v is negative", c.ProbeInterval)
	case c.WillDelay%time.Second != 0:
		return fmt.Errorf("broker.will_delay: %v is not whole seconds", c.WillDelay)
	case c.ReconnectBackoffMin < 0:
		return fmt.Errorf("broker.reconnect_backoff_min: %v is negative", c.ReconnectBackoffMin)
	case c.ReconnectBackoffMax < c.ReconnectBackoffMin:
		return fmt.Errorf("broker.reconnect_backoff_max: %v is below reconnect_backoff_min %v",
			c.ReconnectBackoffMax, c.ReconnectBackoffMin)
	case c.ReconnectRate < 0 || c.ReconnectRate != c.ReconnectRate: // NaN too
		return fmt.Errorf("broker.reconnect_rate: %v: must be positive (reconnects per second; default %d)", c.ReconnectRate, DefaultReconnectRate)
	case len(c.ClientIDPrefix) > 65535:
		return errors.New("broker.client_id_prefix: longer than 65535 octets")
	case c.MaxQoS != nil && *c.MaxQoS > 2:
		return fmt.Errorf("broker.max_qos: %d: use 0, 1 or 2", *c.MaxQoS)
	}
	switch c.ProtocolVersion {
	case "", ProtocolAuto, Protocol5, Protocol311:
	default:
		return fmt.Errorf("broker.protocol_version: %q: use \"5\", \"3.1.1\" or \"auto\"", c.ProtocolVersion)
	}
	return nil
}

func (c *Config) tlsConfig(host string) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // explicit opt-in for test brokers
	}
	if c.ServerName != "" {
		tc.ServerName = c.ServerName
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker.ca_file: %s: no PEM certificates found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case c.CertFile != "":
		return nil, errors.New("broker.key_file: required with broker.cert_file")
	case c.KeyFile != "":
		return nil, errors.New("broker.cert_file: required with broker.key_file")
	}
	return tc, nil
}
