package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// Schema is the version of the store's layout this gateway writes; it
// refuses to open a store written with a newer one.
const Schema = 1

// Bucket names and the schema key.
const (
	bucketMeta   = "meta"
	bucketNodes  = "nodes"    // clientID -> node record
	bucketBuffer = "buffer"   // nodeKey + seq (big endian u64) -> message
	bucketQoS2   = "qos2"     // nodeKey + msgID (big endian u16) -> forwarded (0/1) + upstream id (big endian u16)
	bucketPacket = "upstream" // nodeKey + packet id (big endian u16) -> packet
	keySchema    = "schema"
)

// Options tune a Bolt store. The zero value is the production setting.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file (default 1s) before it reports the store as in use.
	LockTimeout time.Duration
	// NoSync skips fsync on commit: for tests and benchmarks only, a
	// crash of the machine can then lose committed data.
	NoSync bool
	// MaxGroup bounds how many commits share one transaction (default
	// 1024).
	MaxGroup int
}

// Bolt is a Store in one bbolt file, for a single gateway instance.
// Commits from any number of goroutines go through one writer goroutine,
// which puts every commit waiting at the time into one transaction: one
// fsync for many messages (group commit), so the rate stays high on storage
// that takes milliseconds per fsync.
type Bolt struct {
	db       *bbolt.DB
	path     string
	maxGroup int

	mu     sync.RWMutex // guards closed against Commit's send on reqs
	closed bool
	reqs   chan *commitReq
	wg     sync.WaitGroup
}

var _ Store = (*Bolt)(nil)

type commitReq struct {
	b    *Batch
	done chan error
	fn   func(error) // CommitAsync: called instead of sending on done
}

func (r *commitReq) finish(err error) {
	if r.fn != nil {
		r.fn(err)
		return
	}
	r.done <- err
}

// Open opens the store at path, creating the file (not its folder) if
// needed. Every error names store.path and says what to do.
func Open(path string, opts Options) (*Bolt, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.MaxGroup <= 0 {
		opts.MaxGroup = 1024
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("store.path %q: folder %q does not exist: create it (the systemd unit's StateDirectory= does) or point store.path into a writable folder", path, dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("store.path %q is a folder: give the path of a file in it, e.g. %q", path, filepath.Join(path, "state.db"))
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync, NoFreelistSync: true})
	switch {
	case err == nil:
	case errors.Is(err, bberrors.ErrTimeout):
		return nil, fmt.Errorf("store.path %q is locked by another process (another gateway instance?): stop it, or give each instance its own store.path", path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("store.path %q: %w: the gateway's user must be able to read and write it", path, err)
	default:
		return nil, fmt.Errorf("store.path %q is not a readable gateway store (%w): restore it from a backup, or move it aside to start with no stored sessions", path, err)
	}
	s := &Bolt{db: db, path: path, maxGroup: opts.MaxGroup, reqs: make(chan *commitReq, opts.MaxGroup)}
	if err := s.checkSchema(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

// checkSchema initialises a new file and refuses one it cannot read.
func (s *Bolt) checkSchema() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("store.path %q is a bbolt file but not a gateway store: point store.path elsewhere", s.path)
			}
			meta, err := tx.CreateBucket([]byte(bucketMeta))
			if err != nil {
				return err
			}
			for _, name := range []string{bucketNodes, bucketBuffer, bucketQoS2, bucketPacket} {
				if _, err := tx.CreateBucket([]byte(name)); err != nil {
					return err
				}
			}
			return meta.Put([]byte(keySchema), binary.AppendUvarint(nil, Schema))
		}
		v, n := binary.Uvarint(meta.Get([]byte(keySchema)))
		if n <= 0 {
			return fmt.Errorf("store.path %q has no readable schema version (damaged): restore it from a backup, or move it aside to start with no stored sessions", s.path)
		}
		if v > Schema {
			return fmt.Errorf("store.path %q was written by a newer gateway (schema %d; this one reads up to %d): run the newer version, or move the file aside to start with no stored sessions", s.path, v, Schema)
		}
		for _, name := range []string{bucketNodes, bucketBuffer, bucketQoS2} {
			if tx.Bucket([]byte(name)) == nil {
				return fmt.Errorf("store.path %q lacks its %q bucket (damaged): restore it from a backup, or move it aside to start with no stored sessions", s.path, name)
			}
		}
		// Added in schema 1 before its first release: created when missing.
		_, err := tx.CreateBucketIfNotExists([]byte(bucketPacket))
		return err
	})
}

