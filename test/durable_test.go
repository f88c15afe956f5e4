package test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/testbroker"
	"github.com/mqttsn-gateway/mqttsn-gateway/snclient"
	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// Durable state (issue 13), with a real gateway process restarted on the
// same store.path and UDP port under QoS 1 and QoS 2 load from several
// nodes: nothing acknowledged is lost, no QoS 2 message reaches the broker
// twice, active nodes go on without a CONNECT, and a sleeping node's
// wake-up gets what the broker sent before and during the restart.
func TestDurableRestartKill(t *testing.T) { durableRestart(t, syscall.SIGKILL) }

// The same with SIGTERM: the gateway drains and exits 0.
func TestDurableRestartTerm(t *testing.T) { durableRestart(t, syscall.SIGTERM) }

var gatewayBin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// buildGateway builds cmd/mqttsn-gateway once per test binary.
func buildGateway(t *testing.T) string {
	t.Helper()
	gatewayBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "mqttsn-gateway-bin")
		if err != nil {
			gatewayBin.err = err
			return
		}
		gatewayBin.path = filepath.Join(dir, "mqttsn-gateway")
		gatewayBin.out, gatewayBin.err = exec.Command("go", "build", "-o", gatewayBin.path, "../cmd/mqttsn-gateway").CombinedOutput()
	})
	if gatewayBin.err != nil {
		t.Fatalf("build: %v\n%s", gatewayBin.err, gatewayBin.out)
	}
	return gatewayBin.path
}

// gwProc is a running gateway process.
type gwProc struct {
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	log    []string
}

func startGatewayProc(t *testing.T, bin, cfgFile string) *gwProc {
	t.Helper()
	p := &gwProc{cmd: exec.Command(bin, "--config", cfgFile, "--log-format", "json"), exited: make(chan error, 1)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log = append(p.log, line)
			p.mu.Unlock()
			if strings.Contains(line, `"msg":"gateway serving"`) {
				once.Do(func() { close(serving) })
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			p.mu.Lock()
			for _, l := range p.log {
				if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) || strings.Contains(l, "restored") {
					t.Log(l)
				}
			}
			p.mu.Unlock()
		}
	})
	select {
	case <-serving:
	case err := <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("gateway exited at start: %v\n%s", err, strings.Join(p.log, "\n"))
	case <-time.After(Wait):
		t.Fatal("gateway did not start serving")
	}
	return p
}

