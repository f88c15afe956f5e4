package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// Config is the gateway's configuration. The zero value of every field
// means "use the default" (see setDefaults); New validates the result and
// names the offending field in its error.
type Config struct {
	// Listen holds the UDP addresses to serve ("0.0.0.0:1884", "[::]:1884").
	// Transports given with WithTransport are served in addition.
	Listen []string
	// GatewayID is sent in GWINFO and ADVERTISE.
	GatewayID uint8
	// Predefined maps gateway-wide predefined topic ids to topic names.
	Predefined map[uint16]string

	// AdvertiseInterval is how often ADVERTISE is sent to AdvertiseTo
	// (spec §6.1 recommends more than 15 minutes). Default 15m.
	AdvertiseInterval time.Duration
	// AdvertiseTo lists where ADVERTISE goes: IPv4 broadcast
	// ("255.255.255.255:1884"), IPv6 multicast with a zone
	// ("[ff02::1%wpan0]:1884") or unicast addresses. Empty: no ADVERTISE.
	AdvertiseTo []string
	// GWInfoBroadcast also sends the GWINFO answering a SEARCHGW to the
	// AdvertiseTo destinations, not only to the searcher.
	GWInfoBroadcast bool
	// ForwarderAllow lists the forwarders (spec §5.5) whose encapsulated
	// messages are accepted: IP addresses, host:port or CIDR prefixes.
	// Empty: any forwarder.
	ForwarderAllow []string

	// RetryInterval is Tretry: how long the gateway waits for a node's
	// acknowledgement before it retransmits. Default 10s.
	RetryInterval time.Duration
	// RetryCount is Nretry: retransmissions before the node is lost.
	// Default 3.
	RetryCount int
	// RetryBackoffMax, when set, doubles the wait before each further
	// retransmission (Tretry, 2 Tretry, 4 Tretry...) up to this cap, for
	// radio links where congestion is the usual cause of loss. Zero keeps
	// the spec's fixed Tretry.
	RetryBackoffMax time.Duration

	// DisableIdentityBinding lets a node authenticated by its transport
	// (DTLS) connect with a ClientId other than its proven identity.
	DisableIdentityBinding bool

	// DisableQoSMinusOne drops QoS -1 publishes instead of forwarding them.
	DisableQoSMinusOne bool

	// RequireAuth makes every node present its own broker credentials:
	// after CONNECT the gateway waits for an AUTH with the PLAIN method
	// (MQTT-SN v2.0 draft, as bisquitt-pub --user/--password sends it)
	// before the will handshake, and logs the node in upstream with them
	// (SessionOptions.Auth). Without it an AUTH is refused with CONNACK
	// "not supported": the node would otherwise be logged in as someone
	// else than it asked.
	RequireAuth bool

	// Shards is the number of session workers. Default 4 per CPU.
	Shards int
	// InboxSize bounds each shard's queue of datagrams; when full, further
	// datagrams are dropped and counted. Default 4096.
	InboxSize int
	// UDPReadBuffer is the kernel receive buffer asked for on each UDP
	// listener, in bytes: bursts beyond it are dropped by the kernel
	// before the gateway sees them. Linux caps it at net.core.rmem_max.
	// Default 4 MiB.
	UDPReadBuffer int
	// ReadBatch is the most datagrams read from a UDP listener with one
	// system call (recvmmsg on Linux; elsewhere one at a time). 1 reads
	// one at a time everywhere. Default 32.
	ReadBatch int
	// MaxClientIDLen is the longest ClientId accepted (the spec says 23;
	// many nodes use longer ones). Default 64.
	MaxClientIDLen int
	// MaxTopics bounds the topic ids one node may register. Default 1000.
	MaxTopics int
	// MaxPacketSize is the largest datagram the gateway sends; a downlink
	// message that would not fit is dropped (spec §6.10). Default 65507.
	MaxPacketSize int
	// MaxBuffered bounds the messages queued for one node (asleep or
	// waiting for its acknowledgements). Default 1000.
	MaxBuffered int
	// MaxBufferedBytes bounds the bytes queued for all nodes together.
	// Default 256 MiB.
	MaxBufferedBytes int64
	// SessionExpiry is how long the broker keeps the session of a node that
	// connected with CleanSession=false after its upstream connection ends.
	// Default 24h.
	SessionExpiry time.Duration
	// UpstreamWorkers is the number of concurrent upstream operations
	// (connects, publishes awaiting the broker's acknowledgement, ...) per
	// shard. Default 32.
	UpstreamWorkers int
	// UpstreamTimeout bounds each upstream operation made for a node
	// (connect, publish, subscribe). Default 30s.
	UpstreamTimeout time.Duration

	// Bounds under abuse (limits.go, amplify.go; README "Limits").

	// MaxPendingPerNode bounds one node's upstream operations waiting
	// (publishes, subscribes, its connect); beyond it a QoS 1/2 PUBLISH
	// gets PUBACK congestion, a SUBSCRIBE SUBACK congestion, a CONNECT
	// CONNACK congestion, and a QoS 0 PUBLISH is dropped; each is counted.
	// Default 64.
	MaxPendingPerNode int
	// MaxPendingBytes bounds the topic and payload bytes held for the
	// uplink by all nodes together (their waiting operations and the QoS -1
	// queue), answered as MaxPendingPerNode. Default 64 MiB.
	MaxPendingBytes int64
	// MaxTopicBytes bounds the bytes of the topic names one node has
	// registered (both ways) plus those of its other subscription filters.
	// Default 64 KiB.
	MaxTopicBytes int
	// MaxSubscriptions bounds one node's subscriptions. Default 100.
	MaxSubscriptions int
	// AmplificationFactor is how many times the bytes it received the
	// gateway sends an address that has not proven it receives them
	// (plain UDP; amplify.go). Default 3; negative: no limit, for networks
	// where source addresses cannot be spoofed (limits.amplification_factor
	// 0).
	AmplificationFactor int
	// MaxConnecting bounds the upstream connects in progress for the whole
	// gateway; a CONNECT beyond it gets CONNACK congestion. Default 256.
	MaxConnecting int
	// MaxSessions bounds the sessions (ClientIds) the gateway keeps; a new
	// ClientId beyond it gets CONNACK congestion. Zero: no limit.
	MaxSessions int
	// ConnectRatePerIP bounds the CONNECTs per second from one source IP
	// address (with a burst of as many); the excess gets CONNACK
	// congestion. Zero: off (many nodes may share an address behind a
	// border router or NAT64).
	ConnectRatePerIP float64
}

