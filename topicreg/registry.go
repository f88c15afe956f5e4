package topicreg

import (
	"strings"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// DefaultMax is the per-client topic limit used when New is given max <= 0.
const DefaultMax = 1000

// maxIDs is the number of assignable normal ids: 0x0001 to 0xFFFE.
const maxIDs = 0xFFFE

type entry struct {
	name  string
	acked bool // the node knows this id (it registered it, or REGACKed ours)
}

// Registry is one client's table of normal topic ids (§6.5, §6.10, §7.3).
// It is not safe for concurrent use: its owner is the client's session.
//
// Ids are handed out by a cursor that advances from 0x0001 to 0xFFFE and
// wraps, skipping ids in use, so a removed id is not reused until the cursor
// comes round again: a stale id from the node is then unknown (PUBACK 0x02)
// rather than silently naming a different topic. Reset keeps the cursor for
// the same reason.
//
// The zero Registry is not usable; call New. An empty Registry holds no maps.
type Registry struct {
	byID   map[uint16]entry
	byName map[string]uint16
	max    uint16 // most entries held
	last   uint16 // last id handed out; 0 before the first
	bytes  int    // sum of the names' lengths
}

// New returns an empty registry holding at most maxTopics topics
// (maxTopics <= 0 means DefaultMax; values above 65534, the number of usable
// ids, are capped).
func New(maxTopics int) *Registry {
	if maxTopics <= 0 {
		maxTopics = DefaultMax
	}
	return &Registry{max: uint16(min(maxTopics, maxIDs))}
}

// Register handles a client's REGISTER, or a SUBSCRIBE by full topic name:
// it returns the id of name, assigning a new one if needed, and marks it as
// known to the node. The same name always gets the same id while registered.
//
// Errors are snpacket.ReturnCode values for the REGACK/SUBACK:
// RejectedNotSupported for an empty name, a name with wildcards, or a name
// that is not a valid MQTT topic name (invalid UTF-8, U+0000);
// RejectedCongestion when the registry is full.
func (r *Registry) Register(name string) (uint16, error) {
	id, _, err := r.lookupOrAdd(name, true)
	return id, err
}

// Assign returns the id the gateway must use to send name to the node (a
// publication for a wildcard subscription, §6.10). If name is registered it
// returns its id and whether the node already knows it; otherwise it
// assigns a new id with acked false, and the caller must REGISTER it to the
// node and call Ack on REGACK (or Remove on rejection) before publishing.
// Errors are as for Register.
func (r *Registry) Assign(name string) (id uint16, acked bool, err error) {
	return r.lookupOrAdd(name, false)
}

func (r *Registry) lookupOrAdd(name string, acked bool) (uint16, bool, error) {
	if id, ok := r.byName[name]; ok {
		e := r.byID[id]
		if acked && !e.acked {
			e.acked = true
			r.byID[id] = e
		}
		return id, e.acked, nil
	}
	if !validName(name) {
		return 0, false, snpacket.RejectedNotSupported
	}
	if len(r.byID) >= int(r.max) {
		return 0, false, snpacket.RejectedCongestion
	}
	if r.byID == nil {
		r.byID = make(map[uint16]entry)
		r.byName = make(map[string]uint16)
	}
	id := r.nextFree()
	name = strings.Clone(name) // don't pin a larger decode buffer
	r.byID[id] = entry{name: name, acked: acked}
	r.byName[name] = id
	r.bytes += len(name)
	return id, acked, nil
}

// nextFree advances the cursor to the next id not in use. The caller
// guarantees one exists (len < max <= maxIDs).
func (r *Registry) nextFree() uint16 {
	for {
		r.last++
		if r.last == reservedMax || r.last == reservedZero {
			r.last = 1
		}
		if _, used := r.byID[r.last]; !used {
			return r.last
		}
	}
}

// Ack records that the node accepted the gateway's REGISTER of id (REGACK
// with return code 0x00). Unknown ids are ignored.
func (r *Registry) Ack(id uint16) {
	if e, ok := r.byID[id]; ok && !e.acked {
		e.acked = true
		r.byID[id] = e
	}
}

// Unack records that the node no longer knows id (it answered a PUBLISH
// with "invalid topic id"): the id keeps its name, and the gateway must
// REGISTER it again before publishing with it. Unknown ids are ignored.
func (r *Registry) Unack(id uint16) {
	if e, ok := r.byID[id]; ok && e.acked {
		e.acked = false
		r.byID[id] = e
	}
}

// UnackAll is Unack for every id: after a CONNECT with CleanSession=0 the
// node may be a new process that knows none of them (spec §6.10 lets the
// gateway REGISTER them again). A node publishing with an id it still
// knows is unaffected: Name still resolves it.
func (r *Registry) UnackAll() {
	for id, e := range r.byID {
		if e.acked {
			e.acked = false
			r.byID[id] = e
		}
	}
}

// Name returns the topic name registered under id.
func (r *Registry) Name(id uint16) (string, bool) {
	e, ok := r.byID[id]
	return e.name, ok
}

// ID returns the id registered for name.
func (r *Registry) ID(name string) (uint16, bool) {
	id, ok := r.byName[name]
	return id, ok
}

// Acked reports whether id is registered and known to the node.
func (r *Registry) Acked(id uint16) bool {
	return r.byID[id].acked
}

// Remove forgets id, e.g. when the node rejected the gateway's REGISTER.
// Unknown ids are ignored.
func (r *Registry) Remove(id uint16) {
	e, ok := r.byID[id]
	if !ok {
		return
	}
	delete(r.byID, id)
	delete(r.byName, e.name)
	r.bytes -= len(e.name)
	if len(r.byID) == 0 {
		r.byID, r.byName = nil, nil // maps never shrink; release them
	}
}

// Reset forgets every topic (clean session). The id cursor is kept, so ids
// of the previous session are not reused soon.
func (r *Registry) Reset() {
	r.byID, r.byName = nil, nil
	r.bytes = 0
}

// Len returns the number of registered topics.
func (r *Registry) Len() int { return len(r.byID) }

// Bytes returns the sum of the registered names' lengths, for per-node
// memory limits.
func (r *Registry) Bytes() int { return r.bytes }

// Topics returns a copy of the id to name table, for status and inspection.
func (r *Registry) Topics() map[uint16]string {
	out := make(map[uint16]string, len(r.byID))
	for id, e := range r.byID {
		out[id] = e.name
	}
	return out
}

// Entry is one registered topic, for persistence.
type Entry struct {
	ID    uint16
	Name  string
	Acked bool // the node knows the id
}

// Entries returns every registered topic, in no particular order.
func (r *Registry) Entries() []Entry {
	out := make([]Entry, 0, len(r.byID))
	for id, e := range r.byID {
		out = append(out, Entry{ID: id, Name: e.name, Acked: e.acked})
	}
	return out
}

// Restore puts back topics saved with Entries (a gateway restart). Ids 0
// and 0xFFFF and duplicate names are skipped; the id cursor moves past the
// highest id restored.
func (r *Registry) Restore(entries []Entry) {
	for _, e := range entries {
		if e.ID == 0 || e.ID == 0xFFFF || e.Name == "" {
			continue
		}
		if _, dup := r.byName[e.Name]; dup {
			continue
		}
		if _, used := r.byID[e.ID]; used || len(r.byID) >= int(r.max) {
			continue
		}
		if r.byID == nil {
			r.byID, r.byName = map[uint16]entry{}, map[string]uint16{}
		}
		r.byID[e.ID] = entry{name: e.Name, acked: e.Acked}
		r.byName[e.Name] = e.ID
		if e.ID > r.last {
			r.last = e.ID
		}
	}
}
