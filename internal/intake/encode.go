package intake

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/wecomhit/wecomhit"
)

// appendRecord appends cb's JSON to dst: byte for byte what an
// encoding/json Encoder with HTML escaping off writes for it, without the
// trailing newline (TestAppendRecord and FuzzAppendRecord compare the two):
// field order, omitempty, escapes and all. It runs for every callback, where
// the Encoder's reflection, and the Encoder itself, were most of the cost of
// Store apart from the publish. A change to wecomhit.Callback must change
// both this and the tests' generator.
func appendRecord(dst []byte, cb *wecomhit.Callback) ([]byte, error) {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, cb.ID)
	dst = append(dst, `,"app":`...)
	dst = appendString(dst, cb.App)
	dst = append(dst, `,"kind":`...)
	dst = appendString(dst, string(cb.Kind))
	dst = append(dst, `,"format":`...)
	dst = appendString(dst, cb.Format)
	for _, f := range [...]struct{ key, v string }{
		{`,"corp_id":`, cb.CorpID},
		{`,"suite_id":`, cb.SuiteID},
		{`,"token":`, cb.Token},
		{`,"suite_ticket":`, cb.SuiteTicket},
		{`,"auth_code":`, cb.AuthCode},
		{`,"notify_id":`, cb.NotifyID},
	} {
		if f.v != "" {
			dst = append(dst, f.key...)
			dst = appendString(dst, f.v)
		}
	}
	if cb.NotifyScene != 0 {
		dst = append(dst, `,"notify_scene":`...)
		dst = strconv.AppendInt(dst, int64(cb.NotifyScene), 10)
	}
	if cb.EventTime != 0 {
		dst = append(dst, `,"event_time":`...)
		dst = strconv.AppendInt(dst, cb.EventTime, 10)
	}
	dst = append(dst, `,"received_at":"`...)
	// AppendText is MarshalJSON without the quotes: RFC 3339 with
	// nanoseconds, and the same refusal of years outside 0-9999.
	dst, err := cb.ReceivedAt.AppendText(dst)
	if err != nil {
		return nil, fmt.Errorf("received_at: %w", err)
	}
	dst = append(dst, `","raw":`...)
	dst = appendString(dst, cb.Raw)
	return append(dst, '}'), nil
}

// plainASCII marks the ASCII bytes a JSON string holds as they are: not a
// control character, '"' or '\\'. Never written after its initialisation.
var plainASCII = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping off: '"' and '\' escaped, control characters as \b \f \n
// \r \t or \u00XX, invalid UTF-8 as \ufffd, and U+2028 and U+2029
// escaped; '<', '>' and '&' as they are (a record's raw is XML).
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if plainASCII[b] {
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

// recordSize is the length of cb's record when its strings need no
// escapes: the field names, punctuation, a time and two numbers at their
// longest (at most 257 bytes), and the strings.
func recordSize(cb *wecomhit.Callback) int {
	return 260 + len(cb.ID) + len(cb.App) + len(cb.Kind) + len(cb.Format) + len(cb.CorpID) + len(cb.SuiteID) +
		len(cb.Token) + len(cb.SuiteTicket) + len(cb.AuthCode) + len(cb.NotifyID) + len(cb.Raw)
}
