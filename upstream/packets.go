package upstream

import (
	"bytes"
	"io"

	"github.com/eclipse/paho.golang/paho/store/memory"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
)

// trackedStore is paho's store of client packets (PUBLISH at QoS 1/2 and
// PUBREL, kept until acknowledged), with every QoS 2 packet also told to
// the gateway's PacketStore first, so that the gateway can resend them with
// their packet identifiers after a restart (gateway.SessionOptions.Resume)
// instead of forwarding the node's message a second time.
type trackedStore struct {
	mem *memory.Store
	ps  gateway.PacketStore
}

func newTrackedStore(ps gateway.PacketStore, resume []gateway.StoredPacket) *trackedStore {
	t := &trackedStore{mem: memory.New(), ps: ps}
	for _, p := range resume {
		if len(p.Data) == 0 {
			continue
		}
		_ = t.mem.Put(p.ID, p.Data[0]>>4, bytes.NewBuffer(bytes.Clone(p.Data)))
	}
	return t
}

// Put stores the packet with the gateway before paho writes it: an error
// keeps it from being sent.
func (t *trackedStore) Put(id uint16, typ byte, w io.WriterTo) error {
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return err
	}
	data := b.Bytes()
	if isQoS2Packet(data) {
		if err := t.ps.Put(id, data); err != nil {
			return err
		}
	}
	return t.mem.Put(id, typ, &b)
}

// isQoS2Packet: a QoS 2 PUBLISH or a PUBREL.
func isQoS2Packet(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch p[0] >> 4 {
	case 3:
		return (p[0]>>1)&3 == 2
	case 6:
		return true
	}
	return false
}

func (t *trackedStore) Get(id uint16) (io.ReadCloser, error) { return t.mem.Get(id) }

func (t *trackedStore) Delete(id uint16) error {
	t.ps.Delete(id)
	return t.mem.Delete(id)
}

func (t *trackedStore) Quarantine(id uint16) error { return t.Delete(id) }

func (t *trackedStore) List() ([]uint16, error) { return t.mem.List() }

func (t *trackedStore) Reset() error {
	t.ps.Reset()
	return t.mem.Reset()
}
