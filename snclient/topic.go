package snclient

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mqttsn-gateway/mqttsn-gateway/snpacket"
	"github.com/mqttsn-gateway/mqttsn-gateway/topicreg"
)

// predefinedPrefix starts the pseudo topic names of PredefinedID. MQTT
// topic names cannot contain U+0000, so these never collide with a name.
const predefinedPrefix = "\x00predefined:"

// PredefinedID returns a pseudo topic name that stands for the predefined
// topic id in Publish, Subscribe and Unsubscribe, for ids the client has no
// name for in Options.Predefined. Messages on such an id carry it as their
// Topic.
func PredefinedID(id uint16) string {
	return predefinedPrefix + strconv.Itoa(int(id))
}

// ParsePredefinedID reports whether topic was made by PredefinedID, and
// its id.
func ParsePredefinedID(topic string) (uint16, bool) {
	s, ok := strings.CutPrefix(topic, predefinedPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || strconv.Itoa(int(n)) != s {
		return 0, false
	}
	return uint16(n), true
}

// topicLabel names a topic in error texts: quoted, or "predefined topic
// id 7" for a PredefinedID pseudo-name (whose U+0000 would otherwise show
// as "\x00predefined:7").
func topicLabel(topic string) string {
	if id, ok := ParsePredefinedID(topic); ok {
		return "predefined topic id " + strconv.Itoa(int(id))
	}
	return strconv.Quote(topic)
}

func isPredefinedID(topic string) bool {
	_, ok := ParsePredefinedID(topic)
	return ok
}

// validTopicName reports whether name can be published to: non-empty,
// valid UTF-8, without wildcards or U+0000.
func validTopicName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "+#\x00") && utf8.ValidString(name)
}

// subscription is one Subscribe call's filter and handler, owned by the
// protocol loop.
type subscription struct {
	filter  string // as given to Subscribe
	name    string // topic name to match by (the predefined name, or filter)
	idType  snpacket.TopicIDType
	id      uint16 // predefined or short id
	handler Handler
}

// matches reports whether a message on (tt, id, name) is for s.
func (s *subscription) matches(tt snpacket.TopicIDType, id uint16, name string) bool {
	if s.idType == snpacket.TopicPredefined && tt == snpacket.TopicPredefined && s.id == id {
		return true
	}
	if isPredefinedID(name) || isPredefinedID(s.name) {
		return name == s.name
	}
	return s.name == name || topicreg.Match(s.name, name)
}
