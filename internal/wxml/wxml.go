// Package wxml reads the small, flat XML documents WeCom sends —
// <xml><Name>value</Name>…</xml> — strictly and fast.
//
// It accepts an optional XML declaration, comments, CDATA, character data with
// the five predefined entities and character references, attributes (ignored),
// and nested elements (reported without a value). It rejects DOCTYPE and entity
// declarations, processing instructions other than the declaration, undefined
// entities, invalid UTF-8 and control characters, text outside the root, and
// anything past the root element. Values are substrings of the input, so
// plain text and CDATA cost no allocation; only text with entity references
// is copied. Mapping fields to meaning is left to the caller.
package wxml

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// Errors returned by Parse. ErrDoctype is separate so callers can tell an
// entity-expansion attempt from a merely broken document.
var (
	ErrSyntax  = errors.New("wxml: malformed XML")
	ErrDoctype = errors.New("wxml: DOCTYPE and entity declarations are not allowed")
	ErrEntity  = errors.New("wxml: undefined entity or bad character reference")
	ErrDepth   = errors.New("wxml: elements nested too deeply")
	ErrSize    = errors.New("wxml: document too large")
)

const (
	// MaxDepth bounds nesting below the root so hostile input cannot make us
	// recurse or loop without end.
	MaxDepth = 32
	// MaxSize bounds the document; callbacks are a few hundred bytes.
	MaxSize = 1 << 20
)

// Parse calls visit for each child element of the root, in order, with the
// element's name and its text value. A child with nested elements is visited
// with nested set and an empty value. Parse stops at the first error, from the
// document or from visit, and returns it.
func Parse(doc string, visit func(name, value string, nested bool) error) error {
	if len(doc) > MaxSize {
		return ErrSize
	}
	if !validChars(doc) {
		return ErrSyntax
	}
	p := parser{s: strings.TrimPrefix(doc, "\uFEFF")}
	if err := p.prolog(); err != nil {
		return err
	}
	root, selfClosed, err := p.startTag()
	if err != nil {
		return err
	}
	if !selfClosed {
		if err := p.children(root, visit); err != nil {
			return err
		}
	}
	if err := p.misc(); err != nil {
		return err
	}
	if p.i != len(p.s) {
		return ErrSyntax
	}
	return nil
}

// validChars reports whether s is UTF-8 and free of the control characters
// XML 1.0 forbids. Callbacks are almost all ASCII, so it checks eight bytes
// at a time and looks at single bytes only around control or non-ASCII bytes.
func validChars(s string) bool {
	const (
		lows  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	i := 0
	for {
		for ; i+8 <= len(s); i += 8 {
			w := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
			// Any byte >= 0x80, or any byte < 0x20 (SWAR "has less than").
			if (w|(w-0x20*lows))&highs != 0 {
				break
			}
		}
		if i >= len(s) {
			return true
		}
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError || r == 0xFFFE || r == 0xFFFF {
				return false
			}
			i += n
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
			return false
		default:
			i++
		}
	}
}

type parser struct {
	s string
	i int
}

func (p *parser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) rest() string { return p.s[p.i:] }

// prolog skips the XML declaration, comments and white space before the root.
func (p *parser) prolog() error {
	p.skipSpace()
	if strings.HasPrefix(p.rest(), "<?xml") {
		if err := p.declaration(); err != nil {
			return err
		}
	}
	return p.misc()
}

// declaration reads <?xml version="1.0" encoding="UTF-8" standalone="…"?>.
// Only version 1.0 and UTF-8 are accepted: WeCom sends nothing else, and a
// document that claims another encoding cannot be read as its bytes say.
func (p *parser) declaration() error {
	p.i += len("<?xml")
	seenVersion := false
	for {
		sp := p.i
		p.skipSpace()
		if strings.HasPrefix(p.rest(), "?>") {
			p.i += 2
			if !seenVersion {
				return ErrSyntax
			}
			return nil
		}
		if sp == p.i {
			return ErrSyntax // "<?xml-stylesheet", or attributes run together
		}
		name, value, err := p.attribute()
		if err != nil {
			return err
		}
		switch {
		case name == "version" && value == "1.0" && !seenVersion:
			seenVersion = true
		case name == "encoding" && strings.EqualFold(value, "utf-8") && seenVersion:
		case name == "standalone" && (value == "yes" || value == "no") && seenVersion:
		default:
			return ErrSyntax
		}
	}
}

