package dtlstransport

import (
	"github.com/pion/logging"
	"go.uber.org/zap"
)

// pionLoggerFactory routes pion's logs to zap. Everything pion reports is
// about one peer (a bad record, a failed handshake), which a remote party
// can cause at will, so it all goes to Debug; Trace is dropped.
type pionLoggerFactory struct{ log *zap.Logger }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{s: f.log.Named(scope).Sugar()}
}

type pionLogger struct{ s *zap.SugaredLogger }

func (pionLogger) Trace(string)                     {}
func (pionLogger) Tracef(string, ...any)            {}
func (l pionLogger) Debug(msg string)               { l.s.Debug(msg) }
func (l pionLogger) Debugf(format string, a ...any) { l.s.Debugf(format, a...) }
func (l pionLogger) Info(msg string)                { l.s.Debug(msg) }
func (l pionLogger) Infof(format string, a ...any)  { l.s.Debugf(format, a...) }
func (l pionLogger) Warn(msg string)                { l.s.Debug(msg) }
func (l pionLogger) Warnf(format string, a ...any)  { l.s.Debugf(format, a...) }
func (l pionLogger) Error(msg string)               { l.s.Debug(msg) }
func (l pionLogger) Errorf(format string, a ...any) { l.s.Debugf(format, a...) }
