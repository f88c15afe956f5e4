package snpacket_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket/snpackettest"
)

func TestUnmarshalValid(t *testing.T) {
	for _, c := range snpackettest.Valid() {
		t.Run(c.Name, func(t *testing.T) {
			got, err := sn.Unmarshal(c.Raw)
			if err != nil {
				t.Fatalf("Unmarshal(% x): %v", c.Raw, err)
			}
			if !reflect.DeepEqual(got, c.Packet) {
				t.Fatalf("Unmarshal(% x)\n got %#v\nwant %#v", c.Raw, got, c.Packet)
			}
			if got.Type() != c.Packet.Type() {
				t.Fatalf("Type() = %v, want %v", got.Type(), c.Packet.Type())
			}
		})
	}
}

func TestAppendValid(t *testing.T) {
	for _, c := range snpackettest.Valid() {
		t.Run(c.Name, func(t *testing.T) {
			want := c.Encoded()
			got, err := sn.Marshal(c.Packet)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Marshal\n got % x\nwant % x", got, want)
			}
			// Appending after a prefix keeps the prefix.
			prefix := []byte{0xEE, 0xEE}
			got, err = c.Packet.AppendTo(prefix)
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if !bytes.Equal(got[:2], prefix) || !bytes.Equal(got[2:], want) {
				t.Fatalf("AppendTo(prefix) = % x", got)
			}
		})
	}
}

func TestLenMatchesAppend(t *testing.T) {
	for _, c := range snpackettest.Valid() {
		b, err := c.Packet.AppendTo(nil)
		if err != nil {
			t.Fatalf("%s: AppendTo: %v", c.Name, err)
		}
		if c.Packet.Len() != len(b) {
			t.Errorf("%s: Len() = %d, len(AppendTo(nil)) = %d", c.Name, c.Packet.Len(), len(b))
		}
	}
}

func TestEveryTypeHasVector(t *testing.T) {
	seen := make(map[sn.MsgType]bool)
	for _, c := range snpackettest.Valid() {
		seen[c.Packet.Type()] = true
	}
	for v := range 256 {
		mt := sn.MsgType(v)
		if strings.HasPrefix(mt.String(), "UNKNOWN") {
			continue
		}
		if !seen[mt] {
			t.Errorf("no valid vector for %v", mt)
		}
	}
}

func TestTruncatedPrefixesFail(t *testing.T) {
	for _, c := range snpackettest.Valid() {
		for n := range len(c.Raw) {
			p, err := sn.Unmarshal(c.Raw[:n:n])
			if err == nil {
				t.Errorf("%s: Unmarshal(first %d of %d octets) = %#v, want error", c.Name, n, len(c.Raw), p)
			}
		}
	}
}

func TestUnmarshalMalformed(t *testing.T) {
	for _, c := range snpackettest.Malformed() {
		t.Run(c.Name, func(t *testing.T) {
			got, err := sn.Unmarshal(c.Raw)
			if !errors.Is(err, c.Err) {
				t.Fatalf("Unmarshal(% x) error = %v, want %v", c.Raw, err, c.Err)
			}
			if !strings.HasPrefix(err.Error(), "snpacket: ") {
				t.Errorf("error %q lacks the snpacket prefix", err)
			}
			if c.Packet == nil {
				if got != nil {
					t.Fatalf("Unmarshal returned %#v with the error, want nil", got)
				}
				return
			}
			if !reflect.DeepEqual(got, c.Packet) {
				t.Fatalf("Unmarshal\n got %#v\nwant %#v", got, c.Packet)
			}
		})
	}
}

