package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestConfigurationReference: docs/configuration.md has a row for every
// key the cache and origin configurations accept — found by walking the
// structs' yaml tags, the way the decoder does — and no row for a key
// they do not accept.
func TestConfigurationReference(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	cachePart, originPart, ok := strings.Cut(string(doc), "\n## origin.yml")
	if !ok {
		t.Fatal("docs/configuration.md has no '## origin.yml' section")
	}
	for _, tt := range []struct {
		file string
		typ  reflect.Type
		doc  string
	}{{"cache.yml", reflect.TypeOf(Cache{}), cachePart}, {"origin.yml", reflect.TypeOf(Origin{}), originPart}} {
		t.Run(tt.file, func(t *testing.T) {
			accepted := acceptedKeys(tt.typ, "")
			documented := documentedKeys(tt.doc)
			for _, k := range accepted {
				if !slices.Contains(documented, k) {
					t.Errorf("%s accepts %s, which docs/configuration.md does not describe", tt.file, k)
				}
			}
			for _, k := range documented {
				if !slices.Contains(accepted, k) {
					t.Errorf("docs/configuration.md describes %s, which %s does not accept", k, tt.file)
				}
			}
			if len(accepted) < 40 {
				t.Fatalf("only %d keys found in %s: the walk is broken", len(accepted), tt.typ)
			}
		})
	}
}

var rowRE = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")

// documentedKeys are the first-column keys of the tables in doc.
func documentedKeys(doc string) []string {
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(doc, -1) {
		out = append(out, m[1])
	}
	return out
}

// acceptedKeys lists the keys a configuration type takes: dotted paths
// by yaml tag, "[]" for the items of a list of sections, ".<name>" for
// the entries of a map of sections. Scalars, lists of scalars, maps of
// scalars, values of their own syntax (sizes, durations) and sections
// taken as they are (yaml.Node) are leaves.
func acceptedKeys(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	leaf := []string{prefix}
	if t == nodeType || reflect.PointerTo(t).Implements(textType) {
		return leaf
	}
	switch t.Kind() {
	case reflect.Struct:
		var out []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if strings.Contains(opts, "inline") {
				out = append(out, acceptedKeys(f.Type, prefix)...)
				continue
			}
			out = append(out, acceptedKeys(f.Type, strings.TrimPrefix(prefix+"."+name, "."))...)
		}
		return out
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return acceptedKeys(t.Elem(), prefix+"[]")
		}
	case reflect.Map:
		if e := t.Elem(); e.Kind() == reflect.Struct || e.Kind() == reflect.Slice && e.Elem().Kind() == reflect.Struct {
			return acceptedKeys(e, prefix+".<name>")
		}
	}
	return leaf
}
