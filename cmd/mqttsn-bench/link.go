package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// link is how a simulated node reaches the gateway: its own UDP socket
// (the gateway tells nodes apart by address), or a shared socket of a
// simulated forwarder (spec §5.5), where the gateway tells them apart by
// Wireless Node Id. A link is used by one goroutine at a time.
type link interface {
	// send writes one MQTT-SN message (encapsulating it behind a forwarder).
	send(b []byte) error
	// read waits until deadline for one message to the node; it returns
	// os.ErrDeadlineExceeded on timeout. The bytes are valid until the
	// next read.
	read(deadline time.Time) ([]byte, error)
	close()
}

// socketLink is a node with a socket of its own.
type socketLink struct {
	c    *net.UDPConn
	rbuf []byte
}

func (l *socketLink) send(b []byte) error {
	_, err := l.c.Write(b)
	return err
}

func (l *socketLink) read(deadline time.Time) ([]byte, error) {
	if err := l.c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	k, err := l.c.Read(l.rbuf)
	if err != nil {
		return nil, err
	}
	return l.rbuf[:k], nil
}

func (l *socketLink) close() { _ = l.c.Close() }

// nodeIDLen is the Wireless Node Id length the simulated forwarders use:
// 2 octets, like an 802.15.4 short address (the node's index within its
// forwarder).
const nodeIDLen = 2

// encapHeaderLen is Le + MsgType + Ctrl + NodeId.
const encapHeaderLen = 3 + nodeIDLen

// fwdInbox is how many messages to one node a forwarder queues while the
// node is not reading; more are dropped and counted, as a real forwarder
// with a full radio queue would.
const fwdInbox = 32

// forwarder is one simulated forwarder: one UDP socket for up to
// nodesPerSocket nodes, and a reader goroutine that unwraps the
// gateway's encapsulated messages and hands each to its node.
type forwarder struct {
	set   *linkSet
	num   int // index in set.fwds
	c     *net.UDPConn
	nodes []atomic.Pointer[fwdLink]
	open  int // links not yet closed (guarded by set.mu); the last one closes c
	done  chan struct{}
}

// fwdLink is one node behind a forwarder.
type fwdLink struct {
	f      *forwarder
	in     chan []byte
	wbuf   []byte // encapsulation header, then the message
	timer  *time.Timer
	closed bool
}

func newForwarder(set *linkSet, num int, raddr *net.UDPAddr) (*forwarder, error) {
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	// The answers to k nodes share this socket's buffer (1,000 CONNACKs
	// or wake-up flushes at once): ask for more than the default.
	_ = c.SetReadBuffer(1 << 20)
	f := &forwarder{set: set, num: num, c: c, nodes: make([]atomic.Pointer[fwdLink], set.k), done: make(chan struct{})}
	go f.readLoop()
	return f, nil
}

// readLoop unwraps datagrams until the socket is closed. It never blocks
// on a node: a full inbox drops the message.
func (f *forwarder) readLoop() {
	defer close(f.done)
	buf := make([]byte, f.set.bufSize+encapHeaderLen) // what a node's own socket reads, plus the header
	for {
		k, err := f.c.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // ICMP port unreachable on a connected socket: the gateway's answer to one datagram
		}
		b := buf[:k]
		if k < encapHeaderLen+2 || b[1] != byte(sn.TypeEncapsulated) || int(b[0]) != encapHeaderLen {
			f.set.stray.Add(1)
			continue
		}
		idx := int(binary.BigEndian.Uint16(b[3:encapHeaderLen]))
		var l *fwdLink
		if idx < len(f.nodes) {
			l = f.nodes[idx].Load()
		}
		if l == nil {
			f.set.stray.Add(1)
			continue
		}
		msg := make([]byte, k-encapHeaderLen)
		copy(msg, b[encapHeaderLen:])
		select {
		case l.in <- msg:
		default:
			f.set.drops.Add(1)
		}
	}
}

func (l *fwdLink) send(b []byte) error {
	l.wbuf = append(l.wbuf[:encapHeaderLen], b...)
	_, err := l.f.c.Write(l.wbuf)
	return err
}

func (l *fwdLink) read(deadline time.Time) ([]byte, error) {
	select {
	case b := <-l.in:
		return b, nil
	default:
	}
	d := time.Until(deadline)
	if d <= 0 {
		return nil, os.ErrDeadlineExceeded
	}
	if l.timer == nil {
		l.timer = time.NewTimer(d)
	} else {
		l.timer.Reset(d)
	}
	select {
	case b := <-l.in:
		l.timer.Stop()
		return b, nil
	case <-l.timer.C:
		return nil, os.ErrDeadlineExceeded
	case <-l.f.done:
		l.timer.Stop()
		return nil, net.ErrClosed
	}
}

// close detaches the node; the forwarder's socket closes with its last
// node (a node of its group opened later gets a new forwarder).
func (l *fwdLink) close() {
	if l.closed {
		return
	}
	l.closed = true
	f := l.f
	f.set.mu.Lock()
	defer f.set.mu.Unlock()
	if f.open--; f.open == 0 {
		_ = f.c.Close()
		if f.set.fwds[f.num] == f {
			delete(f.set.fwds, f.num)
		}
	}
}

// linkSet opens the links of one run: with nodesPerSocket 1 a socket per
// node, otherwise node i is node i%K behind forwarder i/K.
type linkSet struct {
	gateway string
	k       int
	bufSize int

	mu    sync.Mutex
	raddr *net.UDPAddr
	fwds  map[int]*forwarder

	drops atomic.Uint64 // forwarder: messages dropped at a full node inbox
	stray atomic.Uint64 // forwarder: datagrams for no known node
}

func newLinkSet(cfg *config) *linkSet {
	return &linkSet{gateway: cfg.gateway, k: max(cfg.nodesPerSocket, 1), bufSize: cfg.payload + 512, fwds: map[int]*forwarder{}}
}

func (s *linkSet) resolve() (*net.UDPAddr, error) {
	if s.raddr != nil {
		return s.raddr, nil
	}
	a, err := net.ResolveUDPAddr("udp", s.gateway)
	if err != nil {
		return nil, err
	}
	s.raddr = a
	return a, nil
}

// open returns the link of node idx. Each idx is opened once.
func (s *linkSet) open(idx int) (link, error) {
	s.mu.Lock()
	raddr, err := s.resolve()
	if err != nil || s.k == 1 {
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			return nil, err
		}
		return &socketLink{c: c, rbuf: make([]byte, s.bufSize)}, nil
	}
	defer s.mu.Unlock()
	f := s.fwds[idx/s.k]
	if f == nil {
		if f, err = newForwarder(s, idx/s.k, raddr); err != nil {
			return nil, err
		}
		s.fwds[idx/s.k] = f
	}
	slot := idx % s.k
	l := &fwdLink{f: f, in: make(chan []byte, fwdInbox), wbuf: make([]byte, encapHeaderLen, s.bufSize+encapHeaderLen)}
	l.wbuf[0], l.wbuf[1], l.wbuf[2] = encapHeaderLen, byte(sn.TypeEncapsulated), 0 // Le, MsgType, Ctrl (radius 0)
	binary.BigEndian.PutUint16(l.wbuf[3:], uint16(slot))
	if f.nodes[slot].Load() != nil {
		return nil, fmt.Errorf("node %d opened twice", idx)
	}
	f.open++
	f.nodes[slot].Store(l)
	return l, nil
}

// sockets is the number of UDP sockets the links of n nodes take.
func (s *linkSet) sockets(n int) int { return (n + s.k - 1) / s.k }
