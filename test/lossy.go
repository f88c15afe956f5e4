package test

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Loss is the damage a LossyRelay does to each direction of a link. Each
// direction numbers its datagrams 1, 2, 3, ... and decides by that number
// and a random source seeded with Seed, so a run is reproducible up to the
// interleaving of the two directions.
type Loss struct {
	// DropEvery drops every n-th datagram (0: none by pattern).
	DropEvery int
	// DupEvery sends every n-th datagram (that is not dropped) twice.
	DupEvery int
	// DropRate adds random drops with this probability.
	DropRate float64
	// MaxDropRun caps consecutive drops in one direction, so that a sender
	// retransmitting often enough always gets through. Default 2.
	MaxDropRun int
	// Seed seeds the random drops.
	Seed uint64
}

// LinkStats counts what a LossyRelay did to one direction.
type LinkStats struct {
	Forwarded  atomic.Uint64 // datagrams forwarded (a duplicate counts twice)
	Dropped    atomic.Uint64
	Duplicated atomic.Uint64
}

// LossyRelay is a UDP relay between one node and the gateway that drops
// and duplicates datagrams in both directions. The node sends to Addr; the
// gateway sees every datagram coming from the relay's one socket.
type LossyRelay struct {
	// Addr is the address a node dials instead of the gateway's.
	Addr string
	// Up counts node-to-gateway datagrams, Down gateway-to-node ones.
	Up, Down LinkStats

	front *net.UDPConn // node side, bound to 127.0.0.1:0
	back  *net.UDPConn // connected to the gateway
	node  atomic.Pointer[net.UDPAddr]
	wg    sync.WaitGroup
}

// relayBuf bounds one datagram; UDP cannot carry more.
const relayBuf = 65536

// NewLossyRelay starts a relay on 127.0.0.1:0 in front of the gateway at
// gatewayAddr. It is stopped by t.Cleanup. The first address that sends to
// it is the node; answers go back there.
func NewLossyRelay(t testing.TB, gatewayAddr string, loss Loss) *LossyRelay {
	t.Helper()
	if loss.MaxDropRun == 0 {
		loss.MaxDropRun = 2
	}
	ga, err := net.ResolveUDPAddr("udp", gatewayAddr)
	if err != nil {
		t.Fatalf("lossy relay: %v", err)
	}
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("lossy relay: %v", err)
	}
	back, err := net.DialUDP("udp", nil, ga)
	if err != nil {
		_ = front.Close()
		t.Fatalf("lossy relay: %v", err)
	}
	r := &LossyRelay{Addr: front.LocalAddr().String(), front: front, back: back}
	up := newLossPattern(loss, 1)
	down := newLossPattern(loss, 2)
	r.wg.Add(2)
	go r.pump(&r.Up, up, func(b []byte) (int, error) {
		n, from, err := front.ReadFromUDP(b)
		if err == nil {
			r.node.CompareAndSwap(nil, from)
		}
		return n, err
	}, func(b []byte) error {
		_, err := back.Write(b)
		return err
	})
	go r.pump(&r.Down, down, back.Read, func(b []byte) error {
		to := r.node.Load()
		if to == nil {
			return nil // nobody to answer yet
		}
		_, err := front.WriteToUDP(b, to)
		return err
	})
	t.Cleanup(r.close)
	return r
}

// close stops both directions and waits for them.
func (r *LossyRelay) close() {
	_ = r.front.Close()
	_ = r.back.Close()
	r.wg.Wait()
}

// pump moves datagrams one way until its socket is closed. Order is kept:
// a duplicate follows its original at once.
func (r *LossyRelay) pump(st *LinkStats, lp *lossPattern, read func([]byte) (int, error), write func([]byte) error) {
	defer r.wg.Done()
	buf := make([]byte, relayBuf)
	for {
		n, err := read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable reported on the connected socket
		}
		drop, dup := lp.next()
		if drop {
			st.Dropped.Add(1)
			continue
		}
		copies := 1
		if dup {
			copies = 2
			st.Duplicated.Add(1)
		}
		for range copies {
			if write(buf[:n]) == nil {
				st.Forwarded.Add(1)
			}
		}
	}
}

// lossPattern decides the fate of each datagram of one direction. It is
// used by that direction's goroutine only.
type lossPattern struct {
	loss Loss
	rng  *rand.Rand
	n    int // datagrams seen
	run  int // consecutive drops so far
}

func newLossPattern(l Loss, dir uint64) *lossPattern {
	return &lossPattern{loss: l, rng: rand.New(rand.NewPCG(l.Seed, dir))}
}

func (p *lossPattern) next() (drop, dup bool) {
	p.n++
	drop = p.loss.DropEvery > 0 && p.n%p.loss.DropEvery == 0
	if r := p.rng.Float64(); !drop && r < p.loss.DropRate {
		drop = true
	}
	if drop && p.run >= p.loss.MaxDropRun {
		drop = false
	}
	if drop {
		p.run++
		return true, false
	}
	p.run = 0
	return false, p.loss.DupEvery > 0 && p.n%p.loss.DupEvery == 0
}
