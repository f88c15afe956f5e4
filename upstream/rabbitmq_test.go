package upstream

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
)

// RabbitMQ 3.10 speaks MQTT 3.1.1 only and drops an MQTT 5 CONNECT
// without CONNACK: auto falls back to 3.1.1. It takes QoS 2 as QoS 1
// (PUBACK for a QoS 2 PUBLISH, QoS 1 granted for QoS 2 subscriptions),
// which is no failure, with or without broker.max_qos: 1.
func TestRabbitMQ(t *testing.T) {
	checkLeaks(t)
	tg := testbroker.RabbitMQ(t)
	for _, maxQoS := range []byte{2, 1} {
		t.Run(string('0'+maxQoS), func(t *testing.T) {
			u, err := New(Config{URL: tg.URL, ClientIDPrefix: "test-", MaxQoS: &maxQoS,
				ConnectTimeout: 5 * time.Second, AckTimeout: 5 * time.Second,
				ReconnectBackoffMin: 20 * time.Millisecond, ReconnectBackoffMax: 200 * time.Millisecond,
			}, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
			if err != nil {
				t.Fatal(err)
			}
			in := make(inbox, 16)
			s := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("sub"), CleanStart: true}, in.deliver)
			if v := u.ProtocolVersion(); v != Protocol311 {
				t.Fatalf("auto negotiated %q, want 3.1.1", v)
			}
			p := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("pub"), CleanStart: true}, nil)
			if g := sub(t, s, topicOf(t, "#"), 2); g != 1 {
				t.Fatalf("granted QoS %d for QoS 2, want RabbitMQ's 1", g)
			}
			for _, qos := range []byte{0, 1, 2} {
				topic := topicOf(t, "q", string('0'+qos))
				pub(t, p, topic, "payload", qos, false)
				in.expect(t, topic, "payload", min(qos, 1))
			}

			// Retained.
			topic := topicOf(t, "retained")
			pub(t, p, topic, "kept", 1, true)
			in.expect(t, topic, "kept", 1)
			in2 := make(inbox, 4)
			late := open311(t, u, gateway.SessionOptions{ClientID: uniqueID("late"), CleanStart: true}, in2.deliver)
			sub(t, late, topic, 1)
			if m := in2.expect(t, topic, "kept", 1); !m.Retain {
				t.Fatal("retained message delivered without Retain")
			}
			pub(t, p, topic, "", 1, true)

			// Will: published when the connection drops, not after Close.
			willTopic := topicOf(t, "will")
			opts := gateway.SessionOptions{ClientID: uniqueID("w"), CleanStart: true,
				Will: &gateway.Message{Topic: willTopic, Payload: []byte("gone"), QoS: 2}}
			w := open311(t, u, opts, nil)
			drop311(t, w)
			in.expect(t, willTopic, "gone", 1)
			opts.ClientID = uniqueID("w2")
			w2 := open311(t, u, opts, nil)
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			if err := w2.Close(ctx); err != nil {
				t.Fatal(err)
			}
			pub(t, p, topicOf(t, "marker"), "m", 1, false)
			in.expectOnly(t, topicOf(t, "marker"), "m")
		})
	}
}
