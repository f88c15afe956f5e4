package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Discovery (spec §6.1): the gateway sends ADVERTISE at start and every
// AdvertiseInterval to each configured destination (IPv4 broadcast, IPv6
// multicast with a zone such as [ff02::1%wpan0]:1884, or unicast), from its
// own listening socket so that nodes learn its address.

// destination is a resolved ADVERTISE/GWINFO destination.
type destination struct {
	addr *net.UDPAddr
	tr   int // transport it is sent from
}

// resolveDestinations picks, for each destination, the first UDP listener
// of a matching address family.
func (g *Gateway) resolveDestinations() ([]destination, error) {
	var out []destination
	for _, d := range g.cfg.AdvertiseTo {
		ua, err := net.ResolveUDPAddr("udp", d)
		if err != nil {
			return nil, fmt.Errorf("gateway: discovery.advertise_to %q: %w (use host:port, e.g. 255.255.255.255:1884 or [ff02::1%%wpan0]:1884)", d, err)
		}
		tr := -1
		for i, t := range g.transports {
			la, ok := t.LocalAddr().(*net.UDPAddr)
			if !ok {
				continue
			}
			if canReach(la, ua) {
				tr = i
				break
			}
		}
		if tr < 0 {
			return nil, fmt.Errorf("gateway: discovery.advertise_to %q: no UDP listener of that address family: add one to listen.udp (e.g. [::]:1884)", d)
		}
		out = append(out, destination{addr: ua, tr: tr})
	}
	return out, nil
}

// canReach reports whether a socket bound to local can send to dst.
func canReach(local, dst *net.UDPAddr) bool {
	l, _ := netip.AddrFromSlice(local.IP)
	d, _ := netip.AddrFromSlice(dst.IP)
	l, d = l.Unmap(), d.Unmap()
	switch {
	case d.Is4():
		// An IPv4 socket, or a dual-stack one bound to the wildcard.
		return l.Is4() || (l.Is6() && l.IsUnspecified())
	default:
		return l.Is6()
	}
}

// runDiscovery sends ADVERTISE at start and then every interval until ctx
// ends.
func (g *Gateway) runDiscovery(ctx context.Context) {
	if len(g.dests) == 0 || g.cfg.AdvertiseInterval <= 0 {
		return
	}
	adv := &snpacket.Advertise{GatewayID: g.cfg.GatewayID, Duration: advertiseDuration(g.cfg.AdvertiseInterval)}
	t := time.NewTicker(g.cfg.AdvertiseInterval)
	defer t.Stop()
	for {
		g.broadcast(adv)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// broadcast sends p to every configured destination.
func (g *Gateway) broadcast(p snpacket.Packet) {
	b, err := snpacket.Marshal(p)
	if err != nil {
		return
	}
	for _, d := range g.dests {
		if _, err := g.transports[d.tr].WriteTo(b, d.addr); err != nil {
			g.stats.WriteErrors.Add(1)
			g.log.Debug("discovery send failed", zap.Stringer("to", d.addr), zap.Stringer("type", p.Type()), zap.Error(err))
			continue
		}
		g.stats.countOut(p.Type(), len(b))
	}
}

// advertiseDuration is the ADVERTISE Duration field: the interval in whole
// seconds, at most 65535.
func advertiseDuration(d time.Duration) uint16 {
	s := d / time.Second
	if s > 65535 {
		return 65535
	}
	return uint16(s)
}

// onSearchGW answers SEARCHGW with GWINFO to the searcher (spec §6.1). A
// search through a forwarder is answered through it with the search's
// radius in the Ctrl octet, so the forwarder broadcasts it that far; with
// Config.GWInfoBroadcast the answer also goes to the discovery
// destinations.
func (g *Gateway) onSearchGW(from peer, s *snpacket.SearchGW) {
	info := &snpacket.GWInfo{GatewayID: g.cfg.GatewayID}
	g.sendRadius(from, info, s.Radius)
	if g.cfg.GWInfoBroadcast {
		g.broadcast(info)
	}
}
