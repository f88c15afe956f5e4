package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-11-30T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	i := fromBuildInfo(bi)
	if i.Version != "dev" || !i.Modified || i.Short() != "0123456789ab" {
		t.Errorf("%+v", i)
	}
	if got, want := i.String(), "dev (commit 0123456789ab, 2026-11-30T10:00:00Z, modified; go1.26.8)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	rel := fromBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}})
	if got := rel.String(); got != "v1.2.3 (commit unknown; go1.26.8)" {
		t.Errorf("release: %q", got)
	}
	if r := Read(); r.Version == "" || !strings.HasPrefix(r.GoVersion, "go") {
		t.Errorf("Read() = %+v", r)
	}
}
