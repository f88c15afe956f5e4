package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	sn "github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
)

// pace calls fn(i) for i in [0, n), each in its own goroutine, starting
// them at rate per second (all at once when rate is 0), and waits for all.
// It stops starting new ones when ctx ends.
func pace(ctx context.Context, n int, rate float64, fn func(i int)) {
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		if rate > 0 {
			at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); fn(i) }()
	}
	wg.Wait()
}

// setupNodes creates n nodes and runs CONNECT plus setup on each, paced at
// rate. Nodes that failed are closed and left nil. It returns the nodes,
// the connect latencies and the time until the last one connected.
func setupNodes(ctx context.Context, cfg *config, res *Result, rate float64, setup func(*node) error) ([]*node, *Histogram, time.Duration, error) {
	nodes := make([]*node, cfg.n)
	h := &Histogram{}
	start := time.Now()
	var last atomic.Int64
	var mu sync.Mutex
	pace(ctx, cfg.n, rate, func(i int) {
		n, err := newNode(cfg, i, res.links)
		if err == nil {
			var lat time.Duration
			lat, err = n.connect(cfg.keepAlive)
			if err == nil {
				h.Record(lat)
				if setup != nil {
					err = setup(n)
				}
			}
			if err != nil {
				n.close()
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.ConnectFailed++
			res.errorf("%v", err)
			return
		}
		nodes[i] = n
		res.Connected++
		if d := int64(time.Since(start)); d > last.Load() {
			last.Store(d)
		}
	})
	res.ConnectLatency = h.Summary()
	return nodes, h, time.Duration(last.Load()), ctx.Err()
}

func closeNodes(ctx context.Context, nodes []*node, rate float64, bye bool) {
	pace(ctx, len(nodes), rate, func(i int) {
		if n := nodes[i]; n != nil {
			if bye {
				n.tries = 1
				_ = n.disconnect(0)
			}
			n.close()
		}
	})
}

// ---- connect ----------------------------------------------------------

func runConnect(ctx context.Context, cfg *config) (*Result, error) {
	res := newResult(cfg)
	if cfg.rate == 0 {
		cfg.rate = cfg.connectRate
		res.RateTarget = cfg.rate
	}
	var setup func(*node) error
	if cfg.sleepers > 0 {
		res.Sleepers = cfg.sleepers
		setup = func(n *node) error {
			if n.idx >= cfg.sleepers {
				return nil
			}
			return n.subscribe(sleepyTopic(cfg, n.idx), sn.QoS(cfg.qos))
		}
	}
	start := time.Now()
	nodes, _, all, err := setupNodes(ctx, cfg, res, cfg.rate, setup)
	res.DurationS = time.Since(start).Seconds()
	res.TimeToConnected = all.Seconds()
	if res.ConnectFailed > 0 {
		res.TimeToConnected = 0 // not all connected
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case <-time.After(cfg.hold):
		}
	}
	if cfg.gatewayPID > 0 {
		res.RSSAfterKiB, _ = vmRSS(cfg.gatewayPID)
		if res.Connected > 0 && res.RSSAfterKiB > res.RSSBeforeKiB {
			res.PerNodeKiB = float64(int64(float64(res.RSSAfterKiB-res.RSSBeforeKiB)/float64(res.Connected)*10)) / 10
		}
	}
	if err == nil && cfg.sleepers > 0 {
		// The rest stay connected while the sleepers cycle, going to
		// sleep and waking up at --connect-rate.
		connectTime := res.DurationS
		err = sleepCycles(ctx, cfg, res, nodes[:cfg.sleepers], cfg.connectRate)
		res.DurationS = connectTime
	}
	closeNodes(context.WithoutCancel(ctx), nodes, max(cfg.rate, 5000), true)
	return res, err
}

// ---- publish ----------------------------------------------------------

type pubCounters struct {
	offered, acked, rejected, unacked, retrans atomic.Uint64
}

// sendWindow is the timing of one load phase.
type sendWindow struct {
	epoch    time.Time     // payload timestamps are relative to it
	start    time.Time     // first send
	until    time.Time     // no new message after it (count mode: far away)
	interval time.Duration // per sender; 0: no pacing
}

