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

// A resuming client gets its in-flight messages in the order they were
// stored, also when they were stored in the same second (mochi sorted by
// uint16(Created), whole seconds: same-second messages came back in random
// order), and a PUBREL stored over its PUBLISH keeps the PUBLISH's place.
func TestInflightGetAllKeepsOrder(t *testing.T) {
	in := mqtt.NewInflights()
	now := time.Now().Unix()
	ids := []uint16{50, 3, 999, 7, 1000, 2, 65535, 1}
	for _, id := range ids {
		in.Set(packets.Packet{PacketID: id, Created: now})
	}
	in.Set(packets.Packet{PacketID: 999, Created: now + 1}) // PUBREL replaces the PUBLISH
	in.Delete(7)
	in.Set(packets.Packet{PacketID: 7, Created: now}) // stored again: now the newest
	var got []uint16
	for _, p := range in.Clone().GetAll(false) {
		got = append(got, p.PacketID)
	}
	want := []uint16{50, 3, 999, 1000, 2, 65535, 1, 7}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GetAll order %v, want %v", got, want)
	}
}
