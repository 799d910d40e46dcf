// Package jsonstr appends Go strings as JSON strings, byte for byte as
// encoding/json writes them, without reflection or allocation. It is the
// one string escaper of the hand-written encoders of records (intake,
// HTML escaping off, since a record's raw field is XML) and of hit events
// (publish, HTML escaping on, as json.Marshal does). It encodes nothing
// but strings; the encoders own their documents' shape.
package jsonstr

import "unicode/utf8"

// plain[html][b] marks the ASCII bytes a JSON string holds as they are:
// not a control character, '"' or '\\', and, with HTML escaping, not '<',
// '>' or '&'. Never written after its initialisation.
var plain = func() (t [2][utf8.RuneSelf]bool) {
	for b := byte(0x20); b < utf8.RuneSelf; b++ {
		t[0][b] = b != '"' && b != '\\'
		t[1][b] = t[0][b] && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// Append appends s to dst as a JSON string the way encoding/json does:
// '"' and '\' escaped, control characters as \b \f \n \r \t or \u00XX,
// invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped, and, when html is
// true (json.Marshal's default; an Encoder's SetEscapeHTML), '<', '>' and
// '&' as \u003c, \u003e and \u0026.
func Append(dst []byte, s string, html bool) []byte {
	const hex = "0123456789abcdef"
	table := &plain[0]
	if html {
		table = &plain[1]
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if table[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
