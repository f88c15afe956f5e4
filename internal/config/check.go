package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// permissionHint says how to fix a file the gateway may not read.
func permissionHint(err error) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	return " (make it readable by the user the gateway runs as; with deploy/mqttsn-gateway.service: chgrp mqttsn-gateway FILE && chmod 0640 FILE)"
}

// checkBrokerURL catches the URL mistakes whose messages from net/url read
// like Go internals: a host:port without a scheme.
func checkBrokerURL(u string) error {
	if u == "" || strings.Contains(u, "://") {
		return nil
	}
	return fmt.Errorf("broker.url (--broker): %q has no scheme: use mqtt://%s (or mqtts://%s for TLS)", u, u, u)
}

// CheckStart checks what a start would find beyond the file's syntax:
// it opens and parses every file the configuration names (DTLS PSK file,
// certificates, keys and CAs; the broker's TLS files are read by Check),
// resolves every listen address, and reports listeners that would collide.
// It binds nothing, so it can run beside a running gateway. Every problem
// found is returned, joined.
func (c *File) CheckStart() error {
	var errs []error
	if len(c.Listen.DTLS) > 0 {
		// One set of files serves every DTLS listener: check it once.
		if err := c.DTLSConfigs()[0].CheckFiles(); err != nil {
			errs = append(errs, fmt.Errorf("%w%s", err, permissionHint(err)))
		}
	}
	errs = append(errs, c.checkListeners()...)
	if err := c.checkStorePath(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkStorePath checks that store.path's folder exists and that the path
// is not a folder. It does not open the file: a running gateway holds its
// lock.
func (c *File) checkStorePath() error {
	p := c.Store.Path
	if p == "" {
		return nil
	}
	dir := filepath.Dir(p)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("store.path %q: folder %q does not exist: create it (the systemd unit's StateDirectory= does) or point store.path into a writable folder", p, dir)
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("store.path %q is a folder: give the path of a file in it, e.g. %q", p, filepath.Join(p, "state.db"))
	}
	return nil
}

// listener is one socket the gateway would bind.
type listener struct {
	key  string // configuration key: listen.udp, listen.dtls, admin.listen, ...
	addr string // as written
	net  string // "udp" or "tcp": sockets of different protocols never collide
	ips  []netip.Addr
	port int
}

// checkListeners resolves every listen address and reports pairs that
// cannot both be bound. Go opens a wildcard address (0.0.0.0 or [::]) as
// one dual-stack socket on Linux, which takes the port for IPv4 and IPv6
// alike: 0.0.0.0:1884 and [::]:1884 collide ("address already in use"), and
// so does a wildcard with any specific address on the same port. Two
// specific addresses collide only when equal. Port 0 (any free port) never
// collides.
func (c *File) checkListeners() []error {
	var ls []listener
	var errs []error
	add := func(key, network, addr string) {
		l, err := resolveListener(key, network, addr)
		if err != nil {
			errs = append(errs, err)
			return
		}
		ls = append(ls, l)
	}
	for _, a := range c.Listen.UDP {
		add("listen.udp", "udp", a)
	}
	for _, a := range c.Listen.DTLS {
		add("listen.dtls", "udp", a)
	}
	if c.Admin.Listen != "" {
		add("admin.listen", "tcp", c.Admin.Listen)
	}
	if addr, explicit := c.EmbeddedListen(); c.Broker.URL == "" && explicit {
		// The default moves to a free port when taken: only a given
		// address can collide.
		add("embedded_broker.listen", "tcp", addr)
	}
	for i := range ls {
		for j := i + 1; j < len(ls); j++ {
			if a, b := ls[i], ls[j]; collide(a, b) {
				errs = append(errs, fmt.Errorf("%s %q and %s %q overlap: both take %s port %d%s",
					a.key, a.addr, b.key, b.addr, strings.ToUpper(a.net), a.port, overlapFix(a, b)))
			}
		}
	}
	return errs
}

func resolveListener(key, network, addr string) (listener, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return listener{}, fmt.Errorf("%s: %q is not host:port (e.g. 0.0.0.0:1884 or [::]:1884): %w", key, addr, err)
	}
	port, err := net.LookupPort(network, portStr)
	if err != nil {
		return listener{}, fmt.Errorf("%s: %q: port %q: %w", key, addr, portStr, err)
	}
	l := listener{key: key, addr: addr, net: network, port: port}
	if host == "" {
		l.ips = []netip.Addr{netip.IPv6Unspecified()}
		return l, nil
	}
	if ip, err := netip.ParseAddr(strings.Split(host, "%")[0]); err == nil {
		l.ips = []netip.Addr{ip.Unmap()}
		return l, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return listener{}, fmt.Errorf("%s: %q: host %q does not resolve: %w", key, addr, host, err)
	}
	if len(ips) == 0 {
		return listener{}, fmt.Errorf("%s: %q: host %q has no address", key, addr, host)
	}
	// Like net.Listen, the gateway binds the first address (IPv4 first).
	ip, _ := netip.AddrFromSlice(ips[0])
	for _, cand := range ips {
		if v4 := cand.To4(); v4 != nil {
			ip, _ = netip.AddrFromSlice(v4)
			break
		}
	}
	l.ips = []netip.Addr{ip.Unmap()}
	return l, nil
}

func collide(a, b listener) bool {
	if a.net != b.net || a.port != b.port || a.port == 0 {
		return false
	}
	for _, x := range a.ips {
		for _, y := range b.ips {
			if x.IsUnspecified() || y.IsUnspecified() || x == y {
				return true
			}
		}
	}
	return false
}

func overlapFix(a, b listener) string {
	wild := func(l listener) bool { return len(l.ips) == 1 && l.ips[0].IsUnspecified() }
	switch {
	case wild(a) && wild(b):
		return ": a wildcard address is one dual-stack socket for IPv4 and IPv6 on Linux; list only \"[::]:" + fmt.Sprint(a.port) + "\""
	case wild(a) || wild(b):
		return ": the wildcard address already covers every address on that port; list either the wildcard or specific addresses"
	default:
		return ": list each address once, or give one of them another port"
	}
}
