package topicreg

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want Violation
	}{
		{"plain", "a/b", Valid},
		{"one level", "a", Valid},
		{"slash only", "/", Valid},
		{"empty levels", "a//b/", Valid},
		{"dollar", "$SYS/x", Valid},
		{"unicode", "sensor/température/°C", Valid},
		{"replacement char", "a\uFFFD", Valid},
		{"space and tab-free punctuation", "a b/c-d_e.f", Valid},
		{"max length", strings.Repeat("a", MaxTopicLen), Valid},
		{"empty", "", Empty},
		{"too long", strings.Repeat("a", MaxTopicLen+1), TooLong},
		{"short multi-level", "/#", WildcardInName},
		{"short single-level", "/+", WildcardInName},
		{"short hash", "a#", WildcardInName},
		{"hash", "#", WildcardInName},
		{"plus", "+", WildcardInName},
		{"plus in level", "a/+/b", WildcardInName},
		{"null", "a\x00b", NullChar},
		{"short null", "a\x00", NullChar},
		{"invalid octet", "a\xff", InvalidUTF8},
		{"truncated sequence", "a\xc3", InvalidUTF8},
		{"overlong", "\xc0\xaf", InvalidUTF8},
		{"surrogate", "\xed\xa0\x80", InvalidUTF8},
		{"control", "a\x01", BadCodePoint},
		{"newline", "a\nb", BadCodePoint},
		{"delete", "a\x7f", BadCodePoint},
		{"C1 control", "a\u0085", BadCodePoint},
		{"non-character FDD0", "a\uFDD0", BadCodePoint},
		{"non-character FFFE", "a\uFFFE", BadCodePoint},
		{"non-character FFFF", "\uFFFF", BadCodePoint},
		{"non-character 1FFFF", "\U0001FFFF", BadCodePoint},
		{"null before wildcard", "\x00#", NullChar},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := CheckName(c.in); got != c.want {
				t.Errorf("CheckName(%q) = %v, want %v", c.in, got, c.want)
			}
			if validName(c.in) != (c.want == Valid) {
				t.Errorf("validName(%q) disagrees with CheckName", c.in)
			}
		})
	}
}

func TestCheckFilter(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		want Violation
	}{
		{"name", "a/b", Valid},
		{"hash", "#", Valid},
		{"plus", "+", Valid},
		{"short multi-level", "/#", Valid},
		{"short single-level", "/+", Valid},
		{"trailing hash", "a/#", Valid},
		{"mixed", "+/a/+/#", Valid},
		{"empty levels", "a//+/", Valid},
		{"dollar", "$SYS/#", Valid},
		{"max length", strings.Repeat("a", MaxTopicLen-2) + "/#", Valid},
		{"empty", "", Empty},
		{"too long", strings.Repeat("a", MaxTopicLen) + "/#", TooLong},
		{"hash not last", "a/#/b", MalformedFilter},
		{"hash then slash", "#/", MalformedFilter},
		{"hash in level", "a#", MalformedFilter},
		{"hash in last level", "a/b#", MalformedFilter},
		{"double hash", "##", MalformedFilter},
		{"plus in level", "a+", MalformedFilter},
		{"plus before name", "+a/b", MalformedFilter},
		{"plus after name", "a/+b", MalformedFilter},
		{"null", "a/\x00", NullChar},
		{"invalid utf8", "a/\xff/#", InvalidUTF8},
		{"control", "a/\x1b/#", BadCodePoint},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := CheckFilter(c.in); got != c.want {
				t.Errorf("CheckFilter(%q) = %v, want %v", c.in, got, c.want)
			}
			if ValidFilter(c.in) != (c.want == Valid) {
				t.Errorf("ValidFilter(%q) disagrees with CheckFilter", c.in)
			}
		})
	}
}

func TestViolationNames(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range Violations() {
		s := v.String()
		if s == "unknown" || s == "valid" || seen[s] {
			t.Errorf("Violation %d has name %q", v, s)
		}
		seen[s] = true
	}
	if Violation(200).String() != "unknown" {
		t.Error("out-of-range Violation has a name")
	}
}

func TestCheckNoAllocs(t *testing.T) {
	name, filter := "sensors/température/a", "sensors/+/#"
	if n := testing.AllocsPerRun(100, func() { _ = CheckName(name); _ = CheckFilter(filter) }); n != 0 {
		t.Fatalf("CheckName/CheckFilter allocate %v times", n)
	}
}

func FuzzCheckFilter(f *testing.F) {
	for _, s := range []string{"a/b", "#", "a/#", "+/+", "/#", "a\x00", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, filter := CheckName(s), CheckFilter(s)
		// A valid name is a valid filter; a filter without wildcards is a
		// valid name.
		if name == Valid && filter != Valid {
			t.Fatalf("%q: name valid, filter %v", s, filter)
		}
		if filter == Valid && !HasWildcard(s) && name != Valid {
			t.Fatalf("%q: filter valid, name %v", s, name)
		}
	})
}