// Path is the file's path.
func (s *Bolt) Path() string { return s.path }

// Load reads every node in one read transaction.
func (s *Bolt) Load(fn func(*Record) error) error {
	return s.db.View(func(tx *bbolt.Tx) error {
		buf, q2 := tx.Bucket([]byte(bucketBuffer)).Cursor(), tx.Bucket([]byte(bucketQoS2)).Cursor()
		pk := tx.Bucket([]byte(bucketPacket)).Cursor()
		return tx.Bucket([]byte(bucketNodes)).ForEach(func(k, v []byte) error {
			n, err := decodeNode(v)
			if err != nil {
				return s.corrupt("node", k, err)
			}
			if n.ClientID != string(k) {
				return s.corrupt("node", k, errCorrupt)
			}
			r := &Record{Node: *n}
			prefix := nodeKey(nil, n.ClientID)
			for bk, bv := buf.Seek(prefix); bk != nil && bytes.HasPrefix(bk, prefix); bk, bv = buf.Next() {
				if len(bk) != len(prefix)+8 {
					return s.corrupt("buffer key", k, errCorrupt)
				}
				m, err := decodeMessage(bv)
				if err != nil {
					return s.corrupt("buffered message", k, err)
				}
				r.Buffer = append(r.Buffer, Buffered{Seq: binary.BigEndian.Uint64(bk[len(prefix):]), Msg: m})
			}
			for qk, qv := q2.Seek(prefix); qk != nil && bytes.HasPrefix(qk, prefix); qk, qv = q2.Next() {
				if len(qk) != len(prefix)+2 || (len(qv) != 1 && len(qv) != 3) || qv[0] > 1 {
					return s.corrupt("QoS 2 state", k, errCorrupt)
				}
				q := QoS2{MsgID: binary.BigEndian.Uint16(qk[len(prefix):]), Forwarded: qv[0] == 1}
				if len(qv) == 3 {
					q.UpstreamID = binary.BigEndian.Uint16(qv[1:])
				}
				r.QoS2 = append(r.QoS2, q)
			}
			for pkk, pv := pk.Seek(prefix); pkk != nil && bytes.HasPrefix(pkk, prefix); pkk, pv = pk.Next() {
				if len(pkk) != len(prefix)+2 {
					return s.corrupt("upstream packet", k, errCorrupt)
				}
				r.Packets = append(r.Packets, Packet{ID: binary.BigEndian.Uint16(pkk[len(prefix):]), Data: bytes.Clone(pv)})
			}
			return fn(r)
		})
	})
}

func (s *Bolt) corrupt(what string, clientID []byte, err error) error {
	return fmt.Errorf("store.path %q: %s of client %q: %w: restore the file from a backup, or move it aside to start with no stored sessions", s.path, what, clientID, err)
}

