package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// MQTT 3.1.1 wire engine: one conn311 per network connection, over mochi's
// packet codec (third_party/mochi-server/packets, which speaks 3.1.1 and
// 5 and is the codec the embedded broker itself runs on). A connection
// costs one goroutine (the reader, started by session311) plus a
// keep-alive timer; writes are made by the caller under a mutex.

const (
	protoLevel311 = 4 // the Protocol Level byte of an MQTT 3.1.1 CONNECT
	// maxPacket311 bounds a packet from the broker; a larger one ends the
	// connection rather than an allocation of what the wire claims (the
	// gateway drops downlink messages over limits.max_packet_size, 64 KiB
	// at most, anyway).
	maxPacket311 = 16 << 20
	// readBuf311 is the per-connection read buffer: small, since most
	// connections are idle.
	readBuf311 = 512
)

var (
	errProtocol311 = errors.New("upstream: MQTT 3.1.1 protocol error from broker")
	errConnClosed  = errors.New("upstream: connection closed")
	// errServerDisconnect is a DISCONNECT from the broker.
	errServerDisconnect = errors.New("upstream: the broker sent DISCONNECT")
)

// conn311 is one MQTT 3.1.1 network connection.
type conn311 struct {
	nc        net.Conn
	br        *bufio.Reader // used by the reader goroutine only
	keepAlive time.Duration
	wTimeout  time.Duration
	initial   bool      // made by Open, not by the reconnect loop
	connected time.Time // CONNACK received

	wmu  sync.Mutex
	wbuf bytes.Buffer // guarded by wmu

	lastWrite atomic.Int64 // unix nanoseconds
	lastRead  atomic.Int64

	pingMu sync.Mutex
	ping   *time.Timer // nil when keep-alive is off or after close
	closed atomic.Bool

	done    chan struct{} // closed when the reader goroutine has exited
	readErr error         // why it exited; read after done
}

func newConn311(nc net.Conn, keepAlive, writeTimeout time.Duration) *conn311 {
	c := &conn311{
		nc:        nc,
		br:        bufio.NewReaderSize(nc, readBuf311),
		keepAlive: keepAlive,
		wTimeout:  writeTimeout,
		done:      make(chan struct{}),
	}
	now := time.Now().UnixNano()
	c.lastWrite.Store(now)
	c.lastRead.Store(now)
	return c
}

// encode311 appends pk's wire form to buf.
func encode311(buf *bytes.Buffer, pk *packets.Packet) error {
	pk.ProtocolVersion = protoLevel311
	switch pk.FixedHeader.Type {
	case packets.Connect:
		return pk.ConnectEncode(buf)
	case packets.Publish:
		return pk.PublishEncode(buf)
	case packets.Puback:
		return pk.PubackEncode(buf)
	case packets.Pubrec:
		return pk.PubrecEncode(buf)
	case packets.Pubrel:
		pk.FixedHeader.Qos = 1 // fixed header flags 0010 [MQTT-3.6.1-1]
		return pk.PubrelEncode(buf)
	case packets.Pubcomp:
		return pk.PubcompEncode(buf)
	case packets.Subscribe:
		pk.FixedHeader.Qos = 1 // [MQTT-3.8.1-1]
		return pk.SubscribeEncode(buf)
	case packets.Unsubscribe:
		pk.FixedHeader.Qos = 1 // [MQTT-3.10.1-1]
		return pk.UnsubscribeEncode(buf)
	case packets.Pingreq:
		return pk.PingreqEncode(buf)
	case packets.Disconnect:
		return pk.DisconnectEncode(buf)
	}
	return fmt.Errorf("upstream: cannot send packet type %d", pk.FixedHeader.Type)
}

// write sends one packet. A failed write closes the connection, so that
// the reader ends and the session notices the loss.
func (c *conn311) write(pk *packets.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return errConnClosed
	}
	c.wbuf.Reset()
	if err := encode311(&c.wbuf, pk); err != nil {
		return err
	}
	if c.wTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.wTimeout))
	}
	if _, err := c.nc.Write(c.wbuf.Bytes()); err != nil {
		c.close()
		return err
	}
	if c.wbuf.Cap() > 64<<10 {
		c.wbuf = bytes.Buffer{} // do not keep a large message's buffer
	}
	c.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// read reads and decodes the next packet. Only the reader goroutine (or
