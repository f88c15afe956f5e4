// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: 2023 mochi-mqtt, mochi-co
// SPDX-FileContributor: mochi-co

package mqtt

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Inflight is a map of InflightMessage keyed on packet id.
type Inflight struct {
	sync.RWMutex
	internal            map[uint16]packets.Packet // internal contains the inflight packets
	receiveQuota        int32                     // remaining inbound qos quota for flow control
	sendQuota           int32                     // remaining outbound qos quota for flow control
	maximumReceiveQuota int32                     // maximum allowed receive quota
	maximumSendQuota    int32                     // maximum allowed send quota

	// held lists, oldest first, the packets stored but not yet sent
	// because the client's receive quota was used up, with the expiry
	// each had (a held packet's Expiry is -1). mqttsn-gateway patch: see
	// Hold and TakeHeld.
	held []heldPacket

	// order numbers the packets in the order they were first stored, for
	// GetAll (mqttsn-gateway patch: mochi sorted by uint16(Created), whole
	// seconds, so packets stored in the same second were resent to a
	// resuming client in random order).
	order map[uint16]uint64
	seq   uint64
}

type heldPacket struct {
	id     uint16
	expiry int64
}

// NewInflights returns a new instance of an Inflight packets map.
func NewInflights() *Inflight {
	return &Inflight{
		internal: map[uint16]packets.Packet{},
		order:    map[uint16]uint64{},
	}
}

// SetOrHold stores m as in flight. If the client's receive quota is free
// and nothing is held before m, it takes one unit of quota and reports
// held false: the caller sends m now. Otherwise m is held (its Expiry is
// -1 while held) and TakeHeld hands it out, in order, once quota is free
// again. The choice and the quota are one step under the lock, so a new
// packet never overtakes held ones. isNew reports whether m's packet id
// was not in flight before. (mqttsn-gateway patch.)
func (i *Inflight) SetOrHold(m packets.Packet) (held, isNew bool) {
	i.Lock()
	defer i.Unlock()
	_, ok := i.internal[m.PacketID]
	i.number(m.PacketID, ok)
	if len(i.held) == 0 && (atomic.LoadInt32(&i.sendQuota) > 0 || atomic.LoadInt32(&i.maximumSendQuota) == 0) {
		i.internal[m.PacketID] = m
		if atomic.LoadInt32(&i.sendQuota) > 0 {
			atomic.AddInt32(&i.sendQuota, -1)
		}
		return false, !ok
	}
	i.held = append(i.held, heldPacket{id: m.PacketID, expiry: m.Expiry})
	m.Expiry = -1
	i.internal[m.PacketID] = m
	return true, !ok
}

// TakeHeld takes one unit of send quota for the oldest held packet and
// returns it, still in flight (so that its acknowledgement returns the
// quota and a reconnect resends it) with its own expiry back. It returns
// false when nothing is held or no quota is free. The check and the
// taking are one step, so two callers never send the same packet.
// (mqttsn-gateway patch: mochi's NextImmediate deleted the packet from
// the in-flight map as it was sent, which leaked the quota for good.)
func (i *Inflight) TakeHeld() (packets.Packet, bool) {
	i.Lock()
	defer i.Unlock()
	for len(i.held) > 0 {
		if atomic.LoadInt32(&i.sendQuota) <= 0 {
			return packets.Packet{}, false
		}
		h := i.held[0]
		i.held = i.held[1:]
		m, ok := i.internal[h.id]
		if !ok || m.Expiry >= 0 {
			continue // completed, dropped or resent meanwhile
		}
		m.Expiry = h.expiry
		i.internal[h.id] = m
		atomic.AddInt32(&i.sendQuota, -1)
		return m, true
	}
	return packets.Packet{}, false
}

// Unhold puts m, just returned by TakeHeld, back at the head of the held
// packets and returns its quota: it could not be queued for writing.
func (i *Inflight) Unhold(m packets.Packet) {
	i.Lock()
	defer i.Unlock()
	if cur, ok := i.internal[m.PacketID]; !ok || cur.Expiry < 0 {
		return
	}
	i.held = append([]heldPacket{{id: m.PacketID, expiry: m.Expiry}}, i.held...)
	m.Expiry = -1
	i.internal[m.PacketID] = m
	atomic.AddInt32(&i.sendQuota, 1)
}

