package snclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// DefaultDTLSHandshakeTimeout bounds a DTLS handshake whose context has no
// deadline.
const DefaultDTLSHandshakeTimeout = 30 * time.Second

// DTLSConfig configures DialDTLS. Give either a pre-shared key
// (PSKIdentity and PSK) or nothing of the PSK, for a certificate handshake.
type DTLSConfig struct {
	// PSKIdentity and PSK select a pre-shared key handshake
	// (TLS_PSK_WITH_AES_128_CCM_8 or TLS_PSK_WITH_AES_128_GCM_SHA256): the
	// identity and key of one line of the gateway's dtls.psk_file.
	PSKIdentity string
	PSK         []byte
	// CAFile is a PEM bundle of the CAs that may sign the gateway's
	// certificate. Default: the system's roots. Certificate handshakes only
	// (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 or ..._GCM_SHA256).
	CAFile string
	// CertFile and KeyFile are the client's PEM certificate and key, for a
	// gateway that requires client certificates.
	CertFile, KeyFile string
	// ServerName is the name the gateway's certificate must hold. Default:
	// the host of the address dialed.
	ServerName string
	// InsecureSkipVerify accepts any gateway certificate (tests only).
	InsecureSkipVerify bool
}

// Validate reports an inconsistent configuration.
func (c DTLSConfig) Validate() error {
	psk := c.PSKIdentity != "" || len(c.PSK) > 0
	switch {
	case psk && (c.PSKIdentity == "" || len(c.PSK) == 0):
		return errors.New("snclient: DTLS PSK needs both an identity and a key")
	case psk && (c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.InsecureSkipVerify):
		return errors.New("snclient: DTLS PSK and certificate settings are exclusive")
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("snclient: DTLS client certificate needs both a certificate file and a key file")
	case c.InsecureSkipVerify && c.CAFile != "":
		return errors.New("snclient: DTLS InsecureSkipVerify ignores the CA file: set only one")
	}
	return nil
}

// DialDTLS returns a DialFunc that opens a DTLS 1.2 session (pion/dtls) to
// the gateway's DTLS listener (listen.dtls, port 1885 by convention):
//
//	opts.Dial = snclient.DialDTLS(snclient.DTLSConfig{PSKIdentity: "node-1", PSK: key})
//
// The handshake completes within the dial, bounded by its context (or by
// DefaultDTLSHandshakeTimeout if it has no deadline); a wrong key or an
// untrusted certificate fails the dial. The client asks for an RFC 9146
// Connection ID, so the session survives a change of its address or port
// (NAT rebinding) when the gateway supports them.
func DialDTLS(cfg DTLSConfig) DialFunc {
	return func(ctx context.Context, addr string) (Transport, error) {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		opts, err := cfg.options(host)
		if err != nil {
			return nil, err
		}
		ra, err := resolveUDP(ctx, addr)
		if err != nil {
			return nil, err
		}
		// Unconnected, as pion writes with WriteTo.
		pc, err := net.ListenUDP("udp", nil)
		if err != nil {
			return nil, err
		}
		c, err := dtls.ClientWithOptions(pc, ra, opts...)
		if err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("dtls: %w", err)
		}
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, DefaultDTLSHandshakeTimeout)
			defer cancel()
		}
		if err := c.HandshakeContext(ctx); err != nil {
			_ = c.Close() // closes pc
			return nil, fmt.Errorf("dtls handshake: %w", err)
		}
		return c, nil
	}
}

// options returns the pion client options of c for a gateway at host.
func (c DTLSConfig) options(host string) ([]dtls.ClientOption, error) {
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	opts := []dtls.ClientOption{
		dtls.WithLoggerFactory(quiet),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		// Send the gateway's Connection ID; it need not send ours.
		dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()),
	}
	if len(c.PSK) > 0 {
		key := append([]byte(nil), c.PSK...)
		return append(opts,
			dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			dtls.WithPSKIdentityHint([]byte(c.PSKIdentity)),
			dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8, dtls.TLS_PSK_WITH_AES_128_GCM_SHA256),
		), nil
	}
	serverName := c.ServerName
	if serverName == "" {
		serverName = host
	}
	opts = append(opts,
		dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
		dtls.WithServerName(serverName),
		dtls.WithInsecureSkipVerify(c.InsecureSkipVerify),
	)
	if c.CAFile != "" {
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("dtls: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("dtls: CA file %q holds no PEM certificate", c.CAFile)
		}
		opts = append(opts, dtls.WithRootCAs(pool))
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dtls: client certificate: %w", err)
		}
		opts = append(opts, dtls.WithCertificates(cert))
	}
	return opts, nil
}

// resolveUDP resolves host:port within ctx, preferring IPv4 as
// net.ResolveUDPAddr does.
func resolveUDP(ctx context.Context, addr string) (*net.UDPAddr, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := net.DefaultResolver.LookupPort(ctx, "udp", portStr)
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = "localhost"
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %q", host)
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() {
			ip = a
			break
		}
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(port))), nil
}
