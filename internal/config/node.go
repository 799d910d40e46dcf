package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// prepare walks the document against Config's type before decoding: it
// rejects unknown keys, with the line they are on, and expands environment
// references in scalar values in place. It works on nodes because
// Node.Decode, unlike Decoder, cannot reject unknown keys, and because
// expanding in the source text would let a value inject YAML.
func prepare(root *yaml.Node, lookupEnv func(string) (string, bool)) error {
	w := walker{lookupEnv: lookupEnv, seen: make(map[visit]bool)}
	w.walk(root, reflect.TypeFor[Config](), "")
	return errors.Join(w.errs...)
}

type walker struct {
	lookupEnv func(string) (string, bool)
	seen      map[visit]bool
	errs      []error
}

// visit is a node walked as type t. Aliases can reach a node many times, or
// loop back to it through "<<"; each visit happens once. A scalar is visited
// once whatever its type, because expanding twice would expand references
// that came from the environment.
type visit struct {
	n *yaml.Node
	t reflect.Type
}

// walk visits n, which decodes into a value of type t at YAML path path.
// Where the node's kind does not fit t it stops; the decoder reports that
// without the expanded value.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	v := visit{n, t}
	if n.Kind == yaml.ScalarNode {
		switch t.Kind() {
		case reflect.Struct, reflect.Slice, reflect.Map:
			return
		}
		v.t = nil
	}
	if w.seen[v] {
		return
	}
	w.seen[v] = true

	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			w.walk(c, t, path)
		}
	case yaml.AliasNode:
		w.walk(n.Alias, t, path)
	case yaml.ScalarNode:
		w.expand(n, path)
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice {
			for i, c := range n.Content {
				w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				w.walkMerge(v, t, path)
				continue
			}
			switch t.Kind() {
			case reflect.Map:
				w.walk(v, t.Elem(), join(path, k.Value))
			case reflect.Struct:
				f, ok := fieldByKey(t, k.Value)
				if !ok {
					w.errs = append(w.errs, &FieldError{
						Path: join(path, k.Value),
						Rule: "unknown key at line " + strconv.Itoa(k.Line),
					})
					continue
				}
				w.walk(v, f.Type, join(path, k.Value))
			}
		}
	}
}

// walkMerge visits the value of a "<<" key: a mapping, an alias of one, or a
// sequence of those, all merged into the surrounding mapping.
func (w *walker) walkMerge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.SequenceNode {
		for _, c := range v.Content {
			w.walk(c, t, path)
		}
		return
	}
	w.walk(v, t, path)
}

func (w *walker) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	v, err := expandEnv(n.Value, w.lookupEnv)
	if err != nil {
		w.errs = append(w.errs, &FieldError{Path: path, Rule: err.Error()})
		return
	}
	n.Value = v
	if n.Style == 0 {
		// A plain scalar is typed by its value, so resolve it again: the
		// parser typed "${PORT}" as a string, but "8080" is an int. A
		// non-empty value that reads as null ("~", "null") stays a string
		// so that it is not dropped.
		n.Tag = ""
		if v != "" && n.ShortTag() == "!!null" {
			n.Tag = "!!str"
		}
	}
}

// expandEnv replaces ${VAR} and ${VAR:-default} in s. The default applies
// when VAR is unset or empty. Errors name the variable, never a value.
func expandEnv(s string, lookupEnv func(string) (string, bool)) (string, error) {
	var b strings.Builder
	var errs []string
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i+1 == len(s) {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			// Kept, and it keeps a following "{" from starting a reference.
			b.WriteString("$$")
			s = s[i+2:]
			continue
		case '{':
		default:
			b.WriteByte('$')
			s = s[i+1:]
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			errs = append(errs, "unterminated ${ in value")
			break
		}
		name, def, hasDef := strings.Cut(s[i+2:i+2+end], ":-")
		s = s[i+2+end+1:]
		if !envNameRE.MatchString(name) {
			errs = append(errs, "malformed environment variable reference")
			continue
		}
		v, ok := lookupEnv(name)
		switch {
		case hasDef && v == "":
			v = def
		case !ok:
			errs = append(errs, "environment variable "+name+" is not set")
		}
		b.WriteString(v)
	}
	if errs != nil {
		return "", errors.New(strings.Join(errs, "; "))
	}
	return b.String(), nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// fieldByKey finds the field of struct type t whose yaml tag names key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
