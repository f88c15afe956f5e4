// Package topicreg maps MQTT-SN topic ids to MQTT topic names (MQTT-SN v1.2
// §3, §6.5, §6.7–6.10, §7.3).
//
// Predefined holds the gateway-wide pre-defined topic ids, fixed at
// construction and safe for concurrent readers. Registry holds one client's
// normal topic ids: §7.3 strongly recommends a table per client, so a stale
// or wrong id from one client can never name another client's topic. A
// Registry has a single owner and is not safe for concurrent use. Both are
// pure state: no goroutines, no I/O, no logging.
//
// The package also provides MQTT topic filter matching (Match, HasWildcard,
// ValidFilter) used to route broker publications to wildcard subscribers.
package topicreg

import (
	"fmt"
	"slices"
)

// Reserved topic id values (§5.3.11): 0x0000 and 0xFFFF are never assigned.
const (
	reservedZero uint16 = 0x0000
	reservedMax  uint16 = 0xFFFF
)

// Predefined is the gateway-wide table of pre-defined topic ids (§6.7). It is
// read-only after NewPredefined, so any number of goroutines may read it.
// A nil *Predefined is an empty table.
type Predefined struct {
	byID   map[uint16]string
	byName map[string]uint16
}

// NewPredefined validates m and returns a table holding a copy of it. The
// error names the offending id and the problem: a reserved id (0x0000 or
// 0xFFFF), an empty name, a name with a wildcard ('+' or '#') or otherwise
// unusable as an MQTT topic name (invalid UTF-8, U+0000), or a name used by
// two ids. Ids are checked in ascending order, so the error is deterministic.
func NewPredefined(m map[uint16]string) (*Predefined, error) {
	p := &Predefined{
		byID:   make(map[uint16]string, len(m)),
		byName: make(map[string]uint16, len(m)),
	}
	ids := make([]uint16, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		name := m[id]
		switch {
		case id == reservedZero || id == reservedMax:
			return nil, fmt.Errorf("topicreg: predefined topic id 0x%04X (%q): id is reserved", id, name)
		case name == "":
			return nil, fmt.Errorf("topicreg: predefined topic id 0x%04X: empty topic name", id)
		case HasWildcard(name):
			return nil, fmt.Errorf("topicreg: predefined topic id 0x%04X: topic name %q contains a wildcard", id, name)
		case !validName(name):
			return nil, fmt.Errorf("topicreg: predefined topic id 0x%04X: topic name %q is not a valid MQTT topic name", id, name)
		}
		if other, dup := p.byName[name]; dup {
			return nil, fmt.Errorf("topicreg: predefined topic id 0x%04X: topic name %q already used by id 0x%04X", id, name, other)
		}
		p.byID[id] = name
		p.byName[name] = id
	}
	return p, nil
}

// Name returns the topic name of pre-defined id.
func (p *Predefined) Name(id uint16) (string, bool) {
	if p == nil {
		return "", false
	}
	name, ok := p.byID[id]
	return name, ok
}

// ID returns the pre-defined id of topic name.
func (p *Predefined) ID(name string) (uint16, bool) {
	if p == nil {
		return 0, false
	}
	id, ok := p.byName[name]
	return id, ok
}

// Len returns the number of pre-defined topics.
func (p *Predefined) Len() int {
	if p == nil {
		return 0
	}
	return len(p.byID)
}

// Topics returns a copy of the table, for status and inspection.
func (p *Predefined) Topics() map[uint16]string {
	out := make(map[uint16]string, p.Len())
	if p != nil {
		for id, name := range p.byID {
			out[id] = name
		}
	}
	return out
}
