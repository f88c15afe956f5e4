package dtlstransport

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
)

// errUnknownIdentity fails a handshake whose PSK identity is not in the file.
var errUnknownIdentity = errors.New("dtls: unknown PSK identity")

// pskKeys maps a PSK identity to its key. A value is never modified once
// built: Reload swaps in a new map.
type pskKeys map[string][]byte

// readPSKFile reads a file of "identity:hexkey" lines.
func readPSKFile(name string) (pskKeys, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("dtls: dtls.psk_file: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	return parsePSK(name, f)
}

// parsePSK parses "identity:hexkey" lines. The key is the text after the
// last colon, so an identity may itself contain colons. Blank lines and
// lines whose first non-blank character is # are ignored.
func parsePSK(name string, r io.Reader) (pskKeys, error) {
	keys := make(pskKeys)
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return nil, fmt.Errorf("dtls: dtls.psk_file %s:%d: want identity:hexkey (e.g. node-1:000102030405060708090a0b0c0d0e0f)", name, line)
		}
		id, hexKey := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
		if id == "" {
			return nil, fmt.Errorf("dtls: dtls.psk_file %s:%d: empty identity before the colon", name, line)
		}
		key, err := hex.DecodeString(hexKey)
		if err != nil || len(key) == 0 {
			return nil, fmt.Errorf("dtls: dtls.psk_file %s:%d: identity %q: key is not hexadecimal (make one with: openssl rand -hex 16)", name, line, id)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("dtls: dtls.psk_file %s:%d: identity %q is listed twice", name, line, id)
		}
		keys[id] = key
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dtls: dtls.psk_file %s:%d: %w", name, line+1, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("dtls: dtls.psk_file %s holds no identity:hexkey line", name)
	}
	return keys, nil
}

// pskCallback is handed to pion: it returns the key of the identity the
// client sent, from the current file.
func (t *Transport) pskCallback(identity []byte) ([]byte, error) {
	keys := t.psk.Load()
	if keys == nil {
		return nil, errUnknownIdentity
	}
	key, ok := (*keys)[string(identity)]
	if !ok {
		t.log.Debug("DTLS handshake with unknown PSK identity", zap.ByteString("identity", identity))
		return nil, errUnknownIdentity
	}
	return key, nil
}

// pskCallback is pskCallback for one peer: it also records the identity
// and key, so that Reload can tell whether the key in use changed.
func (p *peer) pskCallback(identity []byte) ([]byte, error) {
	key, err := p.t.pskCallback(identity)
	if err == nil {
		p.t.mu.Lock()
		p.pskIdentity, p.pskKey = string(identity), key
		p.t.mu.Unlock()
	}
	return key, err
}

// keyCurrent reports whether key is still identity's key.
func (t *Transport) keyCurrent(identity string, key []byte) bool {
	keys := t.psk.Load()
	if keys == nil {
		return false
	}
	k, ok := (*keys)[identity]
	return ok && bytes.Equal(k, key)
}

// Reload re-reads the PSK file (call it on SIGHUP). On error the keys in
// use stay as they were. Connections whose identity was removed or whose
// key changed are closed; their nodes must handshake again. Without a PSK
// file Reload does nothing.
func (t *Transport) Reload() error {
	if t.cfg.PSKFile == "" {
		return nil
	}
	keys, err := readPSKFile(t.cfg.PSKFile)
	if err != nil {
		return err
	}
	t.psk.Store(&keys)
	var revoked []*peer
	t.mu.Lock()
	for _, p := range t.peers {
		if p.pskIdentity == "" {
			continue
		}
		if !t.keyCurrent(p.pskIdentity, p.pskKey) {
			revoked = append(revoked, p)
		}
	}
	t.mu.Unlock()
	for _, p := range revoked {
		t.stats.Revoked.Add(1)
		p.cancel()
	}
	t.log.Info("DTLS PSK file reloaded", zap.String("file", t.cfg.PSKFile), zap.Int("identities", len(keys)), zap.Int("revoked_connections", len(revoked)))
	return nil
}
