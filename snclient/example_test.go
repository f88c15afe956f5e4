package snclient_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// A node that publishes a reading, listens for commands and leaves a will.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := snclient.DialClient(ctx, "127.0.0.1:1884", snclient.Options{
		ClientID:     "node-7",
		CleanSession: true,
		KeepAlive:    30 * time.Second,
		Will:         &snclient.Will{Topic: "nodes/7/status", Payload: []byte("offline"), QoS: 1, Retain: true},
		Predefined:   map[uint16]string{1: "nodes/all/cmd"}, // as configured on the gateway
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	// Registered on first use; the id is cached for the next publishes.
	if err := c.Publish(ctx, "nodes/7/temp", []byte("21.5"), snpacket.QoS1, false); err != nil {
		log.Fatal(err)
	}
	// "nodes/all/cmd" goes out as predefined id 1, "n7" as a short topic.
	for _, f := range []string{"nodes/all/cmd", "n7", "nodes/7/+"} {
		err := c.Subscribe(ctx, f, snpacket.QoS1, func(m snclient.Message) {
			fmt.Printf("%s: %s\n", m.Topic, m.Payload)
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	// Sleep; the gateway buffers what comes meanwhile until Wake.
	if err := c.Sleep(ctx, 10*time.Minute); err != nil {
		log.Fatal(err)
	}
	n, err := c.Wake(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, "messages while asleep")
	_ = c.Disconnect(ctx)
}

// QoS -1 needs no connection: publish to a short or predefined topic and
// forget (spec §6.8).
func ExampleClient_Publish_qosMinusOne() {
	ctx := context.Background()
	c, err := snclient.DialClient(ctx, "127.0.0.1:1884", snclient.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_ = c.Publish(ctx, "t1", []byte("21.5"), snpacket.QoSMinusOne, false)
	_ = c.Publish(ctx, snclient.PredefinedID(5), []byte("on"), snpacket.QoSMinusOne, false)
}
