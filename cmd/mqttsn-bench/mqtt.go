package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// mqttClient connects one MQTT v5 client to the broker. onPublish, if not
// nil, sees every message the broker sends it (from paho's router
// goroutine; the ack follows its return).
func mqttClient(ctx context.Context, broker, id string, receiveMax uint16, onPublish func(*paho.Publish)) (*paho.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, fmt.Errorf("dial broker %s: %w", broker, err)
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: packets.NewThreadSafeConn(conn), PacketTimeout: time.Minute}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { onPublish(pr.Packet); return true, nil },
		}
	}
	cli := paho.NewClient(cfg)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ca, err := cli.Connect(cctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &receiveMax, RequestProblemInfo: true}})
	if err != nil {
		_ = conn.Close()
		if ca != nil {
			return nil, fmt.Errorf("connect to broker %s: reason code 0x%02x: %w", broker, ca.ReasonCode, err)
		}
		return nil, fmt.Errorf("connect to broker %s: %w", broker, err)
	}
	return cli, nil
}

// subscriber is the MQTT client that watches the broker and feeds the
// tracker with every message published under the run's topic prefix.
type subscriber struct {
	cli *paho.Client
	t   *Tracker
}

func newSubscriber(ctx context.Context, cfg *config, t *Tracker, filters []string) (*subscriber, error) {
	s := &subscriber{t: t}
	qos := byte(max(cfg.qos, 0))
	if cfg.subQoS >= 0 {
		qos = byte(cfg.subQoS)
	}
	cli, err := mqttClient(ctx, cfg.broker, cfg.idPrefix+"sub", 65535, func(p *paho.Publish) { t.Deliver(p.Payload) })
	if err != nil {
		return nil, err
	}
	s.cli = cli
	subs := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		subs[i] = paho.SubscribeOptions{Topic: f, QoS: qos}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
		s.close()
		return nil, fmt.Errorf("subscribe %v: %w", filters, err)
	}
	return s, nil
}

func (s *subscriber) close() {
	if s != nil && s.cli != nil {
		_ = s.cli.Disconnect(&paho.Disconnect{})
	}
}

// waitDelivered waits until the tracker saw want unique messages, until
// nothing arrived for quiet, or until deadline, whichever is first.
func waitDelivered(ctx context.Context, t *Tracker, want uint64, quiet time.Duration, deadline time.Time) {
	last, lastChange := t.Unique(), time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for t.Unique() < want && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if u := t.Unique(); u != last {
			last, lastChange = u, time.Now()
		} else if time.Since(lastChange) > quiet {
			return
		}
	}
}
