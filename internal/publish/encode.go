package publish

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/wecomhit/wecomhit"
)

// appendEvent appends e's JSON to dst: byte for byte what json.Marshal(e)
// gives (TestAppendEvent and FuzzAppendEvent compare the two), field order,
// HTML-safe escaping, null for nil lists and all. It runs once per event,
// where json.Marshal's reflection and its buffer copy were a tenth of
// eventMsg's allocations and most of its time; a change to the event's
// types must change both this and the tests' generator.
func appendEvent(dst []byte, e *wecomhit.HitEvent) ([]byte, error) {
	dst = append(dst, `{"schema":`...)
	dst = appendString(dst, e.Schema)
	dst = append(dst, `,"app":`...)
	dst = appendString(dst, e.App)
	dst = append(dst, `,"corp_id":`...)
	dst = appendString(dst, e.CorpID)
	dst = append(dst, `,"msgid":`...)
	dst = appendString(dst, e.MsgID)
	dst = append(dst, `,"rule_id":`...)
	dst = appendString(dst, e.RuleID)
	dst = append(dst, `,"rule_name":`...)
	dst = appendString(dst, e.RuleName)
	dst = append(dst, `,"has_hit_keyword":`...)
	dst = strconv.AppendBool(dst, e.HasHitKeyword)
	dst = append(dst, `,"semantics":`...)
	dst = appendSemantics(dst, e.Semantics)
	dst = append(dst, `,"rules":`...)
	dst = appendRules(dst, e.Rules)
	if m := e.Message; m != nil {
		dst = append(dst, `,"message":`...)
		dst = appendMessage(dst, m)
	}
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, e.Source)
	dst = append(dst, `,"used_hit_token":`...)
	dst = strconv.AppendBool(dst, e.UsedHitToken)
	dst = append(dst, `,"fetched_at":"`...)
	// AppendText is MarshalJSON without the quotes: RFC 3339 with
	// nanoseconds, and the same refusal of years outside 0-9999.
	dst, err := e.FetchedAt.AppendText(dst)
	if err != nil {
		return nil, fmt.Errorf("fetched_at: %w", err)
	}
	return append(dst, `"}`...), nil
}

// appendRules appends the rules an event's message hit, null for none.
func appendRules(dst []byte, rules []wecomhit.RuleMatch) []byte {
	if rules == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i := range rules {
		if i > 0 {
			dst = append(dst, ',')
		}
		r := &rules[i]
		dst = append(dst, `{"rule_id":`...)
		dst = appendString(dst, r.RuleID)
		dst = append(dst, `,"rule_name":`...)
		dst = appendString(dst, r.RuleName)
		dst = append(dst, `,"has_hit_keyword":`...)
		dst = strconv.AppendBool(dst, r.HasHitKeyword)
		dst = append(dst, `,"semantics":`...)
		dst = appendSemantics(dst, r.Semantics)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// appendMessage appends the hit message an event carries, as an object.
func appendMessage(dst []byte, m *wecomhit.Message) []byte {
	dst = append(dst, `{"msgtype":`...)
	dst = strconv.AppendInt(dst, int64(m.MsgType), 10)
	dst = append(dst, `,"msgtype_name":`...)
	dst = appendString(dst, m.MsgTypeName)
	dst = append(dst, `,"send_time":`...)
	dst = strconv.AppendInt(dst, m.SendTime, 10)
	dst = append(dst, `,"sender":`...)
	dst = appendParty(dst, &m.Sender)
	dst = append(dst, `,"receivers":`...)
	if m.Receivers == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range m.Receivers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendParty(dst, &m.Receivers[i])
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"chat_id":`...)
	dst = appendString(dst, m.ChatID)
	if k := m.ServiceEncryptInfo; k != nil {
		dst = append(dst, `,"service_encrypt_info":{"encrypted_secret_key":`...)
		dst = appendString(dst, k.EncryptedSecretKey)
		dst = append(dst, `,"public_key_ver":`...)
		dst = strconv.AppendInt(dst, int64(k.PublicKeyVer), 10)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

func appendSemantics(dst []byte, s []wecomhit.Semantic) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"code":`...)
		dst = strconv.AppendInt(dst, int64(s[i].Code), 10)
		dst = append(dst, `,"name":`...)
		dst = appendString(dst, s[i].Name)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendParty(dst []byte, p *wecomhit.NamedParty) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(p.Type), 10)
	dst = append(dst, `,"type_name":`...)
	dst = appendString(dst, p.TypeName)
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, p.ID)
	return append(dst, '}')
}

// appendString appends s as a JSON string the way encoding/json does by
// default: '"' and '\' escaped, control characters as \b \f \n \r \t or
// \u00XX, '<' '>' '&' as \u00XX (HTML-safe), invalid UTF-8 as \ufffd, and
// U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
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
