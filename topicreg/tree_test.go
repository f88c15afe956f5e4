package topicreg

import (
	"slices"
	"strings"
	"testing"
)

// overlapsBrute decides overlap by trying topics built from the filters'
// own levels plus a fresh one: enough to find a common topic if any
// exists, for the short filters of these tests.
func overlapsBrute(a, b string) bool {
	levels := map[string]bool{"zz": true, "": true, "$x": true}
	for _, f := range []string{a, b} {
		for _, l := range strings.Split(f, "/") {
			if l != "+" && l != "#" {
				levels[l] = true
			}
		}
	}
	words := make([]string, 0, len(levels))
	for l := range levels {
		words = append(words, l)
	}
	var try func(prefix []string, depth int) bool
	try = func(prefix []string, depth int) bool {
		if len(prefix) > 0 {
			topic := strings.Join(prefix, "/")
			if Match(a, topic) && Match(b, topic) {
				return true
			}
		}
		if depth == 0 {
			return false
		}
		for _, w := range words {
			if try(append(prefix, w), depth-1) {
				return true
			}
		}
		return false
	}
	depth := max(strings.Count(a, "/"), strings.Count(b, "/")) + 2
	return try(nil, depth)
}

var treeFilters = []string{
	"a", "a/b", "a/+", "a/#", "+/b", "+", "#", "+/+", "a/b/c", "a/+/c", "+/+/c",
	"$SYS/#", "$SYS/x", "+/x", "b/#", "a/b/#", "/a", "/+", "+/", "a//b",
}

func TestTreeOverlapsAgreesWithMatch(t *testing.T) {
	t.Parallel()
	for _, held := range treeFilters {
		var tr Tree[int]
		tr.Put(held, 1)
		for _, q := range treeFilters {
			if got, want := tr.Overlaps(q), overlapsBrute(held, q); got != want {
				t.Errorf("held %q, Overlaps(%q) = %v, want %v", held, q, got, want)
			}
		}
	}
}

func TestTreeMatchAgreesWithMatch(t *testing.T) {
	t.Parallel()
	var tr Tree[string]
	for _, f := range treeFilters {
		tr.Put(f, f)
	}
	if tr.Len() != len(treeFilters) {
		t.Fatalf("Len %d", tr.Len())
	}
	for _, topic := range []string{"a", "a/b", "a/b/c", "b", "b/x", "$SYS/x", "$SYS", "/a", "a//b", "x/b", "a/x/c", "/", "a/"} {
		var got []string
		tr.Match(topic, func(f, v string) {
			if f != v {
				t.Fatalf("filter %q carries %q", f, v)
			}
			got = append(got, f)
		})
		var want []string
		for _, f := range treeFilters {
			if Match(f, topic) {
				want = append(want, f)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Match(%q) = %v, want %v", topic, got, want)
		}
	}
}

func TestTreePutGetDelete(t *testing.T) {
	t.Parallel()
	var tr Tree[int]
	tr.Put("a/b", 1)
	tr.Put("a/b", 2)
	tr.Put("a/#", 3)
	if v, ok := tr.Get("a/b"); !ok || v != 2 || tr.Len() != 2 {
		t.Fatalf("Get %v %v Len %d", v, ok, tr.Len())
	}
	if _, ok := tr.Get("a"); ok {
		t.Fatal("Get of an inner node")
	}
	tr.Delete("a/b")
	tr.Delete("a/b")
	tr.Delete("nope/x")
	if _, ok := tr.Get("a/b"); ok || tr.Len() != 1 {
		t.Fatalf("after Delete: Len %d", tr.Len())
	}
	tr.Delete("a/#")
	if tr.Len() != 0 || len(tr.root.children) != 0 {
		t.Fatalf("branches left: %v", tr.root.children)
	}
	if tr.Overlaps("#") {
		t.Fatal("empty tree overlaps")
	}
	// Found by fuzzing: empty levels are levels.
	tr.Put("////", 1)
	if !tr.Overlaps("#") || !tr.Overlaps("+/+/+/+/+") || tr.Overlaps("+/+/+/+") {
		t.Fatal(`"////" overlaps "#" and five "+" levels, not four`)
	}
	// Found by fuzzing: "/#" and "+" share only the topic "" (one empty
	// level: "/#" matches its parent), which is no topic name.
	for _, c := range [][2]string{{"/#", "+"}, {"+", "/#"}} {
		var t2 Tree[int]
		t2.Put(c[0], 1)
		if t2.Overlaps(c[1]) {
			t.Errorf("held %q overlaps %q", c[0], c[1])
		}
	}
	var t3 Tree[int]
	t3.Put("a/#", 1)
	if !t3.Overlaps("+") {
		t.Error(`"a/#" matches "a", which "+" matches too`)
	}
}

func FuzzTreeOverlaps(f *testing.F) {
	f.Add("a/+", "+/b")
	f.Add("#", "$SYS/x")
	f.Fuzz(func(t *testing.T, a, b string) {
		if !ValidFilter(a) || !ValidFilter(b) || len(a) > 12 || len(b) > 12 || strings.Count(a, "/") > 2 || strings.Count(b, "/") > 2 {
			return
		}
		var tr Tree[struct{}]
		tr.Put(a, struct{}{})
		if got, want := tr.Overlaps(b), overlapsBrute(a, b); got != want {
			t.Fatalf("held %q, Overlaps(%q) = %v, want %v", a, b, got, want)
		}
	})
}
