package gateway

import (
	"net"
	"testing"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// The session engine's hot paths, over the in-memory transport and a fake
// upstream, so that only the gateway is measured:
//
//	go test -run='^$' -bench=. -benchmem ./gateway

func benchRig(b *testing.B) *rig {
	b.Helper()
	r := newRig(b, Config{Predefined: map[uint16]string{1: "bench/up"}})
	r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 600, ClientID: "bench"})
	r.expect(&sn.Connack{})
	return r
}

func encode(b *testing.B, p sn.Packet) []byte {
	b.Helper()
	raw, err := sn.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// Datagram in to upstream publish, QoS 0.
func BenchmarkUplinkQoS0(b *testing.B) {
	r := benchRig(b)
	raw := encode(b, &sn.Publish{TopicIDType: sn.TopicPredefined, TopicID: 1, Data: make([]byte, 32)})
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		r.tr.in <- memDatagram{b: raw, addr: nodeA}
		<-r.up.published
	}
}

// Datagram in to upstream publish and PUBACK out, QoS 1: one node, one
// message in flight, as the spec has it.
func BenchmarkUplinkQoS1(b *testing.B) {
	r := benchRig(b)
	raw := encode(b, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 1, Data: make([]byte, 32)})
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		r.tr.in <- memDatagram{b: raw, addr: nodeA}
		<-r.up.published
		<-r.tr.out
	}
}

// Uplink QoS 1 from 100 nodes at once, one message in flight each.
func BenchmarkUplinkQoS1Parallel100(b *testing.B) {
	r := newRig(b, Config{Predefined: map[uint16]string{1: "bench/up"}})
	const nodes = 100
	addrs := make([]*net.UDPAddr, nodes)
	for i := range addrs {
		addrs[i] = &net.UDPAddr{IP: net.IPv4(10, 1, byte(i/250), byte(i%250+1)), Port: 4000}
		r.send(addrs[i], &sn.Connect{CleanSession: true, Duration: 600, ClientID: "bench" + string(rune('A'+i%26)) + string(rune('a'+i/26))})
		r.next()
	}
	raw := encode(b, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 1, Data: make([]byte, 32)})
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		for _, a := range addrs {
			r.tr.in <- memDatagram{b: raw, addr: a}
		}
		for range addrs {
			<-r.up.published
			<-r.tr.out
		}
	}
}

// Broker message to datagram out, QoS 0, to a node subscribed by name.
func BenchmarkDownlinkQoS0(b *testing.B) {
	r := benchRig(b)
	r.send(nodeA, &sn.Subscribe{MsgID: 1, TopicName: "bench/down"})
	r.next()
	deliver := r.up.session("bench").deliver
	msg := Message{Topic: "bench/down", Payload: make([]byte, 32)}
	b.ReportAllocs()
	for b.Loop() {
		deliver(msg)
		<-r.tr.out
	}
}

// Broker message to PUBLISH out and PUBACK in, QoS 1.
func BenchmarkDownlinkQoS1(b *testing.B) {
	r := benchRig(b)
	r.send(nodeA, &sn.Subscribe{QoS: sn.QoS1, MsgID: 1, TopicName: "bench/down"})
	sa := r.next().(*sn.Suback)
	deliver := r.up.session("bench").deliver
	msg := Message{Topic: "bench/down", Payload: make([]byte, 32), QoS: 1}
	b.ReportAllocs()
	for b.Loop() {
		deliver(msg)
		out := <-r.tr.out
		var p sn.Publish
		if err := p.Unmarshal(out.b); err != nil {
			b.Fatal(err)
		}
		r.tr.in <- memDatagram{b: encode(b, &sn.Puback{TopicID: sa.TopicID, MsgID: p.MsgID}), addr: nodeA}
	}
}
