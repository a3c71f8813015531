package config

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Decoding a configuration file so that every problem of its shape and
// values is reported at once, each with its key and line. yaml.v3 stops at
// the first value a type's UnmarshalText refuses (a size, a duration), and
// names no key in its messages; so the document is first walked against
// the configuration's Go type — each key looked up by its yaml tag, each
// scalar decoded on its own — and every entry found wrong is reported and
// taken out, then what is left is decoded.

// decodeStrict decodes YAML into v (a pointer to a struct). A syntax
// error stops it (the file is not YAML); otherwise it decodes every good
// value and returns the problems of the others as Problems, each
// "key: message (line N)": unknown keys, values of the wrong kind, sizes
// and durations that do not parse.
func decodeStrict(data []byte, v any, file string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config %s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil // an empty document
	}
	var p Problems
	checkNode(&p, doc.Content[0], reflect.TypeOf(v).Elem(), "")
	if err := doc.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		p = append(p, strings.TrimSpace(yamlPrefixRE.ReplaceAllString(err.Error(), "")))
	}
	return p.Err()
}

var yamlPrefixRE = regexp.MustCompile(`^yaml: (unmarshal errors:\n\s*)?`)

var (
	nodeType      = reflect.TypeOf(yaml.Node{})
	textType      = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
	unmarshalType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// checkNode reports what in n does not fit t, at key, and removes it from
// its mapping or sequence so the rest decodes.
func checkNode(p *Problems, n *yaml.Node, t reflect.Type, key string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // unset: the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == nodeType || t.Kind() == reflect.Interface:
		return // anything goes
	case reflect.PointerTo(t).Implements(unmarshalType), reflect.PointerTo(t).Implements(textType):
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			p.Add(key, "%s (line %d)", valueMessage(err), n.Line)
			markBad(n)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if !wantKind(p, n, yaml.MappingNode, "a map of keys", key) {
			return
		}
		fields, rest := structKeys(t)
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok && rest != nil {
				ft, ok = rest, true
			}
			if !ok {
				p.Add(join(key, k.Value), "unknown key %q (line %d)", k.Value, k.Line)
				continue
			}
			checkNode(p, val, ft, join(key, k.Value))
			if !isBad(val) {
				kept = append(kept, k, val)
			}
		}
		n.Content = kept
	case reflect.Map:
		if !wantKind(p, n, yaml.MappingNode, "a map", key) {
			return
		}
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkNode(p, n.Content[i+1], t.Elem(), join(key, n.Content[i].Value))
			if !isBad(n.Content[i+1]) {
				kept = append(kept, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = kept
	case reflect.Slice, reflect.Array:
		if !wantKind(p, n, yaml.SequenceNode, "a list", key) {
			return
		}
		kept := n.Content[:0]
		for i, e := range n.Content {
			checkNode(p, e, t.Elem(), fmt.Sprintf("%s[%d]", key, i))
			if !isBad(e) {
				kept = append(kept, e)
			}
		}
		n.Content = kept
	default:
		if !wantKind(p, n, yaml.ScalarNode, scalarWant(t), key) {
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			p.Add(key, "want %s, got %q (line %d)", scalarWant(t), n.Value, n.Line)
			markBad(n)
		}
	}
}

// wantKind reports whether n is of kind k, and reports and marks it if not.
func wantKind(p *Problems, n *yaml.Node, k yaml.Kind, what, key string) bool {
	if n.Kind == k {
		return true
	}
	got := map[yaml.Kind]string{yaml.MappingNode: "a map", yaml.SequenceNode: "a list", yaml.ScalarNode: strconv.Quote(n.Value)}[n.Kind]
	p.Add(key, "want %s, got %s (line %d)", what, got, n.Line)
	markBad(n)
	return false
}

// badTag marks a node checkNode reported, for its parent to drop.
const badTag = "!dtrcache-bad"

func markBad(n *yaml.Node)      { n.Tag = badTag }
func isBad(n *yaml.Node) bool   { return n.Tag == badTag }
func join(key, k string) string { return strings.TrimPrefix(key+"."+k, ".") }

// scalarWant describes the scalar a kind takes.
func scalarWant(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a string"
}

// valueMessage is the message of a value's own parser, without yaml.v3's
// framing.
func valueMessage(err error) string {
	msg := yamlPrefixRE.ReplaceAllString(err.Error(), "")
	return strings.TrimSpace(regexp.MustCompile(`^line \d+: `).ReplaceAllString(msg, ""))
}

// structKeys returns the keys a struct takes (its yaml tags, inline
// structs' keys included) with their types, and the element type of an
// inline map that takes any other key (nil without one).
func structKeys(t reflect.Type) (map[string]reflect.Type, reflect.Type) {
	keys := map[string]reflect.Type{}
	var rest reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Map {
				rest = ft.Elem()
				continue
			}
			inner, innerRest := structKeys(ft)
			for k, v := range inner {
				keys[k] = v
			}
			if innerRest != nil {
				rest = innerRest
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys[name] = f.Type
	}
	return keys, rest
}
