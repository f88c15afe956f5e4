package snpacket_test

import (
	"testing"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Benchmark inputs: a QoS 1 PUBLISH with an 8-octet payload, a PUBACK and
// a REGISTER of "sensor/42t".
func benchPublishRaw() []byte {
	return []byte{0x0F, 0x0C, 0x20, 0x00, 0x01, 0x00, 0x02, 't', 'e', 'm', 'p', '=', '2', '1', '.'}
}

func benchPubackRaw() []byte { return []byte{0x07, 0x0D, 0x00, 0x01, 0x00, 0x02, 0x00} }

func benchRegisterRaw() []byte {
	return []byte{0x10, 0x0A, 0x00, 0x00, 0x00, 0x01, 's', 'e', 'n', 's', 'o', 'r', '/', '4', '2', 't'}
}

func BenchmarkUnmarshalPublish(b *testing.B) {
	var p sn.Publish
	raw := benchPublishRaw()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := p.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalPublishInterface(b *testing.B) {
	raw := benchPublishRaw()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := sn.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	p := &sn.Publish{QoS: sn.QoS1, TopicID: 1, MsgID: 2, Data: []byte("temp=21.")}
	buf := make([]byte, 0, p.Len())
	b.ReportAllocs()
	b.SetBytes(int64(p.Len()))
	for b.Loop() {
		if _, err := p.AppendTo(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalPuback(b *testing.B) {
	var p sn.Puback
	raw := benchPubackRaw()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := p.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPuback(b *testing.B) {
	p := &sn.Puback{TopicID: 1, MsgID: 2}
	buf := make([]byte, 0, p.Len())
	b.ReportAllocs()
	b.SetBytes(int64(p.Len()))
	for b.Loop() {
		if _, err := p.AppendTo(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalRegister(b *testing.B) {
	var p sn.Register
	raw := benchRegisterRaw()
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := p.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRegister(b *testing.B) {
	p := &sn.Register{TopicID: 7, MsgID: 1, TopicName: "sensor/42t"}
	buf := make([]byte, 0, p.Len())
	b.ReportAllocs()
	b.SetBytes(int64(p.Len()))
	for b.Loop() {
		if _, err := p.AppendTo(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