func newSendWindow(cfg *config, epoch time.Time, senders int) sendWindow {
	w := sendWindow{epoch: epoch, start: time.Now()}
	w.until = w.start.Add(cfg.duration)
	if cfg.count > 0 {
		w.until = w.start.Add(24 * time.Hour) // the count ends the load
	}
	if cfg.rate > 0 {
		w.interval = time.Duration(float64(senders) / cfg.rate * float64(time.Second))
	}
	return w
}

type inflight struct {
	seq      uint32
	msgID    uint16
	sent     time.Time
	lastSent time.Time
	pubrel   bool
	tries    int
}

// publishLoop is one node's load: PUBLISH at the node's QoS, paced, with
// up to cfg.window QoS 1/2 messages in flight, retransmitting with DUP.
// It returns once the load phase ended and its in-flight messages were
// acknowledged or the drain time ran out.
func (n *node) publishLoop(ctx context.Context, cfg *config, w sendWindow, ackH *Histogram, c *pubCounters, acked *seqSet) error {
	qos := sn.QoS(cfg.qos)
	payload := make([]byte, cfg.payload)
	for i := payloadHeader; i < len(payload); i++ {
		payload[i] = byte(i)
	}
	slots := make([]inflight, 0, cfg.window)
	next := w.start
	if w.interval > 0 {
		next = next.Add(time.Duration(int64(w.interval) * int64(n.idx%cfg.n) / int64(cfg.n)))
	}
	var seq uint32
	var ended time.Time
	pub := &n.pub
	*pub = sn.Publish{QoS: qos, TopicIDType: sn.TopicNormal, TopicID: n.topicID}
	if qos == sn.QoSMinusOne {
		pub.TopicIDType, pub.TopicID = sn.TopicShort, minusOneTopicID
	}
	sendPub := func(s *inflight, dup bool) error {
		pub.DUP, pub.MsgID = dup, s.msgID
		pub.Data = payload
		return n.send(pub)
	}
	for {
		now := time.Now()
		sending := ended.IsZero() && now.Before(w.until) && (cfg.count == 0 || int(seq) < cfg.count) && ctx.Err() == nil
		if !sending {
			if ended.IsZero() {
				ended = now
			}
			if len(slots) == 0 {
				return nil
			}
			if now.After(ended.Add(cfg.drain)) || ctx.Err() != nil {
				c.unacked.Add(uint64(len(slots)))
				return nil
			}
		}
		for sending && (qos <= sn.QoS0 || len(slots) < cfg.window) && (w.interval == 0 || !now.Before(next)) {
			s := inflight{seq: seq, sent: now, lastSent: now}
			if qos > sn.QoS0 {
				s.msgID = n.nextMsgID()
			}
			fillPayload(payload, uint32(n.idx), seq, now.Sub(w.epoch))
			if err := sendPub(&s, false); err != nil {
				return err
			}
			c.offered.Add(1)
			seq++
			if qos > sn.QoS0 {
				slots = append(slots, s)
			}
			next = next.Add(w.interval)
			now = time.Now()
			sending = now.Before(w.until) && (cfg.count == 0 || int(seq) < cfg.count)
		}
		if qos <= sn.QoS0 {
			if !sending {
				continue
			}
			if d := next.Sub(now); d > 0 {
				time.Sleep(d)
			}
			continue
		}
		// Wait for an answer, until the next send is due or a
		// retransmission is.
		deadline := now.Add(time.Second)
		if sending && len(slots) < cfg.window && w.interval > 0 && next.Before(deadline) {
			deadline = next
		}
		if !sending && ended.Add(cfg.drain).Before(deadline) {
			deadline = ended.Add(cfg.drain)
		}
		for i := range slots {
			if r := slots[i].lastSent.Add(n.retry); r.Before(deadline) {
				deadline = r
			}
		}
		b, err := n.read(deadline)
		if isTimeout(err) {
			now = time.Now()
			for i := 0; i < len(slots); i++ {
				s := &slots[i]
				if now.Before(s.lastSent.Add(n.retry)) {
					continue
				}
				if s.tries >= cfg.retries {
					c.unacked.Add(1)
					slots = append(slots[:i], slots[i+1:]...)
					i--
					continue
				}
				s.tries++
				s.lastSent = now
				c.retrans.Add(1)
				if s.pubrel {
					err = n.send(&sn.Pubrel{MsgID: s.msgID})
				} else {
					fillPayload(payload, uint32(n.idx), s.seq, s.sent.Sub(w.epoch))
					err = sendPub(s, true)
				}
				if err != nil {
					return err
				}
			}
			continue
		}
		if err != nil {
			return err
		}
		t, ok := msgType(b)
		if !ok {
			n.unexpect++
			continue
		}
		find := func(id uint16) int {
			for i := range slots {
				if slots[i].msgID == id {
					return i
				}
			}
			return -1
		}
		done := func(i int, ok bool) {
			if ok {
				c.acked.Add(1)
				ackH.Record(time.Since(slots[i].sent))
				acked.add(slots[i].seq)
			} else {
				c.rejected.Add(1)
			}
			slots = append(slots[:i], slots[i+1:]...)
		}
		switch t {
		case sn.TypePuback:
			if n.ack.Unmarshal(b) != nil {
				n.unexpect++
				continue
			}
			if i := find(n.ack.MsgID); i >= 0 && !slots[i].pubrel {
				// For QoS 2, a PUBACK is a rejection (spec §6.7).
				done(i, n.ack.ReturnCode == sn.Accepted && qos == sn.QoS1)
			}
		case sn.TypePubrec:
			p, err := sn.Unmarshal(b)
			if err != nil {
				n.unexpect++
				continue
			}
			id := p.(*sn.Pubrec).MsgID
			if i := find(id); i >= 0 {
				slots[i].pubrel = true
				slots[i].lastSent, slots[i].tries = time.Now(), 0
			}
			if err := n.send(&sn.Pubrel{MsgID: id}); err != nil {
				return err
			}
		case sn.TypePubcomp:
			p, err := sn.Unmarshal(b)
			if err != nil {
				n.unexpect++
				continue
			}
			if i := find(p.(*sn.Pubcomp).MsgID); i >= 0 && slots[i].pubrel {
				done(i, true)
			}
		case sn.TypeDisconnect:
			c.unacked.Add(uint64(len(slots)))
			return errGatewayDisconnect
		default:
			n.unexpect++
		}
	}
}

