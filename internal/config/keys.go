package config

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// unknownKey says which key is unknown, where, and what was probably meant:
// `line 3: unknown key "urll" in broker: did you mean "url"?`.
func unknownKey(line int, path, yamlMsg string) error {
	parts := strings.Split(path, ".")
	key := parts[len(parts)-1]
	// yaml says "field urll not found in type struct { ... }".
	if m := regexp.MustCompile(`field (\S+) not found in type`).FindStringSubmatch(yamlMsg); m != nil {
		key = m[1]
	}
	parent := strings.Join(parts[:len(parts)-1], ".")
	known := KnownKeys(parent)
	where := ""
	if parent != "" {
		where = " in " + parent
	}
	msg := fmt.Sprintf("line %d: unknown key %q%s", line, key, where)
	if best := closest(key, known); best != "" {
		return fmt.Errorf("%s: did you mean %q?", msg, best)
	}
	if len(known) > 0 {
		return fmt.Errorf("%s: the keys there are %s (README, Configuration)", msg, strings.Join(known, ", "))
	}
	return fmt.Errorf("%s (README, Configuration)", msg)
}

// KnownKeys lists the keys allowed under parent ("" for the top level,
// "broker", "dtls", ...), sorted; nil if parent is not a section.
func KnownKeys(parent string) []string {
	t := reflect.TypeOf(File{})
	if parent != "" {
		for _, name := range strings.Split(parent, ".") {
			f, ok := fieldByKey(t, name)
			if !ok || f.Type.Kind() != reflect.Struct {
				return nil
			}
			t = f.Type
		}
	}
	var keys []string
	for i := range t.NumField() {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if yamlKey(t.Field(i)) == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func yamlKey(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if k == "-" {
		return ""
	}
	return k
}

// closest returns the known key nearest to key (at most a third of its
// letters wrong, or key is a prefix of it), or "".
func closest(key string, known []string) string {
	best, bestD := "", len(key)/3+1
	for _, k := range known {
		d := editDistance(key, k)
		if d < bestD || (best == "" && len(key) >= 3 && strings.HasPrefix(k, key)) {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
