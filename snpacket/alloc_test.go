package snpacket_test

import (
	"testing"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket/snpackettest"
)

func TestPublishUnmarshalZeroAlloc(t *testing.T) {
	raw := []byte{0x09, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02, 0x68, 0x69}
	var p sn.Publish
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("(*Publish).Unmarshal allocs = %v, want 0", allocs)
	}
	// Also a large 3-octet-length PUBLISH.
	big, err := sn.Marshal(&sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 1, Data: make([]byte, 1000)})
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = p.Unmarshal(big) }); allocs != 0 {
		t.Fatalf("(*Publish).Unmarshal of 1009 octets allocs = %v, want 0", allocs)
	}
}

func TestFixedAckUnmarshalZeroAlloc(t *testing.T) {
	var a sn.Puback
	raw := []byte{0x07, 0x0D, 0x00, 0x01, 0x00, 0x02, 0x00}
	if allocs := testing.AllocsPerRun(100, func() { _ = a.Unmarshal(raw) }); allocs != 0 {
		t.Fatalf("(*Puback).Unmarshal allocs = %v, want 0", allocs)
	}
	var r sn.Regack
	raw = []byte{0x07, 0x0B, 0x00, 0x01, 0x00, 0x02, 0x00}
	if allocs := testing.AllocsPerRun(100, func() { _ = r.Unmarshal(raw) }); allocs != 0 {
		t.Fatalf("(*Regack).Unmarshal allocs = %v, want 0", allocs)
	}
}

func TestUnmarshalPublishOneAlloc(t *testing.T) {
	// Documented cost of the interface path: the returned *Publish only.
	raw := []byte{0x09, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02, 0x68, 0x69}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = sn.Unmarshal(raw) }); allocs > 1 {
		t.Fatalf("Unmarshal(PUBLISH) allocs = %v, want <= 1", allocs)
	}
}

func TestAppendToPresizedZeroAlloc(t *testing.T) {
	for _, c := range snpackettest.Valid() {
		buf := make([]byte, 0, c.Packet.Len())
		allocs := testing.AllocsPerRun(50, func() {
			if _, err := c.Packet.AppendTo(buf[:0]); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: AppendTo into a pre-sized buffer allocs = %v, want 0", c.Name, allocs)
		}
	}
}
