package publish

import (
	"fmt"
	"strconv"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/jsonstr"
)

// appendEvent appends e's JSON to dst: byte for byte what json.Marshal(e)
// gives (TestAppendEvent and FuzzAppendEvent compare the two), field order,
// HTML-safe escaping, null for nil lists and all. It runs once per event,
// where json.Marshal's reflection and its buffer copy were a tenth of
// eventMsg's allocations and most of its time; a change to the event's
// types must change both this and the tests' generator.
func appendEvent(dst []byte, e *wecomhit.HitEvent) ([]byte, error) {
	dst = append(dst, `{"schema":`...)
	dst = jsonstr.Append(dst, e.Schema, true)
	dst = append(dst, `,"app":`...)
	dst = jsonstr.Append(dst, e.App, true)
	dst = append(dst, `,"corp_id":`...)
	dst = jsonstr.Append(dst, e.CorpID, true)
	dst = append(dst, `,"msgid":`...)
	dst = jsonstr.Append(dst, e.MsgID, true)
	dst = append(dst, `,"rule_id":`...)
	dst = jsonstr.Append(dst, e.RuleID, true)
	dst = append(dst, `,"rule_name":`...)
	dst = jsonstr.Append(dst, e.RuleName, true)
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
	dst = jsonstr.Append(dst, e.Source, true)
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
		dst = jsonstr.Append(dst, r.RuleID, true)
		dst = append(dst, `,"rule_name":`...)
		dst = jsonstr.Append(dst, r.RuleName, true)
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
	dst = jsonstr.Append(dst, m.MsgTypeName, true)
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
	dst = jsonstr.Append(dst, m.ChatID, true)
	if k := m.ServiceEncryptInfo; k != nil {
		dst = append(dst, `,"service_encrypt_info":{"encrypted_secret_key":`...)
		dst = jsonstr.Append(dst, k.EncryptedSecretKey, true)
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
		dst = jsonstr.Append(dst, s[i].Name, true)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendParty(dst []byte, p *wecomhit.NamedParty) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(p.Type), 10)
	dst = append(dst, `,"type_name":`...)
	dst = jsonstr.Append(dst, p.TypeName, true)
	dst = append(dst, `,"id":`...)
	dst = jsonstr.Append(dst, p.ID, true)
	return append(dst, '}')
}
