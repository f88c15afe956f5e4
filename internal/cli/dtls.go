package cli

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"net"
	"os"

	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
)

// Default gateway ports.
const (
	DefaultPort     = 1884 // MQTT-SN over UDP
	DefaultDTLSPort = 1885 // MQTT-SN over DTLS
)

// DTLSUsage explains the DTLS flags in a command's --help.
const DTLSUsage = `DTLS (--dtls, default port 1885): with --psk-identity and --psk (the
identity and hex key of a line of the gateway's dtls.psk_file) the handshake
uses the pre-shared key; otherwise it checks the gateway's certificate
against --cafile (default: the system's CAs) for the name given with -h (or
--server-name when -h is an IP address or another name), and
presents --cert and --key if the gateway asks for a client certificate. The
gateway accepts only the proven identity as client id (the PSK identity or a
name of the certificate), so -i defaults to it.
`

// DTLSFlags are the DTLS flags the command-line tools share.
type DTLSFlags struct {
	Enabled                   bool
	PSKIdentity, PSKHex       string
	CAFile, CertFile, KeyFile string
	ServerName                string
	Insecure                  bool
}

// Register defines --dtls, --psk-identity, --psk, --cafile, --cert, --key,
// --server-name and --insecure on fs.
func (f *DTLSFlags) Register(fs *flag.FlagSet) {
	fs.BoolVar(&f.Enabled, "dtls", false, "talk DTLS to the gateway's DTLS listener (default port 1885)")
	fs.StringVar(&f.PSKIdentity, "psk-identity", "", "with --dtls, the pre-shared key `identity`")
	fs.StringVar(&f.PSKHex, "psk", "", "with --dtls, the pre-shared `key` in hexadecimal")
	fs.StringVar(&f.CAFile, "cafile", "", "with --dtls, PEM `file` of the CAs that sign the gateway's certificate (default: the system's)")
	fs.StringVar(&f.CertFile, "cert", "", "with --dtls, PEM client certificate `file`")
	fs.StringVar(&f.KeyFile, "key", "", "with --dtls, PEM client private key `file`")
	fs.StringVar(&f.ServerName, "server-name", "", "with --dtls, the `name` the gateway's certificate must carry (default: the host given with -h)")
	fs.BoolVar(&f.Insecure, "insecure", false, "with --dtls, do not check the gateway's certificate (testing only)")
}

// Port returns the default gateway port: 1885 with --dtls, 1884 without.
func (f *DTLSFlags) Port() int {
	if f.Enabled {
		return DefaultDTLSPort
	}
	return DefaultPort
}

// Dial returns the snclient DialFunc the flags ask for: nil (plain UDP)
// without --dtls, or an error for an inconsistent combination.
func (f *DTLSFlags) Dial() (snclient.DialFunc, error) {
	if !f.Enabled {
		if f.PSKIdentity != "" || f.PSKHex != "" || f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" || f.ServerName != "" || f.Insecure {
			return nil, errors.New("--psk-identity, --psk, --cafile, --cert, --key, --server-name and --insecure need --dtls")
		}
		return nil, nil
	}
	psk := f.PSKIdentity != "" || f.PSKHex != ""
	switch {
	case psk && (f.PSKIdentity == "" || f.PSKHex == ""):
		return nil, errors.New("--psk-identity and --psk go together")
	case psk && (f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" || f.ServerName != "" || f.Insecure):
		return nil, errors.New("--psk cannot be combined with --cafile, --cert, --key, --server-name or --insecure: a handshake uses a pre-shared key or certificates")
	case f.Insecure && f.ServerName != "":
		return nil, errors.New("--insecure checks no certificate, so --server-name is useless with it")
	case (f.CertFile == "") != (f.KeyFile == ""):
		return nil, errors.New("--cert and --key go together")
	case f.Insecure && f.CAFile != "":
		return nil, errors.New("--insecure checks no certificate, so --cafile is useless with it")
	}
	cfg := snclient.DTLSConfig{PSKIdentity: f.PSKIdentity, CAFile: f.CAFile, CertFile: f.CertFile,
		KeyFile: f.KeyFile, ServerName: f.ServerName, InsecureSkipVerify: f.Insecure}
	if psk {
		key, err := hex.DecodeString(f.PSKHex)
		if err != nil || len(key) == 0 {
			return nil, errors.New("--psk must be a key in hexadecimal, e.g. 000102030405060708090a0b0c0d0e0f")
		}
		cfg.PSK = key
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return snclient.DialDTLS(cfg), nil
}

// ClientID returns the identity the gateway will bind the client id to:
// the PSK identity, or the common name of the client certificate. It
// returns "" when there is none (or the certificate cannot be read; the
// handshake reports that).
func (f *DTLSFlags) ClientID() string {
	switch {
	case !f.Enabled:
		return ""
	case f.PSKIdentity != "":
		return f.PSKIdentity
	case f.CertFile != "":
		b, err := os.ReadFile(f.CertFile)
		if err != nil {
			return ""
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return ""
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return ""
		}
		return c.Subject.CommonName
	}
	return ""
}

// ServerNameHint is what to say after a failed certificate handshake with
// a gateway given by IP address and no --server-name: the certificate
// names the gateway by name (and pion sends no usable SNI for an address).
func (f *DTLSFlags) ServerNameHint(host string) string {
	if !f.Enabled || f.PSKIdentity != "" || f.Insecure || f.ServerName != "" || net.ParseIP(host) == nil {
		return ""
	}
	return "-h is an IP address: give --server-name with the name the gateway's certificate carries (e.g. --server-name gateway.example)"
}

// IsSet reports whether the flag was given on the command line.
func IsSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Resolve applies the DTLS flags after parsing: the default port unless -p
// was given, the client id (the DTLS identity the gateway binds it to)
// unless set, and the dialer (nil for plain UDP). The error describes an
// inconsistent combination of flags.
func (f *DTLSFlags) Resolve(fs *flag.FlagSet, port *int, clientID *string) (snclient.DialFunc, error) {
	if !IsSet(fs, "p") {
		*port = f.Port()
	}
	dial, err := f.Dial()
	if err != nil {
		return nil, err
	}
	if *clientID == "" {
		*clientID = f.ClientID()
	}
	return dial, nil
}