// minusOneTopic is the short topic QoS -1 messages go to.
const minusOneTopic = "bq"

// minusOneTopicID is minusOneTopic as a short topic id ("bq").
const minusOneTopicID = uint16('b')<<8 | uint16('q')

func runPublish(ctx context.Context, cfg *config) (*Result, error) {
	res := newResult(cfg)
	epoch := time.Now()
	tr := NewTracker(cfg.n, epoch)
	filters := []string{cfg.prefix + "/#"}
	if cfg.qos == -1 {
		filters = append(filters, minusOneTopic)
	}
	sub, err := newSubscriber(ctx, cfg, tr, filters)
	if err != nil {
		return nil, err
	}
	defer sub.close()

	var nodes []*node
	if cfg.qos == -1 {
		nodes = make([]*node, cfg.n)
		for i := range nodes {
			if nodes[i], err = newNode(cfg, i, res.links); err != nil {
				return nil, err
			}
		}
	} else {
		nodes, _, _, err = setupNodes(ctx, cfg, res, cfg.connectRate, func(n *node) error {
			return n.register(cfg.prefix + "/" + strconv.Itoa(n.idx))
		})
		if err != nil {
			closeNodes(context.WithoutCancel(ctx), nodes, 0, false)
			return res, err
		}
	}
	defer closeNodes(context.WithoutCancel(ctx), nodes, max(cfg.connectRate, 5000), cfg.qos >= 0)

	var c pubCounters
	ackH := &Histogram{}
	acked := make([]seqSet, cfg.n)
	w := newSendWindow(cfg, epoch, cfg.n)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var lastSend atomic.Int64
	for i, n := range nodes {
		if n == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.publishLoop(ctx, cfg, w, ackH, &c, &acked[i]); err != nil {
				errMu.Lock()
				res.errorf("%s: %v", n.id, err)
				errMu.Unlock()
			}
			t := int64(time.Since(w.start))
			for {
				l := lastSend.Load()
				if t <= l || lastSend.CompareAndSwap(l, t) {
					break
				}
			}
		}()
	}
	// The load phase ends when the senders stop sending; measure it as
	// the shorter of the planned duration and the time they took.
	wg.Wait()
	loadEnd := time.Since(w.start)
	if cfg.count == 0 && loadEnd > cfg.duration {
		loadEnd = cfg.duration
	}
	offered := c.offered.Load()
	waitDelivered(ctx, tr, offered, min(cfg.drain, 3*time.Second), time.Now().Add(cfg.drain))
	for _, n := range nodes {
		if n != nil {
			res.Retransmissions += n.retrans
		}
	}
	res.DurationS = loadEnd.Seconds()
	res.Offered, res.OfferedRate = offered, rate(offered, loadEnd)
	res.Acked = c.acked.Load()
	res.AckedRate = rate(res.Acked, loadEnd)
	res.Rejected, res.Unacked = c.rejected.Load(), c.unacked.Load()
	res.Retransmissions += c.retrans.Load()
	res.AckLatency = ackH.Summary()
	fillDelivery(res, tr, offered, w)
	if cfg.qos > 0 {
		for i := range acked {
			for seq := uint32(0); int(seq) < len(acked[i])*64; seq++ {
				if acked[i].has(seq) && !tr.Has(i, seq) {
					res.LostAcked++
				}
			}
		}
	}
	return res, nil
}

