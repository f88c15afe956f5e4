package dtlstransport

import (
	"testing"

	"github.com/mqttsn-gateway/mqttsn-gateway/dtlstransport/dtlstest"
)

func TestParseClientHello(t *testing.T) {
	var random [32]byte
	for i := range random {
		random[i] = byte(i)
	}
	for _, cookie := range [][]byte{nil, []byte("0123456789abcdefghij")} {
		b := dtlstest.ClientHello(random, cookie)
		ch, ok := parseClientHello(b)
		if !ok || ch.hasCookie != (cookie != nil) || [28]byte(random[4:]) != ch.random {
			t.Fatalf("cookie %q: got %+v, %v", cookie, ch, ok)
		}
		// Every truncation and a non-zero epoch are no ClientHello, and
		// nothing panics.
		const minHello = 13 + 12 + 2 + 32 + 1 + 1 // headers, version, random, session id and cookie lengths
		for n := range len(b) {
			if _, ok := parseClientHello(b[:n]); ok && n < minHello {
				t.Fatalf("prefix of %d bytes parsed", n)
			}
		}
		e := append([]byte(nil), b...)
		e[4] = 1
		if _, ok := parseClientHello(e); ok {
			t.Fatal("epoch 1 ClientHello accepted")
		}
		if isServerHello(b) {
			t.Fatal("ClientHello taken for a ServerHello")
		}
		s := append([]byte(nil), b...)
		s[13] = handshakeTypeServerHello
		if !isServerHello(s) {
			t.Fatal("ServerHello not recognised")
		}
	}
	if _, ok := parseClientHello([]byte{0x08, 0x04, 0x04, 0x01, 0x00, 0x0a, 0x63, 0x31}); ok {
		t.Fatal("MQTT-SN CONNECT parsed as a ClientHello")
	}
}

func TestRecordCID(t *testing.T) {
	b := make([]byte, 13+cidLength+2)
	b[0] = contentTypeConnectionID
	copy(b[11:], "ABCDEFGH")
	cid, ok := recordCID(b)
	if !ok || string(cid) != "ABCDEFGH" {
		t.Fatalf("got %q, %v", cid, ok)
	}
	b[0] = contentTypeHandshake
	if _, ok := recordCID(b); ok {
		t.Fatal("handshake record has a CID")
	}
	if _, ok := recordCID(b[:12]); ok {
		t.Fatal("short record has a CID")
	}
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(dtlstest.ClientHello([32]byte{1}, nil))
	f.Add(dtlstest.ClientHello([32]byte{2}, []byte("cookie")))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseClientHello(b)
		recordCID(b)
		isServerHello(b)
	})
}
