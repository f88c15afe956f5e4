package gateway

import (
	"testing"
	"testing/synctest"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

func (r *rig) opens() int {
	r.up.mu.Lock()
	defer r.up.mu.Unlock()
	return r.up.opens
}

// With RequireAuth the node's AUTH (sent right behind CONNECT, as
// bisquitt-pub does) logs it in upstream with its own credentials.
func TestAuthRequired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{RequireAuth: true})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.send(nodeA, sn.NewAuthPlain("alice", []byte("s3cret")))
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		a := r.up.session("n1").opts.Auth
		if a == nil || a.Username != "alice" || string(a.Password) != "s3cret" {
			t.Fatalf("SessionOptions.Auth = %+v", a)
		}
	})
}

// The will handshake follows the AUTH.
func TestAuthRequiredWithWill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{RequireAuth: true})
		r.send(nodeA, &sn.Connect{Will: true, CleanSession: true, Duration: 60, ClientID: "n1"})
		r.send(nodeA, sn.NewAuthPlain("bob", []byte("pw")))
		r.expect(&sn.WillTopicReq{})
		r.send(nodeA, &sn.WillTopic{WillTopic: "w/n1"})
		r.expect(&sn.WillMsgReq{})
		r.send(nodeA, &sn.WillMsg{WillMsg: []byte("bye")})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		if a := r.up.session("n1").opts.Auth; a == nil || a.Username != "bob" {
			t.Fatalf("SessionOptions.Auth = %+v", a)
		}
	})
}

// A malformed AUTH, or none, gets CONNACK "not supported", and nothing
// reaches the broker.
func TestAuthRequiredRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		next sn.Packet
	}{
		{"unknown method", &sn.Auth{Method: "SCRAM-SHA-1", Data: []byte("n,,n=alice")}},
		{"bad PLAIN", &sn.Auth{Method: "PLAIN", Data: []byte("alice:s3cret")}},
		{"no AUTH", &sn.PingReq{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, Config{RequireAuth: true})
				r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
				synctest.Wait() // the CONNECT is handled: the address is bound
				r.send(nodeA, tc.next)
				r.expect(&sn.Connack{ReturnCode: sn.RejectedNotSupported})
				if n := r.opens(); n != 0 {
					t.Fatalf("%d upstream opens", n)
				}
			})
		})
	}
}

// A node that never sends its AUTH is forgotten after the retransmission
// budget, without an upstream session.
func TestAuthRequiredSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{RequireAuth: true, RetryInterval: time.Second, RetryCount: 2})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if r.sessions() != 0 || r.opens() != 0 {
			t.Fatalf("%d sessions, %d opens", r.sessions(), r.opens())
		}
	})
}

// Without RequireAuth a node's AUTH is refused, never ignored: it must not
// be logged in as someone else than it asked. Its CONNACK may have gone
// out already; then it is disconnected before anything else of it is
// handled.
func TestAuthNotTaken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{Predefined: map[uint16]string{1: "p/one"}})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.send(nodeA, sn.NewAuthPlain("alice", []byte("s3cret")))
		first := r.next().(*sn.Connack)
		if first.ReturnCode == sn.Accepted {
			r.expect(&sn.Disconnect{})
		} else if first.ReturnCode != sn.RejectedNotSupported {
			t.Fatalf("CONNACK %v", first.ReturnCode)
		}
		r.send(nodeA, &sn.Publish{QoS: sn.QoS1, TopicIDType: sn.TopicPredefined, TopicID: 1, MsgID: 1, Data: []byte("x")})
		r.expect(&sn.Disconnect{})
		select {
		case m := <-r.up.published:
			t.Fatalf("published %+v", m)
		default:
		}
	})
}