// fillDelivery fills in what the subscriber saw.
func fillDelivery(res *Result, tr *Tracker, expected uint64, w sendWindow) {
	res.Expected = expected
	res.Delivered = tr.Unique()
	res.Lost = int64(expected) - int64(res.Delivered)
	res.Duplicates = tr.Duplicates()
	res.Foreign = tr.foreign.Load()
	res.E2ELatency = tr.E2E.Summary()
	if last := tr.LastDelivery() - w.start.Sub(w.epoch); last > 0 {
		res.DeliveredRate = rate(res.Delivered, last)
	}
}

// ---- direct -----------------------------------------------------------

// runDirect is the ceiling: MQTT publishers straight to the broker, with
// the same QoS, payload, pacing, window and subscriber as the publish
// scenario.
func runDirect(ctx context.Context, cfg *config) (*Result, error) {
	res := newResult(cfg)
	epoch := time.Now()
	tr := NewTracker(cfg.n, epoch)
	sub, err := newSubscriber(ctx, cfg, tr, []string{cfg.prefix + "/#"})
	if err != nil {
		return nil, err
	}
	defer sub.close()

	pubs := make([]*rawPublisher, cfg.n)
	var mu sync.Mutex
	h := &Histogram{}
	pace(ctx, cfg.n, cfg.connectRate, func(i int) {
		t0 := time.Now()
		p, err := dialRawPublisher(ctx, cfg.broker, cfg.idPrefix+strconv.Itoa(i), cfg.prefix+"/d/"+strconv.Itoa(i))
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.ConnectFailed++
			res.errorf("%v", err)
			return
		}
		h.Record(time.Since(t0))
		res.Connected++
		pubs[i] = p
	})
	res.ConnectLatency = h.Summary()
	defer func() {
		for _, p := range pubs {
			if p != nil {
				p.close()
			}
		}
	}()

	var c pubCounters
	ackH := &Histogram{}
	acked := make([]seqSet, cfg.n)
	w := newSendWindow(cfg, epoch, cfg.n)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	for i, p := range pubs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.loop(ctx, cfg, i, w, ackH, &c, &acked[i]); err != nil {
				errMu.Lock()
				res.errorf("direct %d: %v", i, err)
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	loadEnd := time.Since(w.start)
	if cfg.count == 0 && loadEnd > cfg.duration {
		loadEnd = cfg.duration
	}
	offered := c.offered.Load()
	waitDelivered(ctx, tr, offered, min(cfg.drain, 3*time.Second), time.Now().Add(cfg.drain))
	res.DurationS = loadEnd.Seconds()
	res.Offered, res.OfferedRate = offered, rate(offered, loadEnd)
	res.Acked, res.AckedRate = c.acked.Load(), rate(c.acked.Load(), loadEnd)
	res.Rejected, res.Unacked = c.rejected.Load(), c.unacked.Load()
	res.AckLatency = ackH.Summary()
	fillDelivery(res, tr, offered, w)
	for i := range acked {
		for seq := uint32(0); int(seq) < len(acked[i])*64; seq++ {
			if acked[i].has(seq) && !tr.Has(i, seq) {
				res.LostAcked++
			}
		}
	}
	return res, nil
}

