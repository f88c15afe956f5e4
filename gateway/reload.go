package gateway

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// predefSet holds the gateway-wide predefined topics. Shards and readers
// read it on every lookup; SetPredefined swaps the whole table at once, so
// a lookup sees the old table or the new one, never a mix, and takes no
// lock.
type predefSet struct {
	p atomic.Pointer[topicreg.Predefined]
}

// Name returns the topic name of a predefined id.
func (s *predefSet) Name(id uint16) (string, bool) {
	p := s.p.Load()
	if p == nil {
		return "", false
	}
	return p.Name(id)
}

// allowSet holds the forwarders allowed (nil list: any), swapped at once
// like predefSet.
type allowSet struct{ a atomic.Pointer[allowList] }

func (s *allowSet) allows(ap netip.AddrPort) bool { return s.a.Load().allows(ap) }

// SetPredefined replaces the gateway-wide predefined topics (config
// predefined_topics), for a configuration reload. Subscriptions already
// made by predefined id keep the name they were made with; every lookup
// from now on uses the new table.
func (g *Gateway) SetPredefined(m map[uint16]string) error {
	p, err := topicreg.NewPredefined(m)
	if err != nil {
		return fmt.Errorf("gateway: predefined_topics: %w", err)
	}
	g.predef.p.Store(p)
	return nil
}

// SetForwarderAllow replaces the forwarders allowed (config
// forwarders.allow; empty: any), for a configuration reload. It applies to
// the next encapsulated datagram.
func (g *Gateway) SetForwarderAllow(list []string) error {
	a, err := parseAllow(list)
	if err != nil {
		return err
	}
	g.allow.a.Store(a)
	return nil
}
