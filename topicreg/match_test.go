package topicreg

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b/c", "a/b/c", true},
		{"a/b/c", "a/b", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b/d", false},
		{"A/b", "a/b", false}, // case-sensitive
		// '#'
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"sport/#", "sport", true}, // parent level
		{"sport/#", "sport/", true},
		{"sport/#", "sport/tennis/player1", true},
		{"sport/#", "sports", false},
		{"sport/tennis/#", "sport/tennis", true},
		{"sport/tennis/#", "sport", false},
		{"/#", "/a", true},
		{"/#", "a", false},
		// '+'
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"+/+", "/", true},
		{"/+", "/finance", true},
		{"+", "", false},
		{"sport/+", "sport", false},
		{"sport/+", "sport/", true},
		{"sport/+/player1", "sport/tennis/player1", true},
		{"sport/+/player1", "sport/tennis/player2", false},
		{"+/tennis/#", "sport/tennis/player1/ranking", true},
		{"+/+/+", "a/b/c", true},
		{"+/+/+", "a/b", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
		// $-topics
		{"#", "$SYS/broker", false},
		{"+/broker", "$SYS/broker", false},
		{"+", "$SYS", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/+", "$SYS/broker", true},
		{"$SYS/broker", "$SYS/broker", true},
		{"a/#", "a/$SYS", true}, // only a leading wildcard is restricted
		// malformed filters and topics match nothing
		{"", "a", false},
		{"a", "", false},
		{"", "", false},
		{"sport/tennis#", "sport/tennis", false},
		{"sport/tennis#", "sport/tennis#", false},
		{"sport/#/ranking", "sport/x/ranking", false},
		{"#/a", "x/a", false},
		{"sport+", "sport+", false},
		{"a/+b", "a/xb", false},
		{"+", "+", false},
		{"#", "#", false},
		{"a/+", "a/+", false},
		{"a/b", "a/b/#", false},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
		if tt.want != refMatch(tt.filter, tt.topic) {
			t.Errorf("reference disagrees on Match(%q, %q)", tt.filter, tt.topic)
		}
	}
}

func TestHasWildcard(t *testing.T) {
	for name, want := range map[string]bool{
		"": false, "a/b": false, "$SYS/x": false, "+": true, "#": true,
		"a/+/b": true, "a/#": true, "a+b": true, "c#": true,
	} {
		if got := HasWildcard(name); got != want {
			t.Errorf("HasWildcard(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for f, want := range map[string]bool{
		"a": true, "a/b": true, "/": true, "#": true, "+": true, "a/#": true,
		"+/+/#": true, "/#": true, "$SYS/#": true, "a//+": true,
		"": false, "a/#/b": false, "#/": false, "a#": false, "a/b#": false,
		"a+": false, "+a/b": false, "a/+b": false, "##": false,
		"a\x00b": false, "a\xff": false,
	} {
		if got := ValidFilter(f); got != want {
			t.Errorf("ValidFilter(%q) = %v, want %v", f, got, want)
		}
	}
}

func TestMatchNoAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		Match("sport/+/player1/#", "sport/tennis/player1/ranking/x")
		Match("$SYS/#", "$SYS/broker")
	})
	if allocs != 0 {
		t.Fatalf("Match allocates %v times", allocs)
	}
}

// refMatch is an independent, obviously-correct (and allocating) reference.
// Like Match, it checks the filter's structure but not its encoding.
func refMatch(filter, topic string) bool {
	if filter == "" || topic == "" || strings.ContainsAny(topic, "+#") {
		return false
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if (l != "#" && l != "+" && strings.ContainsAny(l, "+#")) || (l == "#" && i != len(levels)-1) {
			return false // malformed filter
		}
	}
	if strings.HasPrefix(topic, "$") && strings.ContainsAny(filter[:1], "+#") {
		return false
	}
	f, tp := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(tp) || (fl != "+" && fl != tp[i]) {
			return false
		}
	}
	return len(f) == len(tp)
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"a/+/c", "a/b/c"}, {"#", "$SYS/x"}, {"a/#", "a"}, {"+/+", "/"},
		{"a/#/b", "a/x/b"}, {"a+", "a+"}, {"", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if got, want := Match(filter, topic), refMatch(filter, topic); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference %v", filter, topic, got, want)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Match("sport/+/player1/#", "sport/tennis/player1/ranking")
	}
}