func TestProtocolIDReturnsConnect(t *testing.T) {
	raw := []byte{0x08, 0x04, 0x04, 0x02, 0x00, 0x1E, 0x63, 0x31}
	p, err := sn.Unmarshal(raw)
	if !errors.Is(err, sn.ErrProtocolID) {
		t.Fatalf("err = %v, want ErrProtocolID", err)
	}
	c, ok := p.(*sn.Connect)
	if !ok {
		t.Fatalf("packet = %T, want *Connect", p)
	}
	if c.ClientID != "c1" || c.ProtocolID != 2 || c.Duration != 30 || !c.CleanSession {
		t.Fatalf("decoded %+v", c)
	}
}

func TestDecodedBytesAliasInput(t *testing.T) {
	raw := []byte{0x09, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02, 0x68, 0x69}
	var p sn.Publish
	if err := p.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	raw[7] = 'H'
	if string(p.Data) != "Hi" {
		t.Fatalf("Data = %q: does not alias the input", p.Data)
	}
}

func TestPublishUnmarshalMethod(t *testing.T) {
	var p sn.Publish
	p.Data = []byte("stale")
	p.DUP = true
	if err := p.Unmarshal([]byte{0x07, 0x0C, 0x00, 0x00, 0x01, 0x00, 0x00}); err != nil {
		t.Fatal(err)
	}
	if want := (sn.Publish{TopicID: 1}); !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v, want %+v (fields must be overwritten)", p, want)
	}
	if err := p.Unmarshal([]byte{0x07, 0x0D, 0, 1, 0, 2, 0}); !errors.Is(err, sn.ErrMalformed) {
		t.Fatalf("PUBACK into *Publish: err = %v, want ErrMalformed", err)
	}
	if err := p.Unmarshal([]byte{0x09, 0x0C, 0x20}); !errors.Is(err, sn.ErrLengthMismatch) {
		t.Fatalf("short PUBLISH: err = %v, want ErrLengthMismatch", err)
	}
	var a sn.Puback
	if err := a.Unmarshal([]byte{0x07, 0x0D, 0, 1, 0, 2, 3}); err != nil || a != (sn.Puback{TopicID: 1, MsgID: 2, ReturnCode: 3}) {
		t.Fatalf("Puback.Unmarshal = %+v, %v", a, err)
	}
	var r sn.Regack
	if err := r.Unmarshal([]byte{0x07, 0x0B, 0, 1, 0, 2, 0}); err != nil || r != (sn.Regack{TopicID: 1, MsgID: 2}) {
		t.Fatalf("Regack.Unmarshal = %+v, %v", r, err)
	}
	var g sn.Register
	if err := g.Unmarshal([]byte{0x07, 0x0A, 0, 1, 0, 2, 'a'}); err != nil || g != (sn.Register{TopicID: 1, MsgID: 2, TopicName: "a"}) {
		t.Fatalf("Register.Unmarshal = %+v, %v", g, err)
	}
}

func TestThreeOctetLengthFor300BytePayload(t *testing.T) {
	data := bytes.Repeat([]byte{0x5A}, 300)
	p := &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 2, Data: data}
	if p.Len() != 309 {
		t.Fatalf("Len() = %d, want 309", p.Len())
	}
	b, err := sn.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x01, 0x01, 0x35, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02}; !bytes.Equal(b[:9], want) {
		t.Fatalf("header % x, want % x", b[:9], want)
	}
	got, err := sn.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip: got %+v", got)
	}
}

