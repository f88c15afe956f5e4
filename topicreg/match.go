package topicreg

import "strings"

// HasWildcard reports whether name contains an MQTT wildcard character
// ('+' or '#'), i.e. whether it is a filter rather than a topic name.
func HasWildcard(name string) bool {
	return strings.ContainsAny(name, "+#")
}

// validName reports whether name can be used as a concrete MQTT topic name
// (see CheckName).
func validName(name string) bool { return CheckName(name) == Valid }

// ValidFilter reports whether filter is a well-formed MQTT topic filter
// (see CheckFilter).
func ValidFilter(filter string) bool { return CheckFilter(filter) == Valid }

// Match reports whether the MQTT topic name topic matches filter (MQTT
// 3.1.1 §4.7): '+' matches exactly one level (possibly empty), a trailing
// '#' matches the parent level and any number of levels below it, and a
// filter starting with a wildcard does not match a topic starting with '$'
// (such as "$SYS/..."). A malformed filter, or a topic that is empty or
// contains wildcards, matches nothing. Match does not allocate.
func Match(filter, topic string) bool {
	if filter == "" || topic == "" || HasWildcard(topic) {
		return false
	}
	if topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		switch {
		case fl == "#":
			return !fmore
		case fl == "+":
		case strings.ContainsAny(fl, "+#"):
			return false
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore:
			return !tmore
		case !tmore:
			// "a/#" also matches "a".
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}
