package gateway

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Regression tests for defects found in review.

func (r *rig) sessions() int {
	r.t.Helper()
	cs, err := r.g.Clients(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return len(cs)
}

func (r *rig) timersQueued() int {
	n := 0
	for _, s := range r.g.shards {
		k, err := query(context.Background(), s, func() int { return len(s.timers) })
		if err != nil {
			r.t.Fatal(err)
		}
		n += k
	}
	return n
}

// A clean CONNECT while a QoS 2 publish is with the broker: the old
// session's answer must not crash the shard nor reach the new session.
func TestCleanReconnectDuringQoS2Publish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Predefined: map[uint16]string{1: "p"}})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{})
		gate := make(chan struct{})
		r.up.mu.Lock()
		r.up.pubGate = gate
		r.up.mu.Unlock()
		r.send(nodeA, &sn.Publish{QoS: sn.QoS2, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 7, Data: []byte("x")})
		synctest.Wait()
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		synctest.Wait()
		close(gate)
		r.expect(&sn.Connack{})
		synctest.Wait()
		if len(r.tr.out) != 0 {
			t.Fatalf("the old session's PUBREC reached the node: %d datagrams", len(r.tr.out))
		}
		r.send(nodeA, &sn.PingReq{})
		r.expect(&sn.PingResp{})
	})
}

// A re-CONNECT refused for congestion leaves the node disconnected and
// forgotten, not active and unsupervised; no will is published.
func TestRefusedReconnectDisconnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.connectWithWill("n1", 10, "will/n1", "gone")
		r.up.setDown(true)
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 10, ClientID: "n1"})
		r.expect(&sn.Connack{ReturnCode: sn.RejectedCongestion})
		synctest.Wait()
		if n := r.sessions(); n != 0 {
			t.Fatalf("%d sessions after a refused clean CONNECT, want 0", n)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case m := <-r.up.published:
			t.Fatalf("will published for a node that was refused, not lost: %+v", m)
		default:
		}
	})
}

// An aborted will handshake does not shorten a persistent session's life.
func TestAbortedWillHandshakeKeepsPersistentSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{SessionExpiry: time.Hour})
		r.send(nodeA, &sn.Connect{CleanSession: false, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{})
		r.send(nodeA, &sn.Subscribe{MsgID: 1, TopicName: "a/b"})
		r.next()
		r.send(nodeA, &sn.Disconnect{})
		r.expect(&sn.Disconnect{})
		r.send(nodeA, &sn.Connect{Will: true, CleanSession: false, Duration: 60, ClientID: "n1"})
		r.expect(&sn.WillTopicReq{})
		r.send(nodeA, &sn.PingReq{})
		r.expect(&sn.Disconnect{})
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		c, ok, err := r.g.Client(context.Background(), "n1")
		if err != nil || !ok || len(c.Subscriptions) != 1 {
			t.Fatalf("persistent session lost 30 min after an aborted handshake: %+v %v %v", c, ok, err)
		}
	})
}

// Abandoned will handshakes leave nothing behind, not even a timer.
func TestAbandonedHandshakeLeavesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		for i := range 20 {
			from := &net.UDPAddr{IP: net.IPv4(10, 9, 0, byte(i+1)), Port: 4000}
			r.send(from, &sn.Connect{Will: true, CleanSession: i%2 == 0, Duration: 60, ClientID: "spoof" + string(rune('a'+i))})
			r.next()
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n, k := r.sessions(), r.timersQueued(); n != 0 || k != 0 {
			t.Fatalf("%d sessions and %d timers left, want none", n, k)
		}
	})
}

// PINGREQ with a ClientId from another address does not move an active
// session (only a sleeping node wakes from anywhere).
func TestWakeCannotHijackActiveSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{})
		attacker := &net.UDPAddr{IP: net.IPv4(10, 6, 6, 6), Port: 666}
		r.send(attacker, &sn.PingReq{ClientID: "n1"})
		select {
		case d := <-r.tr.out:
			if d.addr.String() != attacker.String() {
				t.Fatalf("answer went to %v", d.addr)
			}
		case <-time.After(time.Minute):
			t.Fatal("no answer to the attacker")
		}
		r.send(nodeA, &sn.PingReq{})
		d := <-r.tr.out
		if d.addr.String() != nodeA.String() {
			t.Fatalf("the node's PINGRESP went to %v", d.addr)
		}
	})
}