// Set adds or updates an inflight packet by packet id.
func (i *Inflight) Set(m packets.Packet) bool {
	i.Lock()
	defer i.Unlock()

	_, ok := i.internal[m.PacketID]
	i.number(m.PacketID, ok)
	i.internal[m.PacketID] = m
	return !ok
}

// number gives a newly stored packet id its place in GetAll's order; a
// packet replaced under its id (PUBREL for PUBLISH) keeps its place.
func (i *Inflight) number(id uint16, stored bool) {
	if stored {
		return
	}
	if i.order == nil {
		i.order = map[uint16]uint64{}
	}
	i.seq++
	i.order[id] = i.seq
}

// Get returns an inflight packet by packet id.
func (i *Inflight) Get(id uint16) (packets.Packet, bool) {
	i.RLock()
	defer i.RUnlock()

	if m, ok := i.internal[id]; ok {
		return m, true
	}

	return packets.Packet{}, false
}

// Len returns the size of the inflight messages map.
func (i *Inflight) Len() int {
	i.RLock()
	defer i.RUnlock()
	return len(i.internal)
}

// Clone returns a new instance of Inflight with the same message data.
// This is used when transferring inflights from a taken-over session.
func (i *Inflight) Clone() *Inflight {
	c := NewInflights()
	i.RLock()
	defer i.RUnlock()
	for k, v := range i.internal {
		c.internal[k] = v
	}
	for k, v := range i.order {
		c.order[k] = v
	}
	c.seq = i.seq
	c.held = append([]heldPacket(nil), i.held...)
	return c
}

// GetAll returns all the inflight messages.
func (i *Inflight) GetAll(immediate bool) []packets.Packet {
	i.RLock()
	defer i.RUnlock()

	m := []packets.Packet{}
	for _, v := range i.internal {
		if !immediate || (immediate && v.Expiry < 0) {
			m = append(m, v)
		}
	}

	sort.Slice(m, func(a, b int) bool {
		return i.order[m[a].PacketID] < i.order[m[b].PacketID]
	})

	return m
}

// NextImmediate returns the next inflight packet which is indicated to be sent immediately.
// This typically occurs when the quota has been exhausted, and we need to wait until new quota
// is free to continue sending.
func (i *Inflight) NextImmediate() (packets.Packet, bool) {
	// mqttsn-gateway patch: GetAll takes the read lock itself. Taking it
	// here too was a recursive read lock, which deadlocks when a writer
	// (Set, from a concurrent publish to this client) queues in between.
	m := i.GetAll(true)
	if len(m) > 0 {
		return m[0], true
	}

	return packets.Packet{}, false
}

// Delete removes an in-flight message from the map. Returns true if the message existed.
func (i *Inflight) Delete(id uint16) bool {
	i.Lock()
	defer i.Unlock()

	_, ok := i.internal[id]
	delete(i.internal, id)
	delete(i.order, id)

	return ok
}

// TakeRecieveQuota reduces the receive quota by 1.
func (i *Inflight) DecreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) > 0 {
		atomic.AddInt32(&i.receiveQuota, -1)
	}
}

// TakeRecieveQuota increases the receive quota by 1.
func (i *Inflight) IncreaseReceiveQuota() {
	if atomic.LoadInt32(&i.receiveQuota) < atomic.LoadInt32(&i.maximumReceiveQuota) {
		atomic.AddInt32(&i.receiveQuota, 1)
	}
}

// ResetReceiveQuota resets the receive quota to the maximum allowed value.
func (i *Inflight) ResetReceiveQuota(n int32) {
	atomic.StoreInt32(&i.receiveQuota, n)
	atomic.StoreInt32(&i.maximumReceiveQuota, n)
}

// DecreaseSendQuota reduces the send quota by 1.
func (i *Inflight) DecreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) > 0 {
		atomic.AddInt32(&i.sendQuota, -1)
	}
}

// IncreaseSendQuota increases the send quota by 1.
func (i *Inflight) IncreaseSendQuota() {
	if atomic.LoadInt32(&i.sendQuota) < atomic.LoadInt32(&i.maximumSendQuota) {
		atomic.AddInt32(&i.sendQuota, 1)
	}
}

// ResetSendQuota resets the send quota to the maximum allowed value.
func (i *Inflight) ResetSendQuota(n int32) {
	atomic.StoreInt32(&i.sendQuota, n)
	atomic.StoreInt32(&i.maximumSendQuota, n)
}