// durPub publishes numbered messages from one node, one in flight, and
// retransmits (same MsgId, DUP) until each is acknowledged.
type durPub struct {
	name    string
	qos     sn.QoS
	conn    *snclient.Conn
	topicID uint16

	mu       sync.Mutex
	acked    []int
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

func (p *durPub) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

func (p *durPub) fail(f string, a ...any) {
	p.mu.Lock()
	p.failures = append(p.failures, fmt.Sprintf(f, a...))
	p.mu.Unlock()
}

func (p *durPub) run() {
	defer close(p.done)
	msgID := uint16(100)
	for seq := 0; ; seq++ {
		select {
		case <-p.stop:
			return
		default:
		}
		msgID++
		if !p.one(seq, msgID) {
			return
		}
	}
}

// one sends message seq until the gateway acknowledged it (PUBACK 0x00,
// or PUBREC then PUBCOMP); congestion is retried.
func (p *durPub) one(seq int, msgID uint16) bool {
	pub := &sn.Publish{QoS: p.qos, TopicID: p.topicID, MsgID: msgID, Data: []byte(p.name + " " + strconv.Itoa(seq))}
	released := false
	deadline := time.Now().Add(Wait)
	send := func(dup bool) {
		if released {
			_ = p.conn.Send(&sn.Pubrel{MsgID: msgID})
			return
		}
		pub.DUP = dup
		_ = p.conn.Send(pub)
	}
	send(false)
	for time.Now().Before(deadline) {
		pkt, err := p.conn.Receive(300 * time.Millisecond)
		if errors.Is(err, snclient.ErrTimeout) {
			send(true)
			continue
		}
		if err != nil {
			continue
		}
		switch a := pkt.(type) {
		case *sn.Puback:
			if a.MsgID != msgID {
				continue
			}
			if a.ReturnCode == sn.Accepted {
				p.mu.Lock()
				p.acked = append(p.acked, seq)
				p.mu.Unlock()
				return true
			}
			send(true) // congestion: later, again
		case *sn.Pubrec:
			if a.MsgID != msgID {
				continue
			}
			if !released {
				released = true
				p.mu.Lock()
				p.acked = append(p.acked, seq) // the gateway holds it now
				p.mu.Unlock()
			}
			send(true)
		case *sn.Pubcomp:
			if a.MsgID == msgID && released {
				return true
			}
		case *sn.Disconnect:
			p.fail("message %d: DISCONNECT from the gateway (the session was not restored)", seq)
			return false
		}
	}
	p.fail("message %d: no acknowledgement in %v", seq, Wait)
	return false
}

func durableRestart(t *testing.T, sig syscall.Signal) {
	bin := buildGateway(t)
	ForEachBroker(t, func(t *testing.T, tg testbroker.Target) {
		if tg.Mode == testbroker.Aggregating {
			// Measured: the sleeper misses what the broker sent while the
			// gateway was down, and kill -9 makes 1-2 QoS 2 duplicates.
			t.Skip("not durable in aggregating mode yet: the aggregator's shared sessions, parked queues and QoS 2 packets are not stored (README, Durable state)")
		}
		dir := t.TempDir()
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		_ = pc.Close()
		cfgFile := filepath.Join(dir, "gateway.yaml")
		cfg := fmt.Sprintf("listen:\n  udp: %q\nbroker:\n  url: %q\n  reconnect_backoff_min: 100ms\n  reconnect_backoff_max: 500ms\n", addr, tg.URL)
		if tg.Protocol != "" {
			cfg += fmt.Sprintf("  protocol_version: %q\n", tg.Protocol)
		}
		if tg.Mode != "" {
			cfg += fmt.Sprintf("  mode: %q\n", tg.Mode)
		}
		cfg += "store:\n  path: state.db\nshutdown_timeout: 5s\nlimits:\n  shards: 2\n"
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		gw := startGatewayProc(t, bin, cfgFile)

		prefix := "dur-" + clientID(tg.Name+"-"+sig.String())
		watcher := newBrokerClient(t, tg.Addr(), "watch")
		watcher.subscribe(prefix+"/#", 2)
		brokerPub := newBrokerClient(t, tg.Addr(), "pub")

		// A sleeping CleanSession=0 node subscribed to its own topic.
		sleeper, err := snclient.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer sleeper.Close()
		sleepTopic := prefix + "-sleep/x"
		sl := &Node{t: t, Conn: sleeper}
		sl.Connect(prefix+"-sleeper", false, 600)
		sl.Subscribe(1, sleepTopic, sn.QoS1)
		sl.Send(&sn.Disconnect{HasDuration: true, Duration: 3600})
		sl.Expect(&sn.Disconnect{})

		var pubs []*durPub
		for i := range 6 {
			c, err := snclient.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n := &Node{t: t, Conn: c}
			name := fmt.Sprintf("%s-n%d", prefix, i)
			n.Connect(name, i%2 == 0, 600)
			p := &durPub{name: name, qos: sn.QoS(1 + i%2), conn: c, topicID: n.Register(1, prefix+"/"+name),
				stop: make(chan struct{}), done: make(chan struct{})}
			pubs = append(pubs, p)
		}
		for _, p := range pubs {
			go p.run()
		}
		for i := range 5 {
			brokerPub.publish(sleepTopic, "s"+strconv.Itoa(i), 1)
		}
		Eventually(t, "every node has 5 messages acknowledged", func() bool {
			for _, p := range pubs {
				if p.ackedCount() < 5 {
					return false
				}
			}
			return true
		})

		if err := gw.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-gw.exited:
			if sig == syscall.SIGTERM && err != nil {
				t.Errorf("gateway exit after SIGTERM: %v", err)
			}
		case <-time.After(Wait):
			t.Fatal("gateway did not exit")
		}
		atStop := make([]int, len(pubs))
		for i, p := range pubs {
			atStop[i] = p.ackedCount()
		}
		for i := 5; i < 10; i++ {
			brokerPub.publish(sleepTopic, "s"+strconv.Itoa(i), 1) // while the gateway is down
		}

		_ = startGatewayProc(t, bin, cfgFile)
		Eventually(t, "every node has 5 more messages acknowledged after the restart", func() bool {
			for i, p := range pubs {
				if p.ackedCount() < atStop[i]+5 {
					return false
				}
			}
			return true
		})
		for _, p := range pubs {
			close(p.stop)
		}
		want := map[string]bool{}
		for _, p := range pubs {
			<-p.done
			for _, f := range p.failures {
				t.Errorf("%s: %s", p.name, f)
			}
			for _, s := range p.acked {
				want[p.name+" "+strconv.Itoa(s)] = true
			}
		}
		// Every acknowledged message reached the broker; no QoS 2 one twice.
		got := map[string]int{}
		missing := func() int {
			n := 0
			for k := range want {
				if got[k] == 0 {
					n++
				}
			}
			return n
		}
		deadline := time.After(Wait)
		for missing() > 0 {
			select {
			case m := <-watcher.C:
				got[m.Payload]++
			case <-deadline:
				t.Fatalf("%d of %d acknowledged messages never reached the broker", missing(), len(want))
			}
		}
		for _, p := range pubs {
			if p.qos != sn.QoS2 {
				continue
			}
			for k, n := range got {
				if strings.HasPrefix(k, p.name+" ") && n > 1 {
					t.Errorf("QoS 2 message %q reached the broker %d times", k, n)
				}
			}
		}

		// The sleeping node wakes and gets everything (each at least once).
		sl.Send(&sn.PingReq{ClientID: prefix + "-sleeper"})
		var woke []string
	wake:
		for {
			switch p := sl.Next().(type) {
			case *sn.Publish:
				if p.QoS == sn.QoS1 {
					sl.Send(&sn.Puback{TopicID: p.TopicID, MsgID: p.MsgID})
				}
				if len(woke) == 0 || woke[len(woke)-1] != string(p.Data) {
					woke = append(woke, string(p.Data))
				}
			case *sn.Register:
				sl.Send(&sn.Regack{TopicID: p.TopicID, MsgID: p.MsgID})
			case *sn.PingResp:
				break wake
			default:
				t.Fatalf("sleeping node got %v on waking", p.Type())
			}
		}
		seen := map[string]bool{}
		for _, w := range woke {
			seen[w] = true
		}
		for i := range 10 {
			if !seen["s"+strconv.Itoa(i)] {
				t.Errorf("sleeping node did not get s%d on waking; got %v", i, woke)
			}
		}
		t.Logf("%s: %d messages acknowledged, %d copies at the broker; sleeper got %v", tg.Name, len(want), len(got), woke)
	})
}