// misc skips white space and comments; a DOCTYPE or processing instruction is
// an error.
func (p *parser) misc() error {
	for {
		p.skipSpace()
		r := p.rest()
		switch {
		case strings.HasPrefix(r, "<!--"):
			if err := p.comment(); err != nil {
				return err
			}
		case strings.HasPrefix(r, "<!"):
			return p.bang()
		case strings.HasPrefix(r, "<?"):
			return ErrSyntax
		default:
			return nil
		}
	}
}

// bang classifies a "<!" construct that is not a comment or CDATA.
func (p *parser) bang() error {
	r := p.rest()
	if strings.HasPrefix(r, "<!DOCTYPE") || strings.HasPrefix(r, "<!ENTITY") ||
		strings.HasPrefix(r, "<!ELEMENT") || strings.HasPrefix(r, "<!ATTLIST") {
		return ErrDoctype
	}
	return ErrSyntax
}

func (p *parser) comment() error {
	body := p.rest()[len("<!--"):]
	end := strings.Index(body, "--")
	if end < 0 || !strings.HasPrefix(body[end:], "-->") {
		return ErrSyntax
	}
	p.i += len("<!--") + end + len("-->")
	return nil
}

// startTag reads "<name attr='v'…>" or "<name…/>" at p.i.
func (p *parser) startTag() (name string, selfClosed bool, err error) {
	if p.i >= len(p.s) || p.s[p.i] != '<' {
		return "", false, ErrSyntax
	}
	p.i++
	name, err = p.name()
	if err != nil {
		return "", false, err
	}
	for {
		sp := p.i
		p.skipSpace()
		if p.i >= len(p.s) {
			return "", false, ErrSyntax
		}
		switch p.s[p.i] {
		case '>':
			p.i++
			return name, false, nil
		case '/':
			if !strings.HasPrefix(p.rest(), "/>") {
				return "", false, ErrSyntax
			}
			p.i += 2
			return name, true, nil
		}
		if sp == p.i { // attributes must be separated by white space
			return "", false, ErrSyntax
		}
		if _, _, err := p.attribute(); err != nil {
			return "", false, err
		}
	}
}

