package broker_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/goleak"

	"github.com/mqttsn-gateway/mqttsn-gateway/broker"
)

// A subscriber whose Receive Maximum is smaller than the burst published to
// it gets every QoS 1 and QoS 2 message, in order. mochi 2.7.9 held the
// excess back and, once it released one, forgot it was in flight: its
// PUBACK then returned no quota, so delivery stopped for good after
// ReceiveMaximum releases (1,057 of 9,000 in a fan-out with the gateway's
// broker.receive_maximum: 16), and a QoS 2 one's PUBREL failed with 0x92.
func TestSmallReceiveMaximumLosesNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	b, err := broker.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	for _, tc := range []struct {
		qos    byte
		recv   uint16
		number int
	}{{1, 1, 300}, {1, 16, 3000}, {2, 4, 1000}} {
		t.Run(fmt.Sprintf("qos%d-recvmax%d", tc.qos, tc.recv), func(t *testing.T) {
			got := make(chan string, tc.number)
			cli := connectSubscriber(t, b.Addr(), fmt.Sprintf("sub-%d-%d", tc.qos, tc.recv), tc.recv, func(p *paho.Publish) {
				got <- string(p.Payload)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			topic := fmt.Sprintf("quota/%d/%d", tc.qos, tc.recv)
			if _, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: tc.qos}}}); err != nil {
				t.Fatal(err)
			}
			go func() {
				for i := range tc.number {
					if err := b.Publish(topic, fmt.Appendf(nil, "%d", i), false, tc.qos); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			for i := range tc.number {
				select {
				case m := <-got:
					if want := fmt.Sprint(i); m != want {
						t.Fatalf("message %d: got %q (out of order)", i, m)
					}
				case <-ctx.Done():
					t.Fatalf("received %d of %d messages", i, tc.number)
				}
			}
			_ = cli.Disconnect(&paho.Disconnect{})
		})
	}
}

func connectSubscriber(t *testing.T, addr, id string, recvMax uint16, fn func(*paho.Publish)) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cli := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			fn(pr.Packet)
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := cli.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &recvMax, RequestProblemInfo: true}})
	if err != nil {
		t.Fatalf("connect: %v (%+v)", err, ca)
	}
	t.Cleanup(func() { _ = cli.Disconnect(&paho.Disconnect{}); <-cli.Done() })
	return cli
}
