// Package dtlstransport is a DTLS 1.2 listener (pion/dtls v3) shaped like a
// datagram socket, so the gateway serves DTLS nodes exactly as it serves
// plain UDP ones.
//
// The Transport owns its UDP socket and routes each datagram itself: by
// RFC 9146 Connection ID when the record carries one, otherwise by source
// address. Only an epoch-0 ClientHello creates state, so garbage and plain
// MQTT-SN datagrams cost nothing and get no answer. Each peer gets one pion
// server connection and one goroutine that runs its handshake and then
// feeds its decrypted datagrams into a bounded queue shared by all peers,
// which ReadFrom drains (a full queue drops and counts, never blocks).
//
// Robustness: handshakes have a timeout and a concurrency bound; when the
// bound is reached, the oldest handshake whose peer has not yet proven its
// address (echoed the HelloVerifyRequest cookie) makes room, so a flood of
// spoofed ClientHellos cannot lock legitimate nodes out. A connection idle
// for longer than Config.IdleTimeout is closed. A fresh ClientHello from an
// address that has an established connection (a node that rebooted, see
// pion/dtls#253) evicts the stale connection and starts a new handshake.
package dtlstransport

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Config configures a DTLS listener. Zero values mean "use the default".
// Errors name the configuration keys (listen.dtls, dtls.psk_file, ...).
type Config struct {
	// Listen is the UDP address to serve DTLS on (config listen.dtls),
	// e.g. "0.0.0.0:1885".
	Listen string
	// PSKFile holds "identity:hexkey" lines (config dtls.psk_file). Blank
	// lines and lines starting with # are ignored. Reload re-reads it.
	PSKFile string
	// CertFile and KeyFile are the server's PEM certificate (chain) and
	// ECDSA private key (config dtls.cert_file, dtls.key_file).
	CertFile, KeyFile string
	// ClientCAFile, when set, makes certificate handshakes require a client
	// certificate signed by one of its PEM CAs (config dtls.client_ca_file).
	ClientCAFile string
	// PSKIdentityHint is sent to clients in PSK handshakes (config
	// dtls.psk_identity_hint), for clients that need one; empty: none.
	PSKIdentityHint string

	// HandshakeTimeout bounds one handshake. Default 30s: radios lose
	// flights and pion retransmits them with backoff.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds concurrent handshakes. Default 256.
	MaxHandshakes int
	// IdleTimeout closes a connection that received nothing for this long.
	// It must exceed the longest sleep a node announces (DISCONNECT
	// duration, at most 65535s ≈ 18.2h). Default 25h.
	IdleTimeout time.Duration
	// DisableConnectionIDs turns off RFC 9146 Connection IDs; a node whose
	// address or port changes must then handshake again.
	DisableConnectionIDs bool
}

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultMaxHandshakes    = 256
	DefaultIdleTimeout      = 25 * time.Hour
)

// Sizes that are not configuration.
const (
	cidLength     = 8    // bytes of each server-issued Connection ID
	queueSize     = 4096 // decrypted datagrams waiting for ReadFrom
	peerInboxSize = 16   // raw datagrams waiting for one peer's pion conn
	maxRecordSize = 8192 // pion's inbound buffer: no record is larger
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = DefaultMaxHandshakes
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c
}

// Validate checks c (after defaults) without reading any file. Listen
// also loads and checks the files.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if c.Listen == "" {
		return errors.New("dtls: listen.dtls is empty: set it to the address to serve DTLS on, e.g. 0.0.0.0:1885")
	}
	if _, err := net.ResolveUDPAddr("udp", c.Listen); err != nil {
		return fmt.Errorf("dtls: listen.dtls %q is not a host:port address (e.g. 0.0.0.0:1885): %w", c.Listen, err)
	}
	if c.PSKFile == "" && c.CertFile == "" && c.KeyFile == "" {
		return errors.New("dtls: no credentials: set dtls.psk_file (a file of identity:hexkey lines) or dtls.cert_file and dtls.key_file")
	}
	if c.CertFile != "" && c.KeyFile == "" {
		return errors.New("dtls: dtls.cert_file is set but dtls.key_file is empty: set both")
	}
	if c.KeyFile != "" && c.CertFile == "" {
		return errors.New("dtls: dtls.key_file is set but dtls.cert_file is empty: set both")
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		return errors.New("dtls: dtls.client_ca_file needs dtls.cert_file and dtls.key_file: client certificates are only asked for in certificate handshakes")
	}
	if c.PSKIdentityHint != "" && c.PSKFile == "" {
		return errors.New("dtls: dtls.psk_identity_hint needs dtls.psk_file: the hint is sent only in PSK handshakes")
	}
	if c.HandshakeTimeout < 0 {
		return fmt.Errorf("dtls: handshake timeout %v is negative", c.HandshakeTimeout)
	}
	if c.MaxHandshakes < 0 {
		return fmt.Errorf("dtls: max handshakes %d is negative", c.MaxHandshakes)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("dtls: idle timeout %v is negative", c.IdleTimeout)
	}
	return nil
}

// loadCertificate loads the server certificate and checks its key suits
// the ECDHE-ECDSA cipher suites.
func loadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("dtls: dtls.cert_file %q / dtls.key_file %q: %w", certFile, keyFile, err)
	}
	if _, ok := cert.PrivateKey.(*ecdsa.PrivateKey); !ok {
		return tls.Certificate{}, fmt.Errorf("dtls: dtls.key_file %q is not an ECDSA key: the ECDHE-ECDSA cipher suites need one (openssl ecparam -name prime256v1 -genkey -noout -out key.pem)", keyFile)
	}
	return cert, nil
}

// loadCAs reads a PEM bundle of client CAs.
func loadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("dtls: dtls.client_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("dtls: dtls.client_ca_file %q holds no PEM certificate", file)
	}
	return pool, nil
}
