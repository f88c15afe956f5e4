package snpacket_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket/snpackettest"
)

// addSeeds seeds f with every golden vector, valid and malformed.
func addSeeds(f *testing.F) {
	f.Helper()
	for _, c := range snpackettest.Valid() {
		f.Add(c.Raw)
	}
	for _, c := range snpackettest.Malformed() {
		f.Add(c.Raw)
	}
}

// FuzzUnmarshal checks that Unmarshal never panics, that every error wraps
// a sentinel, and that a packet comes back only without error or with an
// error for which ReturnsPacket holds.
func FuzzUnmarshal(f *testing.F) {
	addSeeds(f)
	sentinels := []error{
		sn.ErrTooShort, sn.ErrLengthMismatch, sn.ErrUnknownType,
		sn.ErrReservedTopicIDType, sn.ErrReservedQoS, sn.ErrProtocolID, sn.ErrMalformed,
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := sn.Unmarshal(b)
		if err == nil {
			if p == nil {
				t.Fatal("nil Packet without error")
			}
			return
		}
		known := false
		for _, s := range sentinels {
			if errors.Is(err, s) {
				known = true
			}
		}
		if !known {
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if (p != nil) != sn.ReturnsPacket(err) {
			t.Fatalf("Packet %#v with error %v", p, err)
		}
	})
}

// FuzzRoundTrip decodes, re-encodes and decodes again: the two values must
// be equal, Len must match the encoding, and the re-encoding is canonical
// (encoding the second value gives the same bytes). The bytes may differ
// from the input (e.g. a 3-octet Length on a short message).
func FuzzRoundTrip(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p1, err := sn.Unmarshal(b)
		if err != nil {
			return
		}
		enc, err := p1.AppendTo(nil)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", p1, err)
		}
		if p1.Len() != len(enc) {
			t.Fatalf("Len() = %d, encoded %d octets", p1.Len(), len(enc))
		}
		p2, err := sn.Unmarshal(enc)
		if err != nil {
			t.Fatalf("re-decode % x: %v", enc, err)
		}
		if !reflect.DeepEqual(p1, p2) {
			t.Fatalf("round trip\n got %#v\nwant %#v", p2, p1)
		}
		enc2, err := p2.AppendTo(nil)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding not canonical: % x vs % x (%v)", enc, enc2, err)
		}
	})
}
