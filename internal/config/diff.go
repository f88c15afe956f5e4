package config

import (
	"reflect"
	"strings"
)

// Diff lists the keys whose values differ between a and b, dotted as in
// the file ("log.level", "broker.url", "predefined_topics"), in the
// order of File's fields.
func Diff(a, b *File) []string {
	var out []string
	diff(reflect.ValueOf(*a), reflect.ValueOf(*b), nil, &out)
	return out
}

func diff(a, b reflect.Value, path []string, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		key := yamlKey(t.Field(i))
		if key == "" {
			continue
		}
		p := append(path[:len(path):len(path)], key)
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct && t.Field(i).Type.PkgPath() == "" {
			diff(fa, fb, p, out) // an anonymous section
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*out = append(*out, strings.Join(p, "."))
		}
	}
}
