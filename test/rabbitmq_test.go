package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// RabbitMQ 3.10 (MQTT 3.1.1 only, QoS 2 taken as QoS 1) behind a gateway
// left at broker.protocol_version auto: nodes connect (auto falls back to
// 3.1.1), QoS 0 and 1 go both ways, a node's QoS 2 PUBLISH is still
// exactly-once with the node and reaches RabbitMQ at QoS 1 (with
// broker.max_qos 1, and also with 2, where RabbitMQ's PUBACK completes
// it), retained messages and wills work. Runs when MQTTSN_TEST_RABBITMQ is
// set (.ci/run sets it).
func TestRabbitMQ(t *testing.T) {
	base := testbroker.RabbitMQ(t)
	for _, maxQoS := range []byte{1, 2} {
		t.Run(fmt.Sprintf("max_qos_%d", maxQoS), func(t *testing.T) {
			t.Parallel()
			tg := base
			tg.MaxQoS = &maxQoS
			// RabbitMQ outlives the test run: names unique to this run.
			pre := fmt.Sprintf("rmq%d-%d", time.Now().UnixNano()%1e9, maxQoS)
			e := RunGateway(t, tg, gateway.Config{})
			w := e.Watch(t, pre+"/#")
			n := e.Node(t)
			n.Connect(pre+"-up", true, 60)
			id := n.Register(1, pre+"/up")

			n.Send(&sn.Publish{QoS: sn.QoS0, TopicID: id, Data: []byte("q0")})
			if got := w.Next(); got != (Received{Topic: pre + "/up", Payload: "q0", QoS: 0}) {
				t.Fatalf("broker got %+v", got)
			}
			n.Send(&sn.Publish{QoS: sn.QoS1, TopicID: id, MsgID: 2, Data: []byte("q1")})
			n.Expect(&sn.Puback{TopicID: id, MsgID: 2, ReturnCode: sn.Accepted})
			if got := w.Next(); got != (Received{Topic: pre + "/up", Payload: "q1", QoS: 1}) {
				t.Fatalf("broker got %+v", got)
			}
			n.Send(&sn.Publish{QoS: sn.QoS2, TopicID: id, MsgID: 3, Data: []byte("q2")})
			n.Expect(&sn.Pubrec{MsgID: 3})
			n.Send(&sn.Publish{DUP: true, QoS: sn.QoS2, TopicID: id, MsgID: 3, Data: []byte("q2")})
			n.Expect(&sn.Pubrec{MsgID: 3})
			n.Send(&sn.Pubrel{MsgID: 3})
			n.Expect(&sn.Pubcomp{MsgID: 3})
			if got := w.Next(); got != (Received{Topic: pre + "/up", Payload: "q2", QoS: 1}) {
				t.Fatalf("broker got %+v", got)
			}

			// Downlink: a QoS 2 subscription is granted QoS 1.
			sa := n.Subscribe(4, pre+"/down", sn.QoS2)
			if sa.QoS != sn.QoS1 {
				t.Fatalf("SUBACK %+v, want QoS 1 granted", sa)
			}
			for _, q := range []byte{0, 1, 2} {
				e.Publish(t, pre+"/down", fmt.Sprint("d", q), q, false)
				p := n.Next().(*sn.Publish)
				if want := sn.QoS(min(q, 1)); p.QoS != want || string(p.Data) != fmt.Sprint("d", q) || p.TopicID != sa.TopicID {
					t.Fatalf("PUBLISH %+v, want QoS %d", p, want)
				}
				if p.QoS == sn.QoS1 {
					n.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID, ReturnCode: sn.Accepted})
				}
			}

			// Retained.
			e.Publish(t, pre+"/ret", "kept", 1, true)
			r := e.Node(t)
			r.Connect(pre+"-ret", true, 60)
			rsa := r.Subscribe(1, pre+"/ret", sn.QoS1)
			p := r.Next().(*sn.Publish)
			if !p.Retain || string(p.Data) != "kept" || p.TopicID != rsa.TopicID {
				t.Fatalf("PUBLISH %+v", p)
			}
			r.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID})
			e.Publish(t, pre+"/ret", "", 1, true)

			// Will, published when the node is lost (keep-alive 1 s).
			drain(w)
			wn := e.Node(t)
			wn.Send(&sn.Connect{Will: true, CleanSession: true, Duration: 1, ClientID: pre + "-will"})
			wn.Expect(&sn.WillTopicReq{})
			wn.Send(&sn.WillTopic{QoS: sn.QoS2, WillTopic: pre + "/will"})
			wn.Expect(&sn.WillMsgReq{})
			wn.Send(&sn.WillMsg{WillMsg: []byte("bye")})
			wn.Expect(&sn.Connack{ReturnCode: sn.Accepted})
			for {
				got := w.Next()
				if got.Topic == pre+"/will" {
					if got.Payload != "bye" || got.QoS != 1 {
						t.Fatalf("will %+v", got)
					}
					break
				}
			}
		})
	}
}

// drain discards what the watcher has received so far.
func drain(w *Watcher) {
	for {
		select {
		case <-w.C:
		default:
			return
		}
	}
}