// Defaults of Config.
const (
	DefaultRetryInterval     = 10 * time.Second
	DefaultRetryCount        = 3
	DefaultInboxSize         = 4096
	DefaultMaxClientIDLen    = 64
	DefaultMaxTopics         = 1000
	DefaultMaxPacketSize     = 65507
	DefaultMaxBuffered       = 1000
	DefaultMaxBufferedBytes  = 256 << 20
	DefaultSessionExpiry     = 24 * time.Hour
	DefaultUpstreamTimeout   = 30 * time.Second
	DefaultAdvertiseInterval = 15 * time.Minute
	DefaultUpstreamWorkers   = 32
	DefaultUDPReadBuffer     = 4 << 20
	DefaultReadBatch         = 32
	DefaultMaxPendingPerNode = 64
	DefaultMaxPendingBytes   = 64 << 20
	DefaultMaxTopicBytes     = 64 << 10
	DefaultMaxSubscriptions  = 100
	DefaultMaxConnecting     = 256
)

func (c *Config) setDefaults() {
	if c.RetryInterval == 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.RetryCount == 0 {
		c.RetryCount = DefaultRetryCount
	}
	if c.Shards == 0 {
		c.Shards = 4 * runtime.GOMAXPROCS(0)
	}
	if c.InboxSize == 0 {
		c.InboxSize = DefaultInboxSize
	}
	if c.MaxClientIDLen == 0 {
		c.MaxClientIDLen = DefaultMaxClientIDLen
	}
	if c.MaxTopics == 0 {
		c.MaxTopics = DefaultMaxTopics
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.MaxBuffered == 0 {
		c.MaxBuffered = DefaultMaxBuffered
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = DefaultSessionExpiry
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.UDPReadBuffer == 0 {
		c.UDPReadBuffer = DefaultUDPReadBuffer
	}
	if c.AmplificationFactor == 0 {
		c.AmplificationFactor = DefaultAmplificationFactor
	}
	if c.ReadBatch == 0 {
		c.ReadBatch = DefaultReadBatch
	}
	if c.UpstreamWorkers == 0 {
		c.UpstreamWorkers = DefaultUpstreamWorkers
	}
	if c.AdvertiseInterval == 0 {
		c.AdvertiseInterval = DefaultAdvertiseInterval
	}
	c.setLimitDefaults()
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// retryDelay is the wait after the transmission that followed `retries`
// retransmissions: Tretry, or with a backoff cap Tretry doubled each time.
func (c *Config) retryDelay(retries int) time.Duration {
	d := c.RetryInterval
	if c.RetryBackoffMax <= 0 {
		return d
	}
	for range retries {
		d *= 2
		if d >= c.RetryBackoffMax {
			return c.RetryBackoffMax
		}
	}
	return d
}

// Check reports whether c (with its defaults) is valid, without binding
// anything.
func (c Config) Check() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	for _, a := range c.Listen {
		if _, err := net.ResolveUDPAddr("udp", a); err != nil {
			return fmt.Errorf("gateway: listen.udp %q: %w (use host:port, e.g. 0.0.0.0:1884 or [::]:1884)", a, err)
		}
	}
	if _, err := parseAllow(c.ForwarderAllow); err != nil {
		return err
	}
	for _, d := range c.AdvertiseTo {
		if _, err := net.ResolveUDPAddr("udp", d); err != nil {
			return fmt.Errorf("gateway: discovery.advertise_to %q: %w (use host:port, e.g. 255.255.255.255:1884 or [ff02::1%%wpan0]:1884)", d, err)
		}
	}
	if c.AdvertiseInterval < 0 || (c.AdvertiseInterval > 0 && c.AdvertiseInterval < 10*time.Millisecond) {
		return errors.New("gateway: discovery.advertise_interval must be positive (the spec recommends more than 15m)")
	}
	if _, err := topicreg.NewPredefined(c.Predefined); err != nil {
		return fmt.Errorf("gateway: predefined_topics: %w", err)
	}
	switch {
	case c.RetryInterval < 0:
		return errors.New("gateway: retry.interval must be positive (e.g. 10s)")
	case c.RetryBackoffMax < 0 || (c.RetryBackoffMax > 0 && c.RetryBackoffMax < c.RetryInterval):
		return errors.New("gateway: retry.backoff_max must be 0 (off) or at least retry.interval")
	case c.RetryCount < 0:
		return errors.New("gateway: retry.count must be positive (e.g. 3)")
	case c.Shards < 0 || c.Shards > 4096:
		return errors.New("gateway: shards must be between 1 and 4096")
	case c.InboxSize < 0:
		return errors.New("gateway: inbox size must be positive")
	case c.MaxClientIDLen < 0 || c.MaxClientIDLen > 65000:
		return errors.New("gateway: max ClientId length must be between 1 and 65000")
	case c.MaxTopics < 0 || c.MaxTopics > 65534:
		return errors.New("gateway: max topics must be between 1 and 65534")
	case c.MaxPacketSize < 8 || c.MaxPacketSize > 65535:
		return errors.New("gateway: max packet size must be between 8 and 65535")
	case c.MaxBuffered < 0:
		return errors.New("gateway: sleep.max_buffered must be positive")
	case c.MaxBufferedBytes < 0:
		return errors.New("gateway: sleep.max_buffered_bytes must be positive")
	case c.SessionExpiry < 0:
		return errors.New("gateway: session expiry must be positive")
	case c.ReadBatch < 0 || c.ReadBatch > 1024:
		return errors.New("gateway: limits.read_batch must be between 1 and 1024 (datagrams per read)")
	case c.UDPReadBuffer < 0:
		return errors.New("gateway: limits.udp_read_buffer must be positive (bytes, e.g. 4194304)")
	case c.UpstreamWorkers < 0 || c.UpstreamWorkers > 100000:
		return errors.New("gateway: limits.upstream_workers must be between 1 and 100000")
	case c.UpstreamTimeout < 0:
		return errors.New("gateway: upstream timeout must be positive")
	}
	return c.validateLimits()
}

// Option configures what is injected into a Gateway rather than configured.
type Option func(*Gateway) error

// WithLogger sets the logger. The default discards everything.
func WithLogger(l *zap.Logger) Option {
	return func(g *Gateway) error {
		if l == nil {
			return errors.New("gateway: WithLogger: nil logger")
		}
		g.log = l
		return nil
	}
}

// WithUpstream sets the broker side. It is required.
func WithUpstream(u Upstream) Option {
	return func(g *Gateway) error {
		if u == nil {
			return errors.New("gateway: WithUpstream: nil upstream")
		}
		g.up = u
		return nil
	}
}

// WithTransport adds a datagram transport (a DTLS listener adapter, an
// in-memory pipe in tests) served beside the UDP addresses of Config.Listen.
// The gateway closes it on shutdown.
func WithTransport(t Transport) Option {
	return func(g *Gateway) error {
		if t == nil {
			return errors.New("gateway: WithTransport: nil transport")
		}
		g.extra = append(g.extra, t)
		return nil
	}
}

// allowList is the parsed ForwarderAllow.
type allowList struct {
	addrs    []netip.AddrPort
	ips      []netip.Addr
	prefixes []netip.Prefix
}

func parseAllow(list []string) (*allowList, error) {
	if len(list) == 0 {
		return nil, nil
	}
	a := &allowList{}
	for _, s := range list {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			a.addrs = append(a.addrs, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			continue
		}
		if ip, err := netip.ParseAddr(s); err == nil {
			a.ips = append(a.ips, ip.Unmap())
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			a.prefixes = append(a.prefixes, p.Masked())
			continue
		}
		return nil, fmt.Errorf("gateway: forwarders.allow %q: not an IP address, host:port or CIDR prefix (e.g. 192.0.2.7, [2001:db8::7]:1884, 10.0.0.0/24)", s)
	}
	return a, nil
}

// allows reports whether a forwarder at ap may send encapsulated messages.
func (a *allowList) allows(ap netip.AddrPort) bool {
	if a == nil {
		return true
	}
	for _, x := range a.addrs {
		if x == ap {
			return true
		}
	}
	for _, ip := range a.ips {
		if ip == ap.Addr() {
			return true
		}
	}
	for _, p := range a.prefixes {
		if p.Contains(ap.Addr()) {
			return true
		}
	}
	return false
}