// attribute reads name="value"; the value must be well formed. Elements'
// attributes are discarded by the caller; WeCom sends none.
func (p *parser) attribute() (name, value string, err error) {
	if name, err = p.name(); err != nil {
		return "", "", err
	}
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '=' {
		return "", "", ErrSyntax
	}
	p.i++
	p.skipSpace()
	if p.i >= len(p.s) || (p.s[p.i] != '"' && p.s[p.i] != '\'') {
		return "", "", ErrSyntax
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", "", ErrSyntax
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.IndexByte(v, '<') >= 0 {
		return "", "", ErrSyntax
	}
	if value, err = unescape(v); err != nil {
		return "", "", err
	}
	p.i += end + 2
	return name, value, nil
}

func (p *parser) name() (string, error) {
	start := p.i
	for p.i < len(p.s) && isNameByte(p.s[p.i], p.i == start) {
		p.i++
	}
	if p.i == start {
		return "", ErrSyntax
	}
	return p.s[start:p.i], nil
}

// endTag expects "</name>" at p.i.
func (p *parser) endTag(name string) error {
	r := p.rest()
	if !strings.HasPrefix(r, "</") || !strings.HasPrefix(r[2:], name) {
		return ErrSyntax
	}
	p.i += 2 + len(name)
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '>' {
		return ErrSyntax
	}
	p.i++
	return nil
}

// children reads the root's content up to and including its end tag.
func (p *parser) children(root string, visit func(name, value string, nested bool) error) error {
	for {
		if err := p.misc(); err != nil {
			return err
		}
		r := p.rest()
		switch {
		case r == "":
			return ErrSyntax
		case strings.HasPrefix(r, "</"):
			return p.endTag(root)
		case r[0] != '<':
			return ErrSyntax // text directly inside the root
		}
		name, selfClosed, err := p.startTag()
		if err != nil {
			return err
		}
		value, nested := "", false
		if !selfClosed {
			if value, nested, err = p.content(name, 1); err != nil {
				return err
			}
		}
		if err := visit(name, value, nested); err != nil {
			return err
		}
	}
}

// content reads an element's content and end tag and returns its value: the
// character data and CDATA sections concatenated, with white space outside
// CDATA trimmed at both ends. One text run or one CDATA section is returned
// as a substring of the input; only mixed or escaped content is copied.
// nested reports child elements, whose content is checked but not returned.
func (p *parser) content(name string, depth int) (value string, nested bool, err error) {
	if depth > MaxDepth {
		return "", false, ErrDepth
	}
	var v valueBuilder
	for {
		r := p.rest()
		lt := strings.IndexByte(r, '<')
		if lt < 0 {
			return "", false, ErrSyntax
		}
		if lt > 0 {
			if err := v.text(r[:lt]); err != nil {
				return "", false, err
			}
			p.i += lt
			r = p.rest()
		}
		switch {
		case strings.HasPrefix(r, "<![CDATA["):
			body := r[len("<![CDATA["):]
			end := strings.Index(body, "]]>")
			if end < 0 {
				return "", false, ErrSyntax
			}
			v.push(body[:end])
			p.i += len("<![CDATA[") + end + len("]]>")
		case strings.HasPrefix(r, "<!--"):
			if err := p.comment(); err != nil {
				return "", false, err
			}
		case strings.HasPrefix(r, "<!"):
			return "", false, p.bang()
		case strings.HasPrefix(r, "<?"):
			return "", false, ErrSyntax
		case strings.HasPrefix(r, "</"):
			if err := p.endTag(name); err != nil {
				return "", false, err
			}
			if nested {
				return "", true, nil
			}
			return v.String(), false, nil
		default:
			child, selfClosed, err := p.startTag()
			if err != nil {
				return "", false, err
			}
			nested = true
			if !selfClosed {
				if _, _, err := p.content(child, depth+1); err != nil {
					return "", false, err
				}
			}
		}
	}
}

// valueBuilder concatenates an element's pieces, copying only when there is
// more than one.
type valueBuilder struct {
	n       int    // pieces pushed
	first   string // the value while n == 1
	buf     []byte // the value once n > 1
	pending []byte // white space held back until another piece follows it;
	// appended to, never concatenated, so many comments between runs of
	// blanks stay linear
}

func (v *valueBuilder) push(s string) {
	s = normalizeEOL(s)
	switch v.n {
	case 0:
		v.first = s
	case 1:
		v.buf = append(append(append(v.buf, v.first...), v.pending...), s...)
	default:
		v.buf = append(append(v.buf, v.pending...), s...)
	}
	v.pending = v.pending[:0]
	v.n++
}

// text adds a run of character data: leading white space is dropped before
// the first piece, trailing white space is held until something follows.
func (v *valueBuilder) text(t string) error {
	if strings.Contains(t, "]]>") {
		return ErrSyntax // only legal as the end of a CDATA section
	}
	if v.n == 0 {
		t = strings.TrimLeft(t, " \t\r\n")
	}
	body := strings.TrimRight(t, " \t\r\n")
	trail := t[len(body):]
	if body != "" {
		u, err := unescape(body)
		if err != nil {
			return err
		}
		v.push(u)
	}
	if v.n > 0 {
		v.pending = append(v.pending, trail...)
	}
	return nil
}

func (v *valueBuilder) String() string {
	if v.n <= 1 {
		return v.first
	}
	return string(v.buf)
}

// normalizeEOL applies XML's end-of-line handling: "\r\n" and a lone "\r"
// become "\n", in text and CDATA alike. Only input with a CR is copied.
func normalizeEOL(s string) string {
	if strings.IndexByte(s, '\r') < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// unescape replaces the five predefined entities and character references.
// Any other "&" is an error: we never expand declared entities.
func unescape(s string) (string, error) {
	amp := strings.IndexByte(s, '&')
	if amp < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for amp >= 0 {
		b = append(b, s[:amp]...)
		s = s[amp:]
		semi := strings.IndexByte(s, ';')
		if semi < 0 {
			return "", ErrEntity
		}
		ref := s[1:semi]
		switch ref {
		case "lt":
			b = append(b, '<')
		case "gt":
			b = append(b, '>')
		case "amp":
			b = append(b, '&')
		case "quot":
			b = append(b, '"')
		case "apos":
			b = append(b, '\'')
		default:
			r, ok := charRef(ref)
			if !ok {
				return "", ErrEntity
			}
			b = utf8.AppendRune(b, r)
		}
		s = s[semi+1:]
		amp = strings.IndexByte(s, '&')
	}
	return string(append(b, s...)), nil
}

func charRef(ref string) (rune, bool) {
	if len(ref) < 2 || ref[0] != '#' {
		return 0, false
	}
	base, digits := 10, ref[1:]
	if digits[0] == 'x' {
		base, digits = 16, digits[1:]
	}
	if digits == "" || digits[0] == '+' || digits[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, false
	}
	r := rune(n)
	valid := r == '\t' || r == '\n' || r == '\r' ||
		(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
	return r, valid
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isNameByte accepts ASCII XML names without namespaces; WeCom's are all
// plain ASCII, and a prefix would need namespace handling we do not want.
func isNameByte(c byte, first bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
		return true
	case '0' <= c && c <= '9', c == '-', c == '.':
		return !first
	}
	return false
}
