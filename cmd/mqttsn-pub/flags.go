package main

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

// predefinedFlag collects repeatable --predefined id=name flags.
type predefinedFlag map[uint16]string

func (p predefinedFlag) String() string {
	var b strings.Builder
	for id, name := range p {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d=%s", id, name)
	}
	return b.String()
}

func (p predefinedFlag) Set(s string) error {
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

// durationFlag accepts a Go duration ("90s", "10m") or whole seconds ("90").
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return f.d.String()
}

func (f durationFlag) Set(s string) error {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		*f.d = time.Duration(n) * time.Second
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration such as 30s, 10m or a number of seconds")
	}
	*f.d = d
	return nil
}

// newLogger logs the protocol to w at debug level when debug is set, and
// discards everything otherwise.
func newLogger(debug bool, w io.Writer) *zap.Logger {
	if !debug {
		return zap.NewNop()
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zapcore.DebugLevel))
}

// syncWriter serializes writes from the client's goroutines and the
// command's own.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