func TestLengthFormBoundary(t *testing.T) {
	for body := 250; body <= 256; body++ {
		p := &sn.WillMsg{WillMsg: make([]byte, body)}
		b, err := sn.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		total := 2 + body
		if total >= 256 {
			total = 4 + body
			if b[0] != 0x01 || int(b[1])<<8|int(b[2]) != total {
				t.Errorf("body %d: header % x, want 3-octet %d", body, b[:4], total)
			}
		} else if int(b[0]) != total {
			t.Errorf("body %d: Length %d, want %d", body, b[0], total)
		}
		if len(b) != total || p.Len() != total {
			t.Errorf("body %d: len %d, Len() %d, want %d", body, len(b), p.Len(), total)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		p    sn.Packet
		err  error
	}{
		{"PUBLISH/qos 3", &sn.Publish{QoS: 3}, sn.ErrMalformed},
		{"PUBLISH/qos -2", &sn.Publish{QoS: -2}, sn.ErrMalformed},
		{"PUBLISH/reserved topic ID type", &sn.Publish{TopicIDType: 3}, sn.ErrReservedTopicIDType},
		{"PUBLISH/topic ID type 4", &sn.Publish{TopicIDType: 4}, sn.ErrMalformed},
		{"PUBLISH/too large", &sn.Publish{Data: make([]byte, 65535-8)}, sn.ErrTooLarge},
		{"SUBSCRIBE/qos -1", &sn.Subscribe{QoS: sn.QoSMinusOne, TopicName: "a"}, sn.ErrMalformed},
		{"SUBSCRIBE/reserved topic ID type", &sn.Subscribe{TopicIDType: 3}, sn.ErrReservedTopicIDType},
		{"SUBSCRIBE/name with predefined", &sn.Subscribe{TopicIDType: sn.TopicPredefined, TopicName: "a"}, sn.ErrMalformed},
		{"SUBSCRIBE/ID with normal", &sn.Subscribe{TopicID: 1}, sn.ErrMalformed},
		{"UNSUBSCRIBE/reserved topic ID type", &sn.Unsubscribe{TopicIDType: 3}, sn.ErrReservedTopicIDType},
		{"UNSUBSCRIBE/name with short", &sn.Unsubscribe{TopicIDType: sn.TopicShort, TopicName: "ab"}, sn.ErrMalformed},
		{"SUBACK/qos -1", &sn.Suback{QoS: sn.QoSMinusOne}, sn.ErrMalformed},
		{"WILLTOPIC/qos -1", &sn.WillTopic{QoS: sn.QoSMinusOne, WillTopic: "w"}, sn.ErrMalformed},
		{"WILLTOPIC/qos -1 empty", &sn.WillTopic{QoS: sn.QoSMinusOne}, sn.ErrMalformed},
		{"WILLTOPICUPD/qos 5", &sn.WillTopicUpd{QoS: 5, WillTopic: "w"}, sn.ErrMalformed},
		{"DISCONNECT/duration without flag", &sn.Disconnect{Duration: 5}, sn.ErrMalformed},
		{"REGISTER/too large", &sn.Register{TopicName: strings.Repeat("a", 65532)}, sn.ErrTooLarge},
		{"CONNECT/too large", &sn.Connect{ClientID: strings.Repeat("a", 65532)}, sn.ErrTooLarge},
		{"ENCAPSULATED/nil message", &sn.Encapsulated{}, sn.ErrMalformed},
		{"ENCAPSULATED/nested", &sn.Encapsulated{Message: &sn.Encapsulated{Message: &sn.PingReq{}}}, sn.ErrMalformed},
		{"ENCAPSULATED/radius 4", &sn.Encapsulated{Radius: 4, Message: &sn.PingReq{}}, sn.ErrMalformed},
		{"ENCAPSULATED/node ID too long", &sn.Encapsulated{NodeID: make([]byte, 253), Message: &sn.PingReq{}}, sn.ErrTooLarge},
		{"ENCAPSULATED/inner error", &sn.Encapsulated{Message: &sn.Publish{QoS: 7}}, sn.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte{0xAA, 0xBB}
			b, err := tt.p.AppendTo(prefix)
			if !errors.Is(err, tt.err) {
				t.Fatalf("AppendTo error = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(b, prefix) {
				t.Fatalf("AppendTo on error returned % x, want the input % x", b, prefix)
			}
			if _, err := sn.Marshal(tt.p); !errors.Is(err, tt.err) {
				t.Fatalf("Marshal error = %v, want %v", err, tt.err)
			}
		})
	}
	if _, err := sn.Marshal(nil); !errors.Is(err, sn.ErrMalformed) {
		t.Fatalf("Marshal(nil) error = %v", err)
	}
}

func TestEncodeLimits(t *testing.T) {
	// Exactly 65535 octets encodes.
	p := &sn.Publish{Data: make([]byte, 65535-9)}
	b, err := sn.Marshal(p)
	if err != nil || len(b) != 65535 || p.Len() != 65535 {
		t.Fatalf("65535-octet PUBLISH: len %d, Len %d, err %v", len(b), p.Len(), err)
	}
	if _, err := sn.Unmarshal(b); err != nil {
		t.Fatalf("decode 65535-octet PUBLISH: %v", err)
	}
	// A 252-octet node ID is the largest a 1-octet Le carries.
	e := &sn.Encapsulated{NodeID: bytes.Repeat([]byte{1}, sn.MaxNodeIDLen), Message: &sn.PingResp{}}
	b, err = sn.Marshal(e)
	if err != nil || b[0] != 0xFF {
		t.Fatalf("max node ID: % x, %v", b[:2], err)
	}
	got, err := sn.Unmarshal(b)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("max node ID round trip: %#v, %v", got, err)
	}
	// Connect ProtocolID 0 encodes as 0x01; other values are written as given.
	b, _ = sn.Marshal(&sn.Connect{ClientID: "c"})
	if b[3] != 0x01 {
		t.Fatalf("ProtocolId = %#x, want 0x01", b[3])
	}
	b, _ = sn.Marshal(&sn.Connect{ProtocolID: 2, ClientID: "c"})
	if b[3] != 0x02 {
		t.Fatalf("ProtocolId = %#x, want 0x02", b[3])
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		f                        sn.Flags
		dup, retain, will, clean bool
		qos                      sn.QoS
		tt                       sn.TopicIDType
	}{
		{0x00, false, false, false, false, sn.QoS0, sn.TopicNormal},
		{0x20, false, false, false, false, sn.QoS1, sn.TopicNormal},
		{0x40, false, false, false, false, sn.QoS2, sn.TopicNormal},
		{0x60, false, false, false, false, sn.QoSMinusOne, sn.TopicNormal},
		{0x80, true, false, false, false, sn.QoS0, sn.TopicNormal},
		{0x10, false, true, false, false, sn.QoS0, sn.TopicNormal},
		{0x08, false, false, true, false, sn.QoS0, sn.TopicNormal},
		{0x04, false, false, false, true, sn.QoS0, sn.TopicNormal},
		{0x62, false, false, false, false, sn.QoSMinusOne, sn.TopicShort},
		{0x61, false, false, false, false, sn.QoSMinusOne, sn.TopicPredefined},
		{0xFF, true, true, true, true, sn.QoSMinusOne, 3},
		{0xB1, true, true, false, false, sn.QoS1, sn.TopicPredefined},
	}
	for _, tt := range tests {
		f := tt.f
		if f.DUP() != tt.dup || f.Retain() != tt.retain || f.Will() != tt.will ||
			f.CleanSession() != tt.clean || f.QoS() != tt.qos || f.TopicIDType() != tt.tt {
			t.Errorf("Flags(%#02x) accessors = dup %v qos %v retain %v will %v clean %v tt %v",
				uint8(f), f.DUP(), f.QoS(), f.Retain(), f.Will(), f.CleanSession(), f.TopicIDType())
		}
		if got := sn.MakeFlags(tt.dup, tt.qos, tt.retain, tt.will, tt.clean, tt.tt); got != f {
			t.Errorf("MakeFlags(...) = %#02x, want %#02x", uint8(got), uint8(f))
		}
	}
	p := &sn.Publish{DUP: true, QoS: sn.QoSMinusOne, Retain: true, TopicIDType: sn.TopicShort}
	if p.Flags() != 0xF2 {
		t.Errorf("Publish.Flags() = %#02x, want 0xf2", uint8(p.Flags()))
	}
	if f := (&sn.Connect{Will: true, CleanSession: true}).Flags(); f != 0x0C {
		t.Errorf("Connect.Flags() = %#02x, want 0x0c", uint8(f))
	}
	if f := (&sn.Subscribe{DUP: true, QoS: sn.QoS2, TopicIDType: sn.TopicPredefined}).Flags(); f != 0xC1 {
		t.Errorf("Subscribe.Flags() = %#02x, want 0xc1", uint8(f))
	}
}

