package topicreg

import "strings"

// Tree maps MQTT topic filters to values and answers the two questions a
// subscription table asks: which filters match a topic name, and does a
// filter overlap (share a matching topic with) any filter already held. It
// is a trie of levels, so both cost about the depth of the filter, not the
// number of filters. It is not safe for concurrent use.
type Tree[V any] struct {
	root tnode[V]
	n    int
}

type tnode[V any] struct {
	children map[string]*tnode[V] // by level; "+" and "#" are the wildcards
	val      V
	filter   string
	set      bool
}

// Len is the number of filters held.
func (t *Tree[V]) Len() int { return t.n }

// Put stores v for filter (which must be valid: see ValidFilter),
// replacing any value it had.
func (t *Tree[V]) Put(filter string, v V) {
	n := &t.root
	for rest, more := filter, true; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		c := n.children[level]
		if c == nil {
			if n.children == nil {
				n.children = make(map[string]*tnode[V], 1)
			}
			c = &tnode[V]{}
			n.children[level] = c
		}
		n = c
	}
	if !n.set {
		t.n++
	}
	n.val, n.filter, n.set = v, filter, true
}

// Get returns the value stored for exactly filter.
func (t *Tree[V]) Get(filter string) (V, bool) {
	n := &t.root
	for rest, more := filter, true; more && n != nil; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		n = n.children[level]
	}
	if n == nil || !n.set {
		var zero V
		return zero, false
	}
	return n.val, true
}

// Delete removes filter and prunes the branches it leaves empty.
func (t *Tree[V]) Delete(filter string) {
	if t.del(&t.root, filter) {
		t.n--
	}
}

func (t *Tree[V]) del(n *tnode[V], rest string) bool {
	level, rest, more := strings.Cut(rest, "/")
	c := n.children[level]
	if c == nil {
		return false
	}
	var found bool
	if more {
		found = t.del(c, rest)
	} else if c.set {
		var zero V
		c.val, c.filter, c.set, found = zero, "", false, true
	}
	if !c.set && len(c.children) == 0 {
		delete(n.children, level)
	}
	return found
}

// Match calls fn for every filter that matches the topic name topic, with
// the same rules as Match.
func (t *Tree[V]) Match(topic string, fn func(filter string, v V)) {
	if topic == "" || HasWildcard(topic) {
		return
	}
	t.match(&t.root, topic, true, fn)
}

func (t *Tree[V]) match(n *tnode[V], topic string, first bool, fn func(string, V)) {
	level, rest, more := strings.Cut(topic, "/")
	wild := !first || !strings.HasPrefix(level, "$") // wildcards do not match "$SYS"...
	if wild {
		if h := n.children["#"]; h != nil && h.set {
			fn(h.filter, h.val)
		}
	}
	next := [2]*tnode[V]{n.children[level], nil}
	if wild {
		next[1] = n.children["+"]
	}
	for _, c := range next {
		if c == nil {
			continue
		}
		if !more {
			if c.set {
				fn(c.filter, c.val)
			}
			// "a/#" matches "a" too.
			if h := c.children["#"]; h != nil && h.set {
				fn(h.filter, h.val)
			}
			continue
		}
		t.match(c, rest, false, fn)
	}
}

// Overlaps reports whether some topic name matches both filter (which
// must be valid) and a filter in t.
func (t *Tree[V]) Overlaps(filter string) bool {
	return overlaps(&t.root, filter, true, false)
}

// overlaps walks n's subtree against rest. first: n is the root; empty:
// the topic so far is one empty level, which alone is no topic name (MQTT
// topic names have at least one character), so "a/#" matching "a" does not
// count there.
func overlaps[V any](n *tnode[V], rest string, first, empty bool) bool {
	level, rest, more := strings.Cut(rest, "/")
	if level == "#" {
		// Every filter below n, and one ending at n itself ("a/#"
		// matches "a"), shares a topic with it, except "$" topics at the
		// first level.
		if !first && n.set && !empty {
			return true
		}
		for key, c := range n.children {
			if first && strings.HasPrefix(key, "$") {
				continue
			}
			if anySet(c) {
				return true
			}
		}
		return false
	}
	for key, c := range n.children {
		switch {
		case key == "#":
			// "P/#" matches every topic under P, so anything the rest of
			// the filter matches: all but "$" topics at the first level.
			if c.set && (!first || !strings.HasPrefix(level, "$")) {
				return true
			}
			continue
		case level == "+":
			if first && strings.HasPrefix(key, "$") {
				continue
			}
		case key == "+":
			if first && strings.HasPrefix(level, "$") {
				continue
			}
		case key != level:
			continue
		}
		lit := key // the topic's level here: the literal one of the two
		if key == "+" {
			lit = level
		}
		single := first && lit == ""
		if !more {
			if c.set {
				return true
			}
			if h := c.children["#"]; h != nil && h.set && !single {
				return true
			}
			continue
		}
		if overlaps(c, rest, false, single) {
			return true
		}
	}
	return false
}

func anySet[V any](n *tnode[V]) bool {
	if n.set {
		return true
	}
	for _, c := range n.children {
		if anySet(c) {
			return true
		}
	}
	return false
}