// loop is publishLoop for a direct MQTT publisher: TCP is reliable, so
// there is no retransmission, only the window and the pacing.
func (p *rawPublisher) loop(ctx context.Context, cfg *config, idx int, w sendWindow, ackH *Histogram, c *pubCounters, acked *seqSet) error {
	qos := byte(max(cfg.qos, 0))
	payload := make([]byte, cfg.payload)
	slots := make([]inflight, 0, cfg.window)
	next := w.start
	if w.interval > 0 {
		next = next.Add(time.Duration(int64(w.interval) * int64(idx) / int64(cfg.n)))
	}
	var seq uint32
	var msgID uint16
	var ended time.Time
	for {
		now := time.Now()
		sending := ended.IsZero() && now.Before(w.until) && (cfg.count == 0 || int(seq) < cfg.count) && ctx.Err() == nil
		if !sending {
			if ended.IsZero() {
				ended = now
			}
			if len(slots) == 0 {
				return nil
			}
			if now.After(ended.Add(cfg.drain)) || ctx.Err() != nil {
				c.unacked.Add(uint64(len(slots)))
				return nil
			}
		}
		for sending && (qos == 0 || len(slots) < cfg.window) && (w.interval == 0 || !now.Before(next)) {
			s := inflight{seq: seq, sent: now}
			if qos > 0 {
				if msgID++; msgID == 0 {
					msgID = 1
				}
				s.msgID = msgID
			}
			fillPayload(payload, uint32(idx), seq, now.Sub(w.epoch))
			if err := p.publish(qos, s.msgID, payload); err != nil {
				return err
			}
			c.offered.Add(1)
			seq++
			if qos > 0 {
				slots = append(slots, s)
			}
			next = next.Add(w.interval)
			now = time.Now()
			sending = now.Before(w.until) && (cfg.count == 0 || int(seq) < cfg.count)
		}
		if qos == 0 {
			if sending {
				if d := next.Sub(now); d > 0 {
					time.Sleep(d)
				}
			}
			continue
		}
		deadline := now.Add(time.Second)
		if sending && len(slots) < cfg.window && w.interval > 0 && next.Before(deadline) {
			deadline = next
		}
		if !sending && ended.Add(cfg.drain).Before(deadline) {
			deadline = ended.Add(cfg.drain)
		}
		typ, id, rc, err := p.readAck(deadline)
		if isTimeout(err) {
			continue
		}
		if err != nil {
			c.unacked.Add(uint64(len(slots)))
			return err
		}
		i := -1
		for k := range slots {
			if slots[k].msgID == id {
				i = k
				break
			}
		}
		if i < 0 {
			continue
		}
		switch typ {
		case packets.PUBACK, packets.PUBCOMP:
			if rc < 0x80 {
				c.acked.Add(1)
				ackH.Record(time.Since(slots[i].sent))
				acked.add(slots[i].seq)
			} else {
				c.rejected.Add(1)
			}
			slots = append(slots[:i], slots[i+1:]...)
		case packets.PUBREC:
			if rc >= 0x80 {
				c.rejected.Add(1)
				slots = append(slots[:i], slots[i+1:]...)
				continue
			}
			if err := p.pubrel(id); err != nil {
				return err
			}
		}
	}
}

// ---- fanout -----------------------------------------------------------

