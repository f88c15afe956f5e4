package upstream

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// pahoLogger adapts zap to paho's log.Logger (Println, Printf).
type pahoLogger struct {
	log   *zap.Logger
	level zapcore.Level
}

func (l pahoLogger) Println(v ...any) {
	if ce := l.log.Check(l.level, "paho"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprint(v...)))
	}
}

func (l pahoLogger) Printf(format string, v ...any) {
	if ce := l.log.Check(l.level, "paho"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}
