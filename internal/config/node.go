package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// prepare walks the document against Config's type before decoding: it
// rejects unknown keys, with the line they are on, and expands environment
// references in scalar values in place. It works on nodes because
// Node.Decode, unlike Decoder, cannot reject unknown keys, and because
// expanding in the source text would let a value inject YAML.
//
// It also checks that every value can be decoded into its field, so that a
// file with several faults reports them all at once, each with its path and
// line: a value of the wrong shape or type is reported and replaced by null
// (the field keeps its default), and decoding goes on. lines maps every
// path that the file spells out to its line, for placing the problems that
// Validate finds later. vars maps each path whose value came from exactly
// one environment variable to that variable's name, so that Validate's
// messages can say which variable to set.
func prepare(root *yaml.Node, lookupEnv func(string) (string, bool)) (errs []error, lines map[string]int, vars map[string]string) {
	w := walker{lookupEnv: lookupEnv, seen: make(map[visit]bool), lines: map[string]int{}, fromEnv: map[*yaml.Node]bool{}, vars: map[string]string{}}
	w.walk(root, reflect.TypeFor[Config](), "")
	return w.errs, w.lines, w.vars
}

type walker struct {
	lookupEnv func(string) (string, bool)
	seen      map[visit]bool
	errs      []error
	lines     map[string]int
	fromEnv   map[*yaml.Node]bool
	vars      map[string]string
}

func (w *walker) fail(n *yaml.Node, path, rule string) {
	w.errs = append(w.errs, &FieldError{Path: path, Rule: rule, Line: n.Line})
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
	if _, ok := w.lines[path]; !ok && path != "" {
		w.lines[path] = n.Line
	}
	v := visit{n, t}
	if n.Kind == yaml.ScalarNode {
		switch t.Kind() {
		case reflect.Struct, reflect.Map, reflect.Slice:
			// An empty value, or one that expands to nothing, is the default.
			if w.expand(n, path) && n.ShortTag() != "!!null" {
				want := "a mapping of keys"
				if t.Kind() == reflect.Slice {
					want = "a list"
				}
				w.fail(n, path, "want "+want+", not a single value")
				nullify(n)
			}
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
		if w.expand(n, path) {
			w.checkType(n, t, path)
		}
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			w.fail(n, path, "want a single value, not a list")
			nullify(n)
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.MappingNode:
		if t.Kind() != reflect.Struct && t.Kind() != reflect.Map {
			w.fail(n, path, "want a single value, not a mapping")
			nullify(n)
			return
		}
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
					w.fail(k, join(path, k.Value), "unknown key")
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

// expand replaces environment references in n; false if that failed (the
// failure is reported).
func (w *walker) expand(n *yaml.Node, path string) bool {
	if !strings.Contains(n.Value, "${") {
		return true
	}
	v, names, err := expandEnv(n.Value, w.lookupEnv)
	if err != nil {
		w.fail(n, path, err.Error())
		nullify(n)
		return false
	}
	if len(names) == 1 {
		w.vars[path] = names[0]
	}
	n.Value = v
	w.fromEnv[n] = true // checkType must not show an expanded value
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
	return true
}

// checkType decodes scalar n into a value of t, as the final decode will,
// and reports a failure with the path and line instead of the decoder's
// pathless message; the node then becomes null so that the final decode
// goes on.
func (w *walker) checkType(n *yaml.Node, t reflect.Type, path string) {
	if n.ShortTag() == "!!null" {
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err == nil {
		return
	}
	val := ""
	// A value from the environment may be a secret, and a Secret field's
	// surely is: never shown.
	if !w.fromEnv[n] && t != reflect.TypeFor[Secret]() {
		val = n.Value
		if r := []rune(val); len(r) > 40 {
			val = string(r[:40]) + "…"
		}
		val = strconv.Quote(val) + " "
	}
	var want string
	switch {
	case t == reflect.TypeFor[time.Duration]():
		want = "a duration such as 90s, 5m or 1h"
	case t.Kind() == reflect.Bool:
		want = "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		want = "a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "a number"
	default:
		want = "a " + t.String()
	}
	w.fail(n, path, val+"is not "+want)
	nullify(n)
}

// nullify turns n into a null scalar: its field keeps the default.
func nullify(n *yaml.Node) {
	n.Kind, n.Tag, n.Value, n.Style, n.Content, n.Alias = yaml.ScalarNode, "!!null", "", 0, nil, nil
}

// expandEnv replaces ${VAR} and ${VAR:-default} in s, and returns the names
// of the variables referenced. The default applies when VAR is unset or
// empty. Errors name the variable, never a value.
func expandEnv(s string, lookupEnv func(string) (string, bool)) (string, []string, error) {
	var b strings.Builder
	var errs, names []string
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
		names = append(names, name)
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
		return "", names, errors.New(strings.Join(errs, "; "))
	}
	return b.String(), names, nil
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