// runFanout subscribes N nodes to a wildcard and publishes from one MQTT
// client; every node must receive every message.
func runFanout(ctx context.Context, cfg *config) (*Result, error) {
	res := newResult(cfg)
	if cfg.qos < 0 {
		return nil, fmt.Errorf("fanout: QoS 0, 1 or 2")
	}
	epoch := time.Now()
	tr := NewTracker(cfg.n, epoch)
	nodes, _, _, err := setupNodes(ctx, cfg, res, cfg.connectRate, func(n *node) error {
		return n.subscribe(cfg.prefix+"/#", sn.QoS(cfg.qos))
	})
	if err != nil {
		closeNodes(context.WithoutCancel(ctx), nodes, 0, false)
		return res, err
	}
	pubCli, err := mqttClient(ctx, cfg.broker, cfg.idPrefix+"pub", 16, nil)
	if err != nil {
		closeNodes(context.WithoutCancel(ctx), nodes, 0, false)
		return res, err
	}
	defer func() { _ = pubCli.Disconnect(&paho.Disconnect{}) }()

	// One reader per node answers the gateway and counts deliveries.
	var stop atomic.Bool
	var rwg sync.WaitGroup
	var errMu sync.Mutex
	for _, n := range nodes {
		if n == nil {
			continue
		}
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			onPub := func(d []byte) { tr.DeliverAs(n.idx, d) }
			for !stop.Load() {
				b, err := n.read(time.Now().Add(250 * time.Millisecond))
				if isTimeout(err) {
					continue
				}
				if err != nil {
					return
				}
				p, err := sn.Unmarshal(b)
				if err != nil {
					n.unexpect++
					continue
				}
				if err := n.downlink(p, onPub); err != nil {
					errMu.Lock()
					res.errorf("%s: %v", n.id, err)
					errMu.Unlock()
					return
				}
			}
		}()
	}

	var c pubCounters
	ackH := &Histogram{}
	w := newSendWindow(cfg, epoch, 1)
	payload := make([]byte, cfg.payload)
	topic := cfg.prefix + "/fan"
	next := w.start
	for seq := uint32(0); ctx.Err() == nil; seq++ {
		now := time.Now()
		if !now.Before(w.until) || (cfg.count > 0 && int(seq) >= cfg.count) {
			break
		}
		if w.interval > 0 && now.Before(next) {
			time.Sleep(next.Sub(now))
			now = time.Now()
		}
		fillPayload(payload, 0, seq, now.Sub(epoch))
		c.offered.Add(1)
		pctx, cancel := context.WithTimeout(ctx, cfg.drain)
		_, err := pubCli.Publish(pctx, &paho.Publish{Topic: topic, QoS: byte(cfg.qos), Payload: payload})
		cancel()
		next = next.Add(w.interval)
		if err != nil {
			c.unacked.Add(1)
			res.errorf("publish: %v", err)
			continue
		}
		c.acked.Add(1)
		if cfg.qos > 0 {
			ackH.Record(time.Since(now))
		}
	}
	loadEnd := time.Since(w.start)
	connected := uint64(res.Connected)
	expected := c.acked.Load() * connected
	waitDelivered(ctx, tr, expected, cfg.drain, time.Now().Add(cfg.drain))
	stop.Store(true)
	rwg.Wait()
	res.DurationS = loadEnd.Seconds()
	res.Offered, res.OfferedRate = c.offered.Load(), rate(c.offered.Load(), loadEnd)
	res.Acked, res.AckedRate = c.acked.Load(), rate(c.acked.Load(), loadEnd)
	res.Unacked = c.unacked.Load()
	res.AckLatency = ackH.Summary()
	fillDelivery(res, tr, expected, w)
	closeNodes(context.WithoutCancel(ctx), nodes, max(cfg.connectRate, 5000), true)
	return res, nil
}

// ---- sleepy -----------------------------------------------------------

// runSleepy cycles N nodes through sleep and wake-up with one message per
// node published while they sleep.
func runSleepy(ctx context.Context, cfg *config) (*Result, error) {
	res := newResult(cfg)
	if cfg.qos < 0 {
		return nil, fmt.Errorf("sleepy: QoS 0, 1 or 2")
	}
	wakeRate := cfg.rate
	if wakeRate == 0 {
		wakeRate = cfg.connectRate
	}
	nodes, _, _, err := setupNodes(ctx, cfg, res, cfg.connectRate, func(n *node) error {
		return n.subscribe(sleepyTopic(cfg, n.idx), sn.QoS(cfg.qos))
	})
	defer closeNodes(context.WithoutCancel(ctx), nodes, max(cfg.connectRate, 5000), true)
	if err != nil {
		return res, err
	}
	return res, sleepCycles(ctx, cfg, res, nodes, wakeRate)
}

// sleepyTopic is the topic of sleepy node i.
func sleepyTopic(cfg *config, i int) string { return cfg.prefix + "/s/" + strconv.Itoa(i) }

