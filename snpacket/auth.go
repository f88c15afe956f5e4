package snpacket

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// AuthMethodPlain is the SASL PLAIN method (RFC 4616).
const AuthMethodPlain = "PLAIN"

// Auth reason codes (MQTT-SN v2.0 draft, as MQTT 5).
const (
	AuthSuccess        = 0x00
	AuthContinue       = 0x18
	AuthReauthenticate = 0x19
)

// Auth is an AUTH message (MQTT-SN v2.0 draft §6, as bisquitt sends it):
//
//	Length 03 ReasonCode MethodLength(1) Method... Data...
//
// Data runs to the end of the message. Method is at most 255 octets.
// Decoded Data aliases the input; copy it before the buffer is reused.
// Data holds a password with the PLAIN method: never log it.
type Auth struct {
	ReasonCode uint8
	Method     string
	Data       []byte
}

const authFixed = 2 // ReasonCode + MethodLength

// NewAuthPlain returns an AUTH with the PLAIN method and data
// "\x00user\x00password" (no authorization identity).
func NewAuthPlain(user string, password []byte) *Auth {
	data := make([]byte, 0, 2+len(user)+len(password))
	data = append(data, 0)
	data = append(data, user...)
	data = append(data, 0)
	data = append(data, password...)
	return &Auth{Method: AuthMethodPlain, Data: data}
}

// Type implements Packet.
func (p *Auth) Type() MsgType { return TypeAuth }

// Len implements Packet.
func (p *Auth) Len() int { return packetLen(authFixed + len(p.Method) + len(p.Data)) }

// AppendTo implements Packet.
func (p *Auth) AppendTo(b []byte) ([]byte, error) {
	if len(p.Method) > 255 {
		return b, fmt.Errorf("%w: AUTH method of %d octets exceeds 255", ErrMalformed, len(p.Method))
	}
	b, err := appendHeader(b, TypeAuth, authFixed+len(p.Method)+len(p.Data))
	if err != nil {
		return b, err
	}
	b = append(b, p.ReasonCode, byte(len(p.Method)))
	b = append(b, p.Method...)
	return append(b, p.Data...), nil
}

func (p *Auth) decode(body []byte) error {
	if err := checkMin(TypeAuth, body, authFixed); err != nil {
		return err
	}
	n := int(body[1])
	if len(body) < authFixed+n {
		return fmt.Errorf("%w: AUTH method length %d, %d octets left", ErrTooShort, n, len(body)-authFixed)
	}
	*p = Auth{
		ReasonCode: body[0],
		Method:     string(body[authFixed : authFixed+n]),
		Data:       aliasOrNil(body[authFixed+n:]),
	}
	return nil
}

// Plain decodes the Data of a PLAIN AUTH (RFC 4616: authzid NUL authcid
// NUL passwd). It returns the user name (authcid) and password; the
// password aliases p.Data. It fails with ErrMalformed unless the method is
// PLAIN, there are exactly two NULs, the user name is non-empty UTF-8, and
// the authorization identity is empty or the user name itself (acting as
// another identity is not supported).
func (p *Auth) Plain() (user string, password []byte, err error) {
	if p.Method != AuthMethodPlain {
		return "", nil, fmt.Errorf("%w: AUTH method %q is not %s", ErrMalformed, p.Method, AuthMethodPlain)
	}
	authz, rest, ok := bytes.Cut(p.Data, []byte{0})
	if !ok {
		return "", nil, fmt.Errorf("%w: PLAIN data without NUL separators", ErrMalformed)
	}
	authc, pass, ok := bytes.Cut(rest, []byte{0})
	switch {
	case !ok:
		return "", nil, fmt.Errorf("%w: PLAIN data with one NUL separator, want two", ErrMalformed)
	case bytes.IndexByte(pass, 0) >= 0:
		return "", nil, fmt.Errorf("%w: PLAIN password contains NUL", ErrMalformed)
	case len(authc) == 0:
		return "", nil, fmt.Errorf("%w: PLAIN data without a user name", ErrMalformed)
	case !utf8.Valid(authc):
		return "", nil, fmt.Errorf("%w: PLAIN user name is not UTF-8", ErrMalformed)
	case len(authz) > 0 && !bytes.Equal(authz, authc):
		return "", nil, fmt.Errorf("%w: PLAIN authorization identity differs from the user name", ErrMalformed)
	}
	return string(authc), pass, nil
}
