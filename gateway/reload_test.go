package gateway

import (
	"net"
	"testing"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// SetPredefined swaps the table for the next lookup; a bad table is
// refused and the old one stays.
func TestSetPredefined(t *testing.T) {
	r := newRig(t, Config{Predefined: map[uint16]string{1: "old/one"}})
	qm1 := func(id uint16) {
		r.send(nodeA, &sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicPredefined, TopicID: id, Data: []byte("x")})
	}
	qm1(1)
	if m := r.published(); m.Topic != "old/one" {
		t.Fatalf("before: %q", m.Topic)
	}
	if err := r.g.SetPredefined(map[uint16]string{1: "new/one", 2: "new/two"}); err != nil {
		t.Fatal(err)
	}
	qm1(2)
	if m := r.published(); m.Topic != "new/two" {
		t.Fatalf("after: %q", m.Topic)
	}
	if err := r.g.SetPredefined(map[uint16]string{3: "a/+"}); err == nil {
		t.Fatal("a wildcard predefined topic was accepted")
	}
	qm1(1)
	if m := r.published(); m.Topic != "new/one" {
		t.Fatalf("after a refused table: %q", m.Topic)
	}
}

// SetForwarderAllow applies to the next encapsulated datagram.
func TestSetForwarderAllow(t *testing.T) {
	r := newRig(t, Config{})
	fwd := &net.UDPAddr{IP: net.IPv4(10, 9, 9, 9), Port: 1884}
	connect := func(id string) {
		r.send(fwd, &sn.Encapsulated{NodeID: []byte{1}, Message: &sn.Connect{CleanSession: true, Duration: 60, ClientID: id}})
	}
	if err := r.g.SetForwarderAllow([]string{"192.0.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	connect("behind-1")
	// The reader takes datagrams in order: once this one is answered, the
	// CONNECT above was judged.
	r.send(nodeA, &sn.PingReq{})
	r.expect(&sn.Disconnect{})
	if err := r.g.SetForwarderAllow(nil); err != nil { // any forwarder
		t.Fatal(err)
	}
	connect("behind-2")
	p, ok := r.next().(*sn.Encapsulated)
	if !ok || p.Message.(*sn.Connack).ReturnCode != sn.Accepted {
		t.Fatalf("answer %+v", p)
	}
	if r.g.Stats().ForwarderDenied.Load() != 1 {
		t.Errorf("forwarder denials %d, want 1 (the first CONNECT)", r.g.Stats().ForwarderDenied.Load())
	}
	if err := r.g.SetForwarderAllow([]string{"not an address"}); err == nil {
		t.Error("a bad list was accepted")
	}
}
