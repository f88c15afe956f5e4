package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	a, err := Parse(strings.NewReader("log:\n  level: info\npredefined_topics:\n  1: a/b\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(strings.NewReader(`
log:
  level: debug
predefined_topics:
  1: a/c
forwarders:
  allow: ["10.0.0.0/8"]
broker:
  url: mqtt://127.0.0.1:1883
dtls:
  bind_identity: false
`))
	if err != nil {
		t.Fatal(err)
	}
	got := Diff(a, b)
	want := []string{"broker.url", "forwarders.allow", "predefined_topics", "log.level", "dtls.bind_identity"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %v, want %v", got, want)
	}
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("Diff of a config with itself: %v", d)
	}
}
