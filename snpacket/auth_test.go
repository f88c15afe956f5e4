package snpacket_test

import (
	"bytes"
	"errors"
	"testing"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket/snpackettest"
)

// The bytes bisquitt-pub --user user --password pw sends (its doc/auth.md:
// Length, 0x03, unused reason code, method length 5, "PLAIN",
// "\x00USER\x00PASSWORD").
func TestAuthPlainAsBisquittSendsIt(t *testing.T) {
	p := sn.NewAuthPlain("user", []byte("pw"))
	b, err := sn.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, c := range snpackettest.Valid() {
		if c.Name == "AUTH/PLAIN user pw" {
			want = c.Raw
		}
	}
	if !bytes.Equal(b, want) || p.Len() != len(b) {
		t.Fatalf("NewAuthPlain encodes % x (Len %d), want % x", b, p.Len(), want)
	}
	user, pass, err := p.Plain()
	if err != nil || user != "user" || string(pass) != "pw" {
		t.Fatalf("Plain() = %q, %q, %v", user, pass, err)
	}
}

func TestAuthPlainDecoding(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		data   string
		user   string
		pass   string
		bad    bool
	}{
		{"plain", "PLAIN", "\x00alice\x00s3cret", "alice", "s3cret", false},
		{"empty password", "PLAIN", "\x00alice\x00", "alice", "", false},
		{"authzid is the user", "PLAIN", "alice\x00alice\x00pw", "alice", "pw", false},
		{"other authzid", "PLAIN", "root\x00alice\x00pw", "", "", true},
		{"unknown method", "SCRAM-SHA-1", "\x00alice\x00pw", "", "", true},
		{"lower-case method", "plain", "\x00alice\x00pw", "", "", true},
		{"no NUL", "PLAIN", "alice", "", "", true},
		{"one NUL", "PLAIN", "\x00alice", "", "", true},
		{"three NULs", "PLAIN", "\x00alice\x00pw\x00x", "", "", true},
		{"empty user", "PLAIN", "\x00\x00pw", "", "", true},
		{"user not UTF-8", "PLAIN", "\x00\xff\xfe\x00pw", "", "", true},
		{"no data", "PLAIN", "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, pass, err := (&sn.Auth{Method: tc.method, Data: []byte(tc.data)}).Plain()
			if tc.bad {
				if !errors.Is(err, sn.ErrMalformed) {
					t.Fatalf("Plain() = %q, %q, %v: want ErrMalformed", user, pass, err)
				}
				return
			}
			if err != nil || user != tc.user || string(pass) != tc.pass || pass == nil {
				t.Fatalf("Plain() = %q, %q (nil %v), %v", user, pass, pass == nil, err)
			}
		})
	}
}

func TestAuthEncodeLimits(t *testing.T) {
	long := &sn.Auth{Method: string(make([]byte, 256))}
	if _, err := long.AppendTo(nil); !errors.Is(err, sn.ErrMalformed) {
		t.Fatalf("256-octet method: %v", err)
	}
	big := &sn.Auth{Method: "PLAIN", Data: make([]byte, 300)}
	b, err := big.AppendTo(nil)
	if err != nil || len(b) != big.Len() || b[0] != 0x01 {
		t.Fatalf("300-octet data: %d octets (Len %d), %v", len(b), big.Len(), err)
	}
	p, err := sn.Unmarshal(b)
	if a, ok := p.(*sn.Auth); err != nil || !ok || len(a.Data) != 300 {
		t.Fatalf("decode: %#v %v", p, err)
	}
}

// FuzzAuthPlain: Plain never panics, and what it accepts re-encodes to the
// same credentials.
func FuzzAuthPlain(f *testing.F) {
	f.Add([]byte("\x00alice\x00s3cret"))
	f.Add([]byte("alice\x00alice\x00"))
	f.Add([]byte("\x00\x00"))
	f.Add([]byte{0xff, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		user, pass, err := (&sn.Auth{Method: sn.AuthMethodPlain, Data: data}).Plain()
		if err != nil {
			return
		}
		u2, p2, err := sn.NewAuthPlain(user, pass).Plain()
		if err != nil || u2 != user || !bytes.Equal(p2, pass) {
			t.Fatalf("round trip of %q, %q: %q, %q, %v", user, pass, u2, p2, err)
		}
	})
}