// connect, before it starts) calls it.
func (c *conn311) read() (*packets.Packet, error) {
	hb, err := c.br.ReadByte()
	if err != nil {
		return nil, err
	}
	var fh packets.FixedHeader
	if err := fh.Decode(hb); err != nil {
		return nil, fmt.Errorf("%w: %w", errProtocol311, err)
	}
	n, _, err := packets.DecodeLength(c.br)
	if err != nil {
		return nil, noEOF(err)
	}
	if n > maxPacket311 {
		return nil, fmt.Errorf("%w: packet of %d bytes (limit %d)", errProtocol311, n, maxPacket311)
	}
	fh.Remaining = n
	buf := make([]byte, n)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return nil, noEOF(err)
	}
	c.lastRead.Store(time.Now().UnixNano())
	pk := &packets.Packet{FixedHeader: fh, ProtocolVersion: protoLevel311}
	switch fh.Type {
	case packets.Connack:
		err = pk.ConnackDecode(buf)
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Puback:
		err = pk.PubackDecode(buf)
	case packets.Pubrec:
		err = pk.PubrecDecode(buf)
	case packets.Pubrel:
		err = pk.PubrelDecode(buf)
	case packets.Pubcomp:
		err = pk.PubcompDecode(buf)
	case packets.Suback:
		err = pk.SubackDecode(buf)
	case packets.Unsuback:
		err = pk.UnsubackDecode(buf)
	case packets.Pingresp:
	case packets.Disconnect:
		// Not in MQTT 3.1.1, but mochi sends it to a 3.1.1 client whose
		// session another connection took over.
		return nil, errServerDisconnect
	default:
		err = fmt.Errorf("unexpected packet type %d", fh.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errProtocol311, err)
	}
	return pk, nil
}

// noEOF turns an EOF inside a packet into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readLoop reads packets and hands them to handle until the connection
// fails; then it closes the connection and calls lost.
func (c *conn311) readLoop(handle func(*packets.Packet) error, lost func(error)) {
	var err error
	for {
		if c.keepAlive > 0 {
			// The pinger makes the broker answer at least every
			// keep-alive; twice that without a packet means it is gone.
			_ = c.nc.SetReadDeadline(time.Now().Add(2 * c.keepAlive))
		}
		var pk *packets.Packet
		if pk, err = c.read(); err != nil {
			break
		}
		if err = handle(pk); err != nil {
			break
		}
	}
	if c.closed.Load() {
		err = errConnClosed
	}
	c.close()
	c.readErr = err
	close(c.done)
	lost(err)
}

// startPinger sends PINGREQ when nothing was written for about the
// keep-alive, or nothing received for a whole one (MQTT 3.1.1 §3.1.2.10).
func (c *conn311) startPinger() {
	if c.keepAlive <= 0 {
		return
	}
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.closed.Load() {
		return
	}
	c.ping = time.AfterFunc(c.keepAlive/2, c.onPingTimer)
}

func (c *conn311) onPingTimer() {
	now := time.Now().UnixNano()
	k := int64(c.keepAlive)
	if now-c.lastWrite.Load() >= k*3/4 || now-c.lastRead.Load() >= k {
		_ = c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	}
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.ping != nil && !c.closed.Load() {
		c.ping.Reset(c.keepAlive / 2)
	}
}

// close closes the network connection (the reader then ends) and stops
// the pinger. It is safe to call more than once, from any goroutine.
func (c *conn311) close() {
	if c.closed.Swap(true) {
		return
	}
	c.pingMu.Lock()
	if c.ping != nil {
		c.ping.Stop()
		c.ping = nil
	}
	c.pingMu.Unlock()
	_ = c.nc.Close()
}

// disconnect sends DISCONNECT (the broker then discards the will) and
// closes the connection.
func (c *conn311) disconnect() {
	_ = c.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.close()
}

// dial311 dials the broker and performs CONNECT/CONNACK, bounded by ctx.
// A refused CONNACK is a *ReasonCodeError with the 3.1.1 return code.
func (u *Upstream) dial311(ctx context.Context, connect *packets.Packet) (*conn311, bool, error) {
	nc, err := u.dial(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("upstream: dial %s: %w", u.ep.hostPort, err)
	}
	c := newConn311(nc, time.Duration(connect.Connect.Keepalive)*time.Second, u.cfg.ConnectTimeout)
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	ca, err := c.handshake(connect)
	stop()
	if err != nil {
		c.close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		var rc *ReasonCodeError
		if errors.As(err, &rc) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("upstream: connect %s (MQTT 3.1.1): %w", u.ep.hostPort, err)
	}
	_ = nc.SetDeadline(time.Time{})
	c.connected = time.Now()
	return c, ca.SessionPresent, nil
}

func (c *conn311) handshake(connect *packets.Packet) (*packets.Packet, error) {
	if err := c.write(connect); err != nil {
		return nil, err
	}
	ca, err := c.read()
	if err != nil {
		return nil, err
	}
	if ca.FixedHeader.Type != packets.Connack {
		return nil, fmt.Errorf("%w: packet type %d before CONNACK", errProtocol311, ca.FixedHeader.Type)
	}
	if ca.ReasonCode != 0 {
		return nil, &ReasonCodeError{Packet: "CONNACK", Code: ca.ReasonCode}
	}
	return ca, nil
}