// Commit hands b to the writer and waits until it is durable.
func (s *Bolt) Commit(ctx context.Context, b *Batch) error {
	if b.Len() == 0 {
		return nil
	}
	req := &commitReq{b: b, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.reqs <- req:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CommitAsync hands b to the writer and returns at once; done is called
// from the writer goroutine once b is durable (or failed), and must not
// block. Commits are applied in the order of the calls, so a caller that
// keeps several in flight still sees its writes in order. It blocks only
// while the writer's queue is full.
func (s *Bolt) CommitAsync(b *Batch, done func(error)) error {
	if b.Len() == 0 {
		done(nil)
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.reqs <- &commitReq{b: b, fn: done}
	return nil
}

// writer applies waiting commits, as many as are queued (up to maxGroup),
// in one transaction each round. If a grouped transaction fails, each
// commit is retried alone, so one bad batch fails only its own caller.
func (s *Bolt) writer() {
	defer s.wg.Done()
	group := make([]*commitReq, 0, s.maxGroup)
	for {
		r, ok := <-s.reqs
		if !ok {
			return
		}
		group = append(group[:0], r)
	drain:
		for len(group) < s.maxGroup {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for _, r := range group {
				if err := apply(tx, r.b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(group) > 1 {
			for _, r := range group {
				r.finish(s.db.Update(func(tx *bbolt.Tx) error { return apply(tx, r.b) }))
			}
			continue
		}
		for _, r := range group {
			r.finish(err)
		}
	}
}

func apply(tx *bbolt.Tx, b *Batch) error {
	nodes, buf, q2 := tx.Bucket([]byte(bucketNodes)), tx.Bucket([]byte(bucketBuffer)), tx.Bucket([]byte(bucketQoS2))
	pk := tx.Bucket([]byte(bucketPacket))
	var key, val []byte
	for i := range b.ops {
		o := &b.ops[i]
		var err error
		switch o.kind {
		case opPutNode:
			val = appendNode(val[:0], o.node)
			err = nodes.Put([]byte(o.clientID), bytes.Clone(val))
		case opDeleteNode:
			if err = nodes.Delete([]byte(o.clientID)); err == nil {
				key = nodeKey(key[:0], o.clientID)
				if err = deletePrefix(buf, key); err == nil {
					if err = deletePrefix(q2, key); err == nil {
						err = deletePrefix(pk, key)
					}
				}
			}
		case opPutMessage:
			key = binary.BigEndian.AppendUint64(nodeKey(key[:0], o.clientID), o.seq)
			val = appendMessage(val[:0], &o.msg)
			err = buf.Put(bytes.Clone(key), bytes.Clone(val))
		case opDeleteMessage:
			key = binary.BigEndian.AppendUint64(nodeKey(key[:0], o.clientID), o.seq)
			err = buf.Delete(key)
		case opPutQoS2:
			key = binary.BigEndian.AppendUint16(nodeKey(key[:0], o.clientID), o.qos2.MsgID)
			err = q2.Put(bytes.Clone(key), binary.BigEndian.AppendUint16(appendBool(nil, o.qos2.Forwarded), o.qos2.UpstreamID))
		case opDeleteQoS2:
			key = binary.BigEndian.AppendUint16(nodeKey(key[:0], o.clientID), o.qos2.MsgID)
			err = q2.Delete(key)
		case opPutPacket:
			key = binary.BigEndian.AppendUint16(nodeKey(key[:0], o.clientID), o.qos2.UpstreamID)
			err = pk.Put(bytes.Clone(key), bytes.Clone(o.data))
		case opDeletePacket:
			key = binary.BigEndian.AppendUint16(nodeKey(key[:0], o.clientID), o.qos2.UpstreamID)
			err = pk.Delete(key)
		}
		if err != nil {
			return fmt.Errorf("store: client %q: %w", o.clientID, err)
		}
	}
	return nil
}

// nodeKey is the prefix of a node's keys: its ClientID's length, then the
// ClientID, so that no ClientID's keys are a prefix of another's.
func nodeKey(b []byte, clientID string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(clientID))), clientID...)
}

func deletePrefix(bk *bbolt.Bucket, prefix []byte) error {
	c := bk.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Close waits for the commits already handed over and closes the file.
// Commit returns ErrClosed afterwards. It is idempotent.
func (s *Bolt) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	s.wg.Wait()
	return s.db.Close()
}
