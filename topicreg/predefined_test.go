package topicreg

import (
	"maps"
	"strings"
	"sync"
	"testing"
)

func TestPredefined(t *testing.T) {
	in := map[uint16]string{1: "sensors/temp", 0x0102: "$SYS/broker/uptime", 0xFFFE: "x"}
	p, err := NewPredefined(in)
	if err != nil {
		t.Fatal(err)
	}
	in[1] = "mutated" // the table holds a copy
	in[7] = "added"
	if p.Len() != 3 {
		t.Fatalf("Len = %d, want 3", p.Len())
	}
	for id, name := range map[uint16]string{1: "sensors/temp", 0x0102: "$SYS/broker/uptime", 0xFFFE: "x"} {
		if got, ok := p.Name(id); !ok || got != name {
			t.Errorf("Name(%d) = %q, %v; want %q", id, got, ok, name)
		}
		if got, ok := p.ID(name); !ok || got != id {
			t.Errorf("ID(%q) = %d, %v; want %d", name, got, ok, id)
		}
	}
	if _, ok := p.Name(7); ok {
		t.Error("Name(7) found")
	}
	if _, ok := p.ID("mutated"); ok {
		t.Error(`ID("mutated") found`)
	}
	got := p.Topics()
	got[99] = "scribble"
	if p.Len() != 3 || !maps.Equal(p.Topics(), map[uint16]string{1: "sensors/temp", 0x0102: "$SYS/broker/uptime", 0xFFFE: "x"}) {
		t.Errorf("Topics = %v", p.Topics())
	}
}

func TestPredefinedEmptyAndNil(t *testing.T) {
	for name, p := range map[string]*Predefined{"nil": nil, "nil map": must(NewPredefined(nil)), "empty": must(NewPredefined(map[uint16]string{}))} {
		t.Run(name, func(t *testing.T) {
			if p.Len() != 0 {
				t.Errorf("Len = %d", p.Len())
			}
			if _, ok := p.Name(1); ok {
				t.Error("Name found")
			}
			if _, ok := p.ID("a"); ok {
				t.Error("ID found")
			}
			if m := p.Topics(); m == nil || len(m) != 0 {
				t.Errorf("Topics = %#v", m)
			}
		})
	}
}

func must(p *Predefined, err error) *Predefined {
	if err != nil {
		panic(err)
	}
	return p
}

func TestPredefinedErrors(t *testing.T) {
	tests := []struct {
		name string
		in   map[uint16]string
		want []string // substrings of the error
	}{
		{"id zero", map[uint16]string{0: "a"}, []string{"0x0000", "reserved"}},
		{"id ffff", map[uint16]string{0xFFFF: "a"}, []string{"0xFFFF", "reserved"}},
		{"empty name", map[uint16]string{5: ""}, []string{"0x0005", "empty"}},
		{"plus", map[uint16]string{0x10: "a/+/b"}, []string{"0x0010", `"a/+/b"`, "wildcard"}},
		{"hash", map[uint16]string{0x11: "a/#"}, []string{"0x0011", "wildcard"}},
		{"nul", map[uint16]string{0x12: "a\x00b"}, []string{"0x0012", "not a valid"}},
		{"bad utf8", map[uint16]string{0x13: "a\xffb"}, []string{"0x0013", "not a valid"}},
		{"duplicate", map[uint16]string{3: "dup", 9: "dup", 4: "ok"}, []string{"0x0009", `"dup"`, "0x0003"}},
		{"first bad id reported", map[uint16]string{8: "", 2: "a/#"}, []string{"0x0002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPredefined(tt.in)
			if err == nil {
				t.Fatalf("NewPredefined(%v) = %v, want error", tt.in, p)
			}
			if p != nil {
				t.Errorf("non-nil table with error")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if !strings.HasPrefix(err.Error(), "topicreg: ") {
				t.Errorf("error %q lacks package prefix", err)
			}
		})
	}
}

func TestPredefinedConcurrentReaders(t *testing.T) {
	p := must(NewPredefined(map[uint16]string{1: "a", 2: "b"}))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				p.Name(1)
				p.ID("b")
				p.Len()
			}
		})
	}
	wg.Wait()
}
