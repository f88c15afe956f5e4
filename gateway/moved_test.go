package gateway

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// When the broker hands the node's session to another connection (the node
// moved to another gateway), the gateway forgets its upstream session
// without a will and without reconnecting, and answers the node's next
// datagram with DISCONNECT, so that it connects again.
func TestMovedNodeIsDisconnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.connectWithWill("mover", 60, "will/mover", "gone")
		fs := r.up.session("mover")
		if fs == nil || fs.opts.Ended == nil {
			t.Fatal("no Ended callback in SessionOptions")
		}
		fs.opts.Ended(fmt.Errorf("upstream: %w", ErrTakenOver))
		synctest.Wait()
		if got := r.g.stats.Closes[CloseMoved].Load(); got != 1 {
			t.Fatalf("moved closes %d, want 1", got)
		}
		r.send(nodeA, &sn.PingReq{})
		r.expect(&sn.Disconnect{})
		// Its keep-alive passes: it was not lost here, so no will.
		time.Sleep(2 * time.Minute)
		select {
		case m := <-r.up.published:
			t.Fatalf("published %+v after the node moved", m)
		default:
		}
		select {
		case <-fs.done:
			t.Fatal("the ended session was closed again") // it ended by itself
		default:
		}
		// It may come back: a new upstream session is opened.
		r.send(nodeA, &sn.Connect{CleanSession: false, Duration: 60, ClientID: "mover"})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		if r.up.session("mover") == fs {
			t.Fatal("the ended session was reused")
		}
	})
}

// A late Ended from a session the gateway already replaced changes nothing.
func TestStaleEndedIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, Config{})
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"})
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		old := r.up.session("n1")
		r.send(nodeA, &sn.Connect{CleanSession: true, Duration: 60, ClientID: "n1"}) // clean: a new upstream session
		r.expect(&sn.Connack{ReturnCode: sn.Accepted})
		if r.up.session("n1") == old {
			t.Fatal("no new session")
		}
		old.opts.Ended(ErrTakenOver)
		synctest.Wait()
		r.send(nodeA, &sn.PingReq{})
		r.expect(&sn.PingResp{})
	})
}
