// Package dtlstest holds test helpers for DTLS: certificates made on the
// fly, PSK files, a client socket whose port can change under a live DTLS
// session, a lossy relay and raw ClientHellos for flood tests. It is
// imported by tests only.
package dtlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
)

// CA is a certificate authority for tests.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a self-signed P-256 CA.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	TLS     tls.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Issue makes a P-256 certificate for cn with the given SANs ("dns:name"
// or "uri:scheme://..." entries, or bare DNS names), usable by servers and
// clients.
func (ca *CA) Issue(t testing.TB, cn string, sans ...string) *Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, s := range sans {
		switch {
		case strings.HasPrefix(s, "uri:"):
			u, err := url.Parse(strings.TrimPrefix(s, "uri:"))
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, strings.TrimPrefix(s, "dns:"))
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := &Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
	l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Pool returns a pool holding only ca.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// WriteFile writes b to a new file in dir and returns its path.
func WriteFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// PSKFile writes "identity:hexkey" lines to a new file in dir.
func PSKFile(t testing.TB, dir string, keys map[string][]byte) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# identity:hexkey\n")
	for id, k := range keys {
		b.WriteString(id + ":" + hex.EncodeToString(k) + "\n")
	}
	return WriteFile(t, dir, "psk.txt", []byte(b.String()))
}

// Key returns a 16-byte key derived from s (tests only).
func Key(s string) []byte {
	k := make([]byte, 16)
	copy(k, s)
	for i := range k {
		k[i] ^= byte(0x5a + i)
	}
	return k
}

// ClientHello returns a datagram holding one epoch-0 record with a
// ClientHello offering the PSK and ECDHE-ECDSA CCM-8 suites: what a node
// sends to start a handshake (cookie empty) or after a HelloVerifyRequest.
func ClientHello(random [32]byte, cookie []byte) []byte {
	var body []byte
	body = append(body, 0xfe, 0xfd) // DTLS 1.2
	body = append(body, random[:]...)
	body = append(body, 0) // session id
	body = append(body, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 4, 0xc0, 0xa8, 0xc0, 0xae) // TLS_PSK_WITH_AES_128_CCM_8, TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
	body = append(body, 1, 0)                         // compression: null
	hs := make([]byte, 12, 12+len(body))
	hs[0] = 1 // client_hello
	putUint24(hs[1:4], len(body))
	putUint24(hs[9:12], len(body)) // message_seq 0, fragment offset 0
	hs = append(hs, body...)
	rec := make([]byte, 13, 13+len(hs))
	rec[0] = 22 // handshake
	rec[1], rec[2] = 0xfe, 0xff
	binary.BigEndian.PutUint16(rec[11:13], uint16(len(hs)))
	return append(rec, hs...)
}

func putUint24(b []byte, v int) {
	b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v)
}

// QuietLogger silences a pion client (its default logger writes errors to
// stderr).
func QuietLogger() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}