// sleepCycles runs cfg.cycles sleep/wake cycles of nodes (nodes[i].idx is
// i, each subscribed to its sleepyTopic at cfg.qos): all sleep, one
// message per node is published, all wake at wakeRate and must receive
// theirs. It fills in res's load and delivery figures.
func sleepCycles(ctx context.Context, cfg *config, res *Result, nodes []*node, wakeRate float64) error {
	epoch := time.Now()
	n := len(nodes)
	tr := NewTracker(n, epoch)
	pubCli, err := mqttClient(ctx, cfg.broker, cfg.idPrefix+"pub", 64, nil)
	if err != nil {
		return err
	}
	defer func() { _ = pubCli.Disconnect(&paho.Disconnect{}) }()

	var errMu sync.Mutex
	fail := func(nd *node, err error) {
		errMu.Lock()
		res.errorf("%s: %v", nd.id, err)
		errMu.Unlock()
	}
	var c pubCounters
	ackH, wakeH := &Histogram{}, &Histogram{}
	var late atomic.Uint64
	var cycle atomic.Uint32
	want := make([]atomic.Uint32, n) // messages acked by the broker per node
	got := make([]atomic.Uint32, n)  // unique deliveries per node
	asleep := make([]bool, n)
	sleepAll := func() {
		pace(ctx, n, wakeRate, func(i int) {
			if nd := nodes[i]; nd != nil {
				if err := nd.disconnect(cfg.sleep); err != nil {
					fail(nd, fmt.Errorf("sleep: %w", err))
					return
				}
				asleep[i] = true
			}
		})
	}
	wake := func(i int) {
		nd := nodes[i]
		if nd == nil || !asleep[i] {
			return
		}
		onPub := func(d []byte) {
			if !tr.DeliverAs(i, d) {
				got[i].Add(1)
				if _, seq, _, ok := parsePayload(d); ok && seq < cycle.Load() {
					late.Add(1)
				}
			}
		}
		_, lat, err := nd.request(&sn.PingReq{ClientID: nd.id},
			func(p sn.Packet) bool { _, ok := p.(*sn.PingResp); return ok },
			func(p sn.Packet) error { return nd.downlink(p, onPub) })
		if err != nil {
			fail(nd, fmt.Errorf("wake: %w", err))
			return
		}
		wakeH.Record(lat)
	}
	start := time.Now()
	w := sendWindow{epoch: epoch, start: start}
	for cy := 0; cy < cfg.cycles && ctx.Err() == nil; cy++ {
		cycle.Store(uint32(cy))
		sleepAll()
		// One message per node, from cfg.workers concurrent publishes.
		var next atomic.Int64
		var pwg sync.WaitGroup
		for range cfg.workers {
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				payload := make([]byte, cfg.payload)
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					if nodes[i] == nil || !asleep[i] {
						continue
					}
					t0 := time.Now()
					fillPayload(payload, uint32(i), uint32(cy), t0.Sub(epoch))
					c.offered.Add(1)
					pctx, cancel := context.WithTimeout(ctx, cfg.drain)
					_, err := pubCli.Publish(pctx, &paho.Publish{Topic: sleepyTopic(cfg, i), QoS: byte(cfg.qos), Payload: payload})
					cancel()
					if err != nil {
						c.unacked.Add(1)
						continue
					}
					c.acked.Add(1)
					want[i].Add(1)
					ackH.Record(time.Since(t0))
				}
			}()
		}
		pwg.Wait()
		select {
		case <-ctx.Done():
		case <-time.After(cfg.settle):
		}
		pace(ctx, n, wakeRate, wake)
	}
	loadEnd := time.Since(start)
	// Stragglers (messages that reached the gateway after their node's
	// wake-up) are delivered at the next wake-up: wake those nodes again
	// until nothing is missing or the drain time ran out.
	deadline := time.Now().Add(cfg.drain)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		var missing []int
		for i := range nodes {
			if nodes[i] != nil && asleep[i] && got[i].Load() < want[i].Load() {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(cfg.settle):
		}
		cycle.Store(uint32(cfg.cycles))
		pace(ctx, len(missing), wakeRate, func(k int) { wake(missing[k]) })
	}
	for _, nd := range nodes {
		if nd != nil {
			res.Retransmissions += nd.retrans
		}
	}
	res.DurationS = loadEnd.Seconds()
	res.Offered, res.OfferedRate = c.offered.Load(), rate(c.offered.Load(), loadEnd)
	res.Acked, res.AckedRate = c.acked.Load(), rate(c.acked.Load(), loadEnd)
	res.Unacked = c.unacked.Load()
	res.AckLatency = ackH.Summary()
	res.WakeLatency = wakeH.Summary()
	res.Late = late.Load()
	fillDelivery(res, tr, c.acked.Load(), w)
	return nil
}
