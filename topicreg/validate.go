package topicreg

import (
	"strings"
	"unicode/utf8"
)

// MaxTopicLen is the longest topic name or filter MQTT can carry: its
// strings have a 2-octet length (MQTT 3.1.1 §1.5.3).
const MaxTopicLen = 65535

// Violation says which of MQTT's rules a topic name or filter breaks
// (MQTT 3.1.1 §1.5.3, §4.7; MQTT 5.0 §1.5.4, §4.7). A broker drops the
// connection of a client that sends one, so the gateway must refuse it
// first. Valid is the zero value.
type Violation uint8

// Violations.
const (
	Valid           Violation = iota
	Empty                     // zero octets
	TooLong                   // more than MaxTopicLen octets
	NullChar                  // U+0000
	InvalidUTF8               // not UTF-8, or a UTF-16 surrogate
	BadCodePoint              // a control character (U+0001-U+001F, U+007F-U+009F) or a non-character
	WildcardInName            // '+' or '#' in a topic name
	MalformedFilter           // '#' not alone in the last level, or '+' not alone in its level
	violations
)

var violationNames = [...]string{"valid", "empty", "too_long", "null_char", "invalid_utf8", "bad_code_point", "wildcard_in_name", "malformed_filter"} //nolint:gochecknoglobals // constant table

func (v Violation) String() string {
	if int(v) < len(violationNames) {
		return violationNames[v]
	}
	return "unknown"
}

// Violations lists every Violation other than Valid, for metrics.
func Violations() []Violation {
	out := make([]Violation, 0, violations-1)
	for v := Valid + 1; v < violations; v++ {
		out = append(out, v)
	}
	return out
}

// CheckName checks a topic name (PUBLISH, will topic): it must be a valid
// string and contain no wildcard, whatever topic id type carried it (a
// short name "/#" is a name too, spec §6.7). CheckName does not allocate.
func CheckName(name string) Violation {
	if v := checkString(name); v != Valid {
		return v
	}
	if HasWildcard(name) {
		return WildcardInName
	}
	return Valid
}

// CheckFilter checks a topic filter (SUBSCRIBE, UNSUBSCRIBE): a valid
// string where '+' is a whole level and '#' is the whole last level.
// CheckFilter does not allocate.
func CheckFilter(filter string) Violation {
	if v := checkString(filter); v != Valid {
		return v
	}
	for {
		level, rest, more := strings.Cut(filter, "/")
		switch {
		case level == "#":
			if more {
				return MalformedFilter
			}
			return Valid
		case level == "+":
		case strings.ContainsAny(level, "+#"):
			return MalformedFilter
		}
		if !more {
			return Valid
		}
		filter = rest
	}
}

// checkString applies the rules for every MQTT UTF-8 string that is a
// topic.
func checkString(s string) Violation {
	switch {
	case s == "":
		return Empty
	case len(s) > MaxTopicLen:
		return TooLong
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == 0:
				return NullChar
			case c < 0x20 || c == 0x7F:
				return BadCodePoint
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return InvalidUTF8 // Go's decoder also refuses surrogates
		}
		if (r >= 0x80 && r <= 0x9F) || (r >= 0xFDD0 && r <= 0xFDEF) || r&0xFFFE == 0xFFFE {
			return BadCodePoint
		}
		i += n
	}
	return Valid
}
