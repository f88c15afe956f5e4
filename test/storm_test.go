package test

import (
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// A broker outage (issue 14, item 6): the nodes' upstream sessions come
// back by themselves after the broker restarts, paced by the gateway-wide
// reconnect limiter, and QoS -1 publishes during the outage are dropped
// and counted, with one warning when the link goes down and one info line
// when it is back, not a line per message.
func TestBrokerRestartSessionsReturnQoSMinusOneLogsOnce(t *testing.T) {
	const (
		nodes   = 3
		downMsg = "QoS -1 broker connection down: QoS -1 publishes are dropped and counted until it is back"
		backMsg = "QoS -1 broker connection back"
	)
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		core, logs := observer.New(zapcore.InfoLevel)
		log := zap.New(zapcore.NewTee(testgw.Logger(t).Core(), core))
		g := testgw.StartWith(t, tg, gateway.Config{}, upstream.Config{ReconnectRate: 50}, gateway.WithLogger(log))
		e := &Env{Target: tg, GW: g, Addr: g.Addrs()[0].String()}
		st := g.Stats()

		ns := make([]*Node, nodes)
		ids := make([]uint16, nodes)
		for i := range ns {
			ns[i] = e.Node(t)
			ns[i].Connect("storm-"+strconv.Itoa(i), true, 600)
			ids[i] = ns[i].Register(1, "storm/"+strconv.Itoa(i))
		}
		msgID := uint16(10)
		// publishQoS1 sends one QoS 1 PUBLISH and returns the PUBACK's code.
		publishQoS1 := func(i int) sn.ReturnCode {
			t.Helper()
			msgID++
			ns[i].Send(&sn.Publish{QoS: sn.QoS1, TopicID: ids[i], MsgID: msgID, Data: []byte("m")})
			ack, ok := ns[i].Next().(*sn.Puback)
			if !ok || ack.MsgID != msgID {
				t.Fatalf("node %d: want PUBACK for MsgId %d, got %+v", i, msgID, ack)
			}
			return ack.ReturnCode
		}
		qm1 := func() {
			t.Helper()
			id, _ := sn.ShortTopicID("qa")
			ns[0].Send(&sn.Publish{QoS: sn.QoSMinusOne, TopicIDType: sn.TopicShort, TopicID: id, Data: []byte("x")})
		}
		for i := range ns {
			if rc := publishQoS1(i); rc != sn.Accepted {
				t.Fatalf("node %d before the outage: %v", i, rc)
			}
		}
		qm1()
		Eventually(t, "the QoS -1 publish forwarded", func() bool { return st.QoSMinusOneOut.Load() == 1 })

		tg.Stop(t)
		for i := range ns {
			Eventually(t, "congestion while the broker is down", func() bool { return publishQoS1(i) == sn.RejectedCongestion })
		}
		drop0 := st.QoSMinusOneDrop.Load()
		for range 50 {
			qm1()
		}
		Eventually(t, "50 QoS -1 publishes dropped during the outage", func() bool { return st.QoSMinusOneDrop.Load() >= drop0+50 })

		tg.Start(t)
		// Each node's session comes back by itself: no new CONNECT.
		for i := range ns {
			Eventually(t, "node "+strconv.Itoa(i)+"'s session back", func() bool {
				if publishQoS1(i) == sn.Accepted {
					return true
				}
				ns[i].ExpectNothing(20 * time.Millisecond)
				return false
			})
		}
		out0 := st.QoSMinusOneOut.Load()
		Eventually(t, "QoS -1 forwarded again", func() bool {
			qm1()
			return st.QoSMinusOneOut.Load() > out0
		})

		if n := len(logs.FilterMessage(downMsg).All()); n != 1 {
			t.Errorf("%d %q lines for one outage, want 1", n, downMsg)
		}
		back := logs.FilterMessage(backMsg).All()
		if len(back) != 1 {
			t.Fatalf("%d %q lines, want 1", len(back), backMsg)
		}
		if d, _ := back[0].ContextMap()["dropped"].(int64); d < 50 {
			t.Errorf("the back line says %d dropped, want at least 50: %v", d, back[0].ContextMap())
		}
	})
}
