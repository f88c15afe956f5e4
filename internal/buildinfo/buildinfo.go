// Package buildinfo says which build of the module is running: its version
// and the VCS revision, time and state it was built from, as the Go
// toolchain stamps them (runtime/debug.ReadBuildInfo). Every command shows
// it with --version; the gateway also logs it first, shows it on the
// status page and exports it as the mqttsn_build_info metric.
//
// go build stamps the revision when it runs inside a git checkout (unless
// -buildvcs=false); go install module@version stamps the version. A
// release build without either can set the version with
//
//	-ldflags "-X github.com/mqttsn-gateway/mqttsn-gateway/internal/buildinfo.version=v1.2.3"
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version overrides the module version when set by the linker.
var version string //nolint:gochecknoglobals // set by the linker only

// Info describes a build.
type Info struct {
	Version   string // module version ("v1.2.3"), or "dev" for a build from a checkout
	Revision  string // VCS revision (commit hash), "" when not stamped
	Time      string // VCS commit time, RFC 3339, "" when not stamped
	Modified  bool   // the working tree had uncommitted changes
	GoVersion string // toolchain, e.g. "go1.26.8"
}

// Read returns the running binary's build information.
func Read() Info {
	i := Info{Version: "dev", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		i = fromBuildInfo(bi)
	}
	if version != "" {
		i.Version = version
	}
	return i
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: "dev", GoVersion: bi.GoVersion}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		i.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// Short is the revision's first 12 characters, "unknown" when not stamped.
func (i Info) Short() string {
	switch {
	case i.Revision == "":
		return "unknown"
	case len(i.Revision) > 12:
		return i.Revision[:12]
	default:
		return i.Revision
	}
}

// String is one line for --version and logs:
// "v1.2.3 (commit 0123456789ab, 2026-11-30T10:00:00Z, modified; go1.26.8)".
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	b.WriteString(" (commit ")
	b.WriteString(i.Short())
	if i.Time != "" {
		b.WriteString(", ")
		b.WriteString(i.Time)
	}
	if i.Modified {
		b.WriteString(", modified")
	}
	b.WriteString("; ")
	b.WriteString(i.GoVersion)
	b.WriteString(")")
	return b.String()
}
