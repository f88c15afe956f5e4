// Package cli holds what the command-line tools share: flag types and
// their logging set-up.
package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// PredefinedFlag collects repeatable --predefined id=name flags.
type PredefinedFlag map[uint16]string

func (p PredefinedFlag) String() string {
	var b strings.Builder
	for id, name := range p {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d=%s", id, name)
	}
	return b.String()
}

func (p PredefinedFlag) Set(s string) error {
	idStr, name, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want id=topic/name, e.g. 1=sensors/temp")
	}
	id, err := strconv.ParseUint(idStr, 0, 16)
	if err != nil || id == 0 || id == 0xFFFF {
		return fmt.Errorf("topic id %q must be a number from 1 to 65534", idStr)
	}
	p[uint16(id)] = name
	return nil
}

// DurationFlag accepts a Go duration ("90s", "10m") or whole seconds ("90").
type DurationFlag struct{ D *time.Duration }

func (f DurationFlag) String() string {
	if f.D == nil || *f.D == 0 {
		return ""
	}
	return f.D.String()
}

func (f DurationFlag) Set(s string) error {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		*f.D = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration such as 30s, 10m or a number of seconds")
	}
	*f.D = d
	return nil
}

// NewLogger logs the protocol to w at debug level when debug is set, and
// discards everything otherwise.
func NewLogger(debug bool, w io.Writer) *zap.Logger {
	if !debug {
		return zap.NewNop()
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zapcore.DebugLevel))
}

// SyncWriter serializes writes from the client's goroutines and the
// command's own.
type SyncWriter struct {
	mu sync.Mutex
	W  io.Writer
}

func (s *SyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.W.Write(p)
}
