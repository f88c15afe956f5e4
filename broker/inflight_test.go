package broker

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mochi's Inflight.NextImmediate took a recursive read lock, which
// deadlocks as soon as a writer queues between the two (see
// third_party/mochi-server/PATCHED.md). Readers and a writer hammering one
// Inflight must finish.
func TestInflightNoRecursiveReadLock(t *testing.T) {
	in := mqtt.NewInflights()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			in.Set(packets.Packet{PacketID: uint16(i%100 + 1), Expiry: -1})
		}
	}()
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for {
			select {
			case <-done:
				return
			default:
				in.NextImmediate()
			}
		}
	}()
	select {
	case <-readers:
	case <-time.After(time.Minute):
		t.Fatal("Inflight deadlocked: NextImmediate against Set")
	}
}

// mochi's Clients.GetByListener took the read lock and called Len, which
// takes it again (mochi-mqtt/server#488): the same deadlock, on every
// listener close. It must finish while clients are added concurrently.
func TestClientsGetByListenerNoRecursiveReadLock(t *testing.T) {
	cls := mqtt.NewClients()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			cls.Add(&mqtt.Client{ID: fmt.Sprint(i % 100)})
		}
	}()
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for {
			select {
			case <-done:
				return
			default:
				cls.GetByListener("t1")
			}
		}
	}()
	select {
	case <-readers:
	case <-time.After(time.Minute):
		t.Fatal("Clients deadlocked: GetByListener against Add")
	}
}