func TestShortTopic(t *testing.T) {
	id, ok := sn.ShortTopicID("ab")
	if !ok || id != 0x6162 {
		t.Fatalf("ShortTopicID(ab) = %#04x, %v", id, ok)
	}
	if got := sn.ShortTopicName(0x6162); got != "ab" {
		t.Fatalf("ShortTopicName(0x6162) = %q", got)
	}
	for _, name := range []string{"", "a", "abc", "é"[:1]} {
		if _, ok := sn.ShortTopicID(name); ok {
			t.Errorf("ShortTopicID(%q) ok, want false", name)
		}
	}
	if id, ok := sn.ShortTopicID("é"); !ok || sn.ShortTopicName(id) != "é" {
		t.Errorf("2-octet UTF-8 name did not round trip: %#04x %v", id, ok)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{sn.TypePublish.String(), "PUBLISH"},
		{sn.TypeConnect.String(), "CONNECT"},
		{sn.TypePubcomp.String(), "PUBCOMP"},
		{sn.TypeEncapsulated.String(), "ENCAPSULATED"},
		{sn.MsgType(0x1E).String(), "UNKNOWN(0x1e)"},
		{sn.MsgType(0xFF).String(), "UNKNOWN(0xff)"},
		{sn.Accepted.String(), "accepted"},
		{sn.RejectedInvalidTopicID.Error(), "snpacket: rejected: invalid topic ID"},
		{sn.RejectedCongestion.Error(), "snpacket: rejected: congestion"},
		{sn.RejectedNotSupported.String(), "rejected: not supported"},
		{sn.ReturnCode(0x80).String(), "reserved(0x80)"},
		{sn.QoSMinusOne.String(), "QoS-1"},
		{sn.QoS2.String(), "QoS2"},
		{sn.QoS(9).String(), "QoS(9)"},
		{sn.TopicShort.String(), "short"},
		{sn.TopicIDType(3).String(), "reserved(3)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	var err error = sn.RejectedCongestion
	var rc sn.ReturnCode
	if !errors.As(err, &rc) || rc != sn.RejectedCongestion {
		t.Errorf("errors.As ReturnCode failed")
	}
	for _, e := range []error{sn.ErrTooShort, sn.ErrLengthMismatch, sn.ErrUnknownType,
		sn.ErrReservedTopicIDType, sn.ErrReservedQoS, sn.ErrProtocolID, sn.ErrMalformed, sn.ErrTooLarge} {
		if !strings.HasPrefix(e.Error(), "snpacket: ") {
			t.Errorf("%q lacks the snpacket: prefix", e)
		}
	}
}

func TestUnmarshalRandomNeverPanics(t *testing.T) {
	// Deterministic sweep of all 1- to 3-octet inputs plus mutations of the
	// vectors; FuzzUnmarshal explores further.
	for a := range 256 {
		_, _ = sn.Unmarshal([]byte{byte(a)})
		for b := range 256 {
			_, _ = sn.Unmarshal([]byte{byte(a), byte(b)})
			if a <= 0x03 { // other 3-octet inputs fail on the Length alone
				for c := range 256 {
					_, _ = sn.Unmarshal([]byte{byte(a), byte(b), byte(c)})
				}
			}
		}
	}
	for _, c := range snpackettest.Valid() {
		for i := range c.Raw {
			m := bytes.Clone(c.Raw)
			for v := range 256 {
				m[i] = byte(v)
				_, _ = sn.Unmarshal(m)
			}
		}
	}
}
