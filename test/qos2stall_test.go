package test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/gateway"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testgw"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/upstream"
)

// stallProxy forwards TCP to a broker and can hold every byte while
// paused: a broker that stalls without closing anything.
type stallProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	paused bool
	resume chan struct{}
	conns  []net.Conn
}

func newStallProxy(t *testing.T, to string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, resume: make(chan struct{})}
	close(p.resume)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go p.pipe(c, b)
			go p.pipe(b, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		p.set(false)
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			wait := p.resume
			p.mu.Unlock()
			<-wait
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = dst.Close()
			}
			return
		}
	}
}

func (p *stallProxy) set(paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if paused == p.paused {
		return
	}
	p.paused = paused
	if paused {
		p.resume = make(chan struct{})
	} else {
		close(p.resume)
	}
}

// A broker that stalls for longer than the upstream timeout during QoS 2
// traffic (issue 13): the gateway keeps each MsgId "forwarding", answers
// the nodes' retries nothing until the broker's outcome is known, then
// PUBREC; the broker gets every message exactly once.
func TestQoS2BrokerStallNoDuplicates(t *testing.T) {
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		if tg.Mode == testbroker.Aggregating {
			t.Skip("aggregating mode: the shared sessions do not report their QoS 2 packets to the node's tracker yet, so a timed-out QoS 2 PUBLISH is answered congestion as before (README, Durable state)")
		}
		proxy := newStallProxy(t, tg.Addr())
		timeout := 300 * time.Millisecond
		g := testgw.StartWith(t, tg, gateway.Config{UpstreamTimeout: timeout},
			upstream.Config{URL: "mqtt://" + proxy.ln.Addr().String()})
		addr := g.Addrs()[0].String()
		prefix := "stall-" + clientID(tg.Name)
		watcher := newBrokerClient(t, tg.Addr(), "watch")
		watcher.subscribe(prefix+"/#", 2)

		const nodes = 5
		conns := make([]*snclient.Conn, nodes)
		ids := make([]uint16, nodes)
		for i := range nodes {
			c, err := snclient.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n := &Node{t: t, Conn: c}
			n.Connect(fmt.Sprintf("%s-%d", prefix, i), i%2 == 0, 600)
			ids[i] = n.Register(1, fmt.Sprintf("%s/%d", prefix, i))
			conns[i] = c
		}
		proxy.set(true)
		pubs := make([]*sn.Publish, nodes)
		for i, c := range conns {
			pubs[i] = &sn.Publish{QoS: sn.QoS2, TopicID: ids[i], MsgID: 42, Data: []byte(fmt.Sprintf("m%d", i))}
			if err := c.Send(pubs[i]); err != nil {
				t.Fatal(err)
			}
		}
		// Retries for more than twice the upstream timeout: none is
		// answered (no congestion that would make the node give up, no
		// PUBREC for what the broker does not have).
		stallEnd := time.Now().Add(3 * timeout)
		for time.Now().Before(stallEnd) {
			for i, c := range conns {
				pubs[i].DUP = true
				_ = c.Send(pubs[i])
				if p, err := c.Receive(50 * time.Millisecond); err == nil {
					t.Errorf("node %d got %v while the broker stalled", i, p.Type())
				}
			}
		}
		proxy.set(false)
		for i, c := range conns {
			deadline := time.Now().Add(Wait)
			for {
				if time.Now().After(deadline) {
					t.Fatalf("node %d: no PUBREC after the stall", i)
				}
				_ = c.Send(pubs[i])
				p, err := c.Receive(200 * time.Millisecond)
				if err != nil {
					continue
				}
				if r, ok := p.(*sn.Pubrec); ok && r.MsgID == 42 {
					break
				}
				if a, ok := p.(*sn.Puback); ok {
					t.Fatalf("node %d: PUBACK %v after the stall", i, a.ReturnCode)
				}
			}
			n := &Node{t: t, Conn: c}
			n.Send(&sn.Pubrel{MsgID: 42})
			for {
				if _, ok := n.Next().(*sn.Pubcomp); ok {
					break
				}
			}
		}
		got := map[string]int{}
		for len(got) < nodes {
			got[watcher.next().Payload]++
		}
		// One more node's message, published after the others, marks the
		// point by which any duplicate would have arrived.
		c := conns[0]
		n := &Node{t: t, Conn: c}
		n.Send(&sn.Publish{QoS: sn.QoS2, TopicID: ids[0], MsgID: 43, Data: []byte("marker")})
		n.Expect(&sn.Pubrec{MsgID: 43})
		for m := watcher.next(); m.Payload != "marker"; m = watcher.next() {
			got[m.Payload]++
		}
		for k, v := range got {
			if v != 1 {
				t.Errorf("%s reached the broker %d times", k, v)
			}
		}
	})
}
