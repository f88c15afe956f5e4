package main

import (
	"net"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mqttsn-gateway/mqttsn-gateway/internal/config"
)

// reloadTarget is what a reload changes in the running gateway
// (*gateway.Gateway).
type reloadTarget interface {
	SetPredefined(map[uint16]string) error
	SetForwarderAllow([]string) error
}

// keyReloader is a DTLS listener whose PSK file can be re-read
// (*dtlstransport.Transport).
type keyReloader interface {
	Reload() error
	LocalAddr() net.Addr
}

// reloader applies SIGHUP: it re-reads the configuration file and applies
// what can change safely in a running gateway, namely the log level, the
// predefined topics and the forwarder allow-list, and re-reads the DTLS
// PSK file (whose content is not in the configuration). Every other key
// that changed is logged at warn as needing a restart, at every SIGHUP
// until the gateway restarts. A file with a mistake changes nothing.
type reloader struct {
	running *config.File                 // the configuration in effect
	reread  func() (*config.File, error) // nil: started without a file
	target  reloadTarget
	lvl     zap.AtomicLevel
	dtls    []keyReloader
	log     *zap.Logger
}

// reloadable reports whether a reload applies key (see apply).
func reloadable(key string) bool {
	switch key {
	case "log.level", "predefined_topics", "forwarders.allow":
		return true
	default:
		return false
	}
}

func (r *reloader) reload() {
	r.reloadKeys()
	if r.reread == nil {
		if len(r.dtls) == 0 {
			r.log.Info("SIGHUP: started without --config: nothing to reload")
		}
		return
	}
	next, err := r.reread()
	if err != nil {
		r.log.Error("SIGHUP: configuration not reloaded, the running one stays", zap.Error(err))
		return
	}
	changed := config.Diff(r.running, next)
	if len(changed) == 0 {
		r.log.Info("SIGHUP: configuration unchanged")
		return
	}
	for _, key := range changed {
		if !reloadable(key) {
			r.log.Warn("SIGHUP: configuration key changed: it takes effect after a restart", zap.String("key", key))
			continue
		}
		if err := r.apply(key, next); err != nil {
			r.log.Error("SIGHUP: configuration key not reloaded, the running value stays", zap.String("key", key), zap.Error(err))
			continue
		}
		r.log.Info("SIGHUP: configuration key reloaded", zap.String("key", key))
	}
}

// apply makes key's new value from next the running one.
func (r *reloader) apply(key string, next *config.File) error {
	switch key {
	case "log.level":
		l, err := zapcore.ParseLevel(next.Log.Level)
		if err != nil {
			return err
		}
		r.lvl.SetLevel(l)
		r.running.Log.Level = next.Log.Level
	case "predefined_topics":
		if err := r.target.SetPredefined(next.PredefinedTopics); err != nil {
			return err
		}
		r.running.PredefinedTopics = next.PredefinedTopics
	case "forwarders.allow":
		if err := r.target.SetForwarderAllow(next.Forwarders.Allow); err != nil {
			return err
		}
		r.running.Forwarders.Allow = next.Forwarders.Allow
	}
	return nil
}

// reloadKeys re-reads the DTLS PSK file of every DTLS listener. A file
// with a mistake is refused and the old keys stay.
func (r *reloader) reloadKeys() {
	for _, t := range r.dtls {
		if err := t.Reload(); err != nil {
			r.log.Error("SIGHUP: DTLS keys not reloaded, the old ones stay", zap.Error(err))
			continue
		}
		r.log.Info("SIGHUP: DTLS keys reloaded", zap.Stringer("addr", t.LocalAddr()))
	}
}
