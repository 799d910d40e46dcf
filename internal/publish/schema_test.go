package publish_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// goodEvent is a valid event as the publisher makes it, as a JSON object to
// break: rule r1 (a key behaviour) of a message that also hit r2 (a word).
func goodEvent(t *testing.T) map[string]any {
	t.Helper()
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourcePoll, UsedHitToken: true,
		FetchedAt: time.Date(2026, 11, 21, 5, 40, 0, 123456789, time.UTC)}
	evs, err := publish.Normalize(o, &wecomhit.HitMessage{MsgID: "m1", HitRules: []wecomhit.HitRule{
		{RuleID: "r1", SemanticsList: []int{2, 3}},
		{RuleID: "r2", HasHitKeyword: true},
	}, Detail: &wecomhit.MsgDetail{
		Sender:       wecomhit.Party{Type: 1, ID: "woEmp"},
		ReceiverList: []wecomhit.Party{{Type: 2, ID: "wmCust"}, {Type: 1, ID: "woOther"}},
		SendTime:     1717000000, MsgType: 1,
		ServiceEncryptInfo: &wecomhit.ServiceEncryptInfo{EncryptedSecretKey: "k", PublicKeyVer: 2},
	}}, nil)
	require.NoError(t, err)
	data, err := json.Marshal(evs[0])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	return m
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	return data
}

// obj and list walk into a decoded event.
func obj(v any, keys ...any) map[string]any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(map[string]any)
}

// TestSchema_RejectsBrokenEvents feeds the schema the broken copies of real
// events that issue 13 listed, and more of each kind; every one must fail.
func TestSchema_RejectsBrokenEvents(t *testing.T) {
	c := hittest.New(t)
	require.NoError(t, c.Check(encode(t, goodEvent(t))), "the unbroken event is valid")

	msg := func(e map[string]any) map[string]any { return obj(e, "message") }
	for name, breakIt := range map[string]func(e map[string]any){
		"SemanticCodeWithAnothersName":  func(e map[string]any) { obj(e, "semantics", 0)["name"] = "email" },
		"SemanticKnownCodeNamedUnknown": func(e map[string]any) { obj(e, "semantics", 0)["name"] = "unknown" },
		"SemanticUnknownCodeWithAName": func(e map[string]any) {
			obj(e, "semantics", 0)["code"] = 99
		},
		"RulesSemanticWrongName":     func(e map[string]any) { obj(e, "rules", 0, "semantics", 1)["name"] = "mobile" },
		"MsgType1NamedImage":         func(e map[string]any) { msg(e)["msgtype_name"] = "image" },
		"MsgTypeUnknownNamedText":    func(e map[string]any) { msg(e)["msgtype"] = 3 },
		"MsgTypeKnownNamedUnknown":   func(e map[string]any) { msg(e)["msgtype_name"] = "unknown" },
		"SenderType1NamedRobot":      func(e map[string]any) { obj(e, "message", "sender")["type_name"] = "robot" },
		"ReceiverType2NamedEmployee": func(e map[string]any) { obj(e, "message", "receivers", 0)["type_name"] = "employee" },
		"PartyTypeUnknownNamedRobot": func(e map[string]any) { obj(e, "message", "sender")["type"] = 7 },
		"FetchedAtYesterday":         func(e map[string]any) { e["fetched_at"] = "yesterday" },
		"FetchedAtWithOffset":        func(e map[string]any) { e["fetched_at"] = "2026-11-21T13:40:00.123+08:00" },
		"FetchedAtZeroOffset":        func(e map[string]any) { e["fetched_at"] = "2026-11-21T05:40:00.123+00:00" },
		"FetchedAtWithoutZone":       func(e map[string]any) { e["fetched_at"] = "2026-11-21T05:40:00" },
		"FetchedAtMonth13":           func(e map[string]any) { e["fetched_at"] = "2026-13-21T05:40:00Z" },
		"FetchedAtDateOnly":          func(e map[string]any) { e["fetched_at"] = "2026-11-21" },
		"NoKeywordNoSemantics":       func(e map[string]any) { e["semantics"] = []any{} },
		"RulesEntryNoKeywordNoSemantics": func(e map[string]any) {
			obj(e, "rules", 1)["has_hit_keyword"] = false
		},
		"MsgIDOver256":         func(e map[string]any) { e["msgid"] = strings.Repeat("m", 257) },
		"MsgIDEmpty":           func(e map[string]any) { e["msgid"] = "" },
		"MsgIDNewline":         func(e map[string]any) { e["msgid"] = "m1\r\nX-Evil: 1" },
		"RuleIDDelete":         func(e map[string]any) { e["rule_id"] = "r\x7f1" },
		"RuleIDOver256":        func(e map[string]any) { e["rule_id"] = strings.Repeat("r", 257) },
		"RulesRuleIDControl":   func(e map[string]any) { obj(e, "rules", 1)["rule_id"] = "r\x002" },
		"CorpIDTab":            func(e map[string]any) { e["corp_id"] = "ww\tCorp" },
		"CorpIDEmpty":          func(e map[string]any) { e["corp_id"] = "" },
		"AppWithSpace":         func(e map[string]any) { e["app"] = "my app" },
		"AppWithDot":           func(e map[string]any) { e["app"] = "my.app" },
		"AppEmpty":             func(e map[string]any) { e["app"] = "" },
		"AppOver64":            func(e map[string]any) { e["app"] = strings.Repeat("a", 65) },
		"AppNotASCII":          func(e map[string]any) { e["app"] = "归档" },
		"SenderIDEmpty":        func(e map[string]any) { obj(e, "message", "sender")["id"] = "" },
		"ReceiverIDEmpty":      func(e map[string]any) { obj(e, "message", "receivers", 1)["id"] = "" },
		"SendTimeNegative":     func(e map[string]any) { msg(e)["send_time"] = -1 },
		"SendTimeFraction":     func(e map[string]any) { msg(e)["send_time"] = 1.5 },
		"PublicKeyVerNegative": func(e map[string]any) { obj(e, "message", "service_encrypt_info")["public_key_ver"] = -2 },
		"SemanticCode0":        func(e map[string]any) { e["semantics"] = []any{map[string]any{"code": 0, "name": "unknown"}} },
		"SemanticCodeNegative": func(e map[string]any) { e["semantics"] = []any{map[string]any{"code": -3, "name": "unknown"}} },
		"SemanticsDuplicate":   func(e map[string]any) { e["semantics"] = append(e["semantics"].([]any), obj(e, "semantics", 0)) },
		"RulesDuplicate":       func(e map[string]any) { e["rules"] = append(e["rules"].([]any), obj(e, "rules", 1)) },
		"RulesEmpty":           func(e map[string]any) { e["rules"] = []any{} },
		"ReceiversDuplicate": func(e map[string]any) {
			msg(e)["receivers"] = append(msg(e)["receivers"].([]any), obj(e, "message", "receivers", 0))
		},
		"SourceUnknown":          func(e map[string]any) { e["source"] = "token" },
		"UsedHitTokenNotBoolean": func(e map[string]any) { e["used_hit_token"] = "yes" },
		"SchemaOtherVersion":     func(e map[string]any) { e["schema"] = "wecom.hit.v2" },
		"UnknownField":           func(e map[string]any) { e["extra"] = 1 },
		"UnknownMessageField":    func(e map[string]any) { msg(e)["content"] = "secret" },
		"RuleNameMissing":        func(e map[string]any) { delete(e, "rule_name") },
	} {
		t.Run(name, func(t *testing.T) {
			e := goodEvent(t)
			breakIt(e)
			assert.Error(t, c.Schema(encode(t, e)))
		})
	}

	// What JSON Schema cannot say: the schema lets these through and the Go
	// check (as docs/events.md states) rejects them.
	for name, breakIt := range map[string]func(e map[string]any){
		"RuleIDNotInRules": func(e map[string]any) { e["rule_id"] = "r9" },
		"EventDiffersFromItsRulesEntry": func(e map[string]any) {
			obj(e, "rules", 0)["rule_name"] = "another name"
		},
		"RulesRepeatARuleID": func(e map[string]any) {
			r := obj(e, "rules", 1)
			e["rules"] = append(e["rules"].([]any), map[string]any{"rule_id": r["rule_id"], "rule_name": "x", "has_hit_keyword": true, "semantics": []any{}})
		},
		"MsgIDOver256Bytes": func(e map[string]any) { e["msgid"] = strings.Repeat("消", 100) },
	} {
		t.Run("BeyondSchema/"+name, func(t *testing.T) {
			e := goodEvent(t)
			breakIt(e)
			data := encode(t, e)
			require.NoError(t, c.Schema(data), "JSON Schema cannot express this")
			assert.Error(t, c.Check(data))
		})
	}
}

// TestSchema_NamesFollowHit: the schema's code↔name tables are the ones in
// hit.go. Every code gets its own name accepted and every other name
// refused, so a code added to hit.go but not to the schema fails here.
func TestSchema_NamesFollowHit(t *testing.T) {
	c := hittest.New(t)
	codes := []int{99, 100, 255, 1000, 1 << 30}
	for i := -2; i <= 40; i++ {
		codes = append(codes, i)
	}
	collect := func(f func(int) string) []string {
		names := map[string]bool{wecomhit.Unknown: true, "": true}
		for _, c := range codes {
			names[f(c)] = true
		}
		out := make([]string, 0, len(names))
		for n := range names {
			out = append(out, n)
		}
		return out
	}
	message := obj(goodEvent(t), "message")
	for _, tc := range []struct {
		name    string
		named   func(int) string
		pointer string // the part of the schema with the pairs
		value   func(code int, name string) any
		min     int
	}{
		{"Semantics", wecomhit.SemanticName, "/$defs/semantics", func(code int, name string) any {
			return []any{map[string]any{"code": code, "name": name}}
		}, 1},
		{"MsgType", wecomhit.MsgTypeName, "/properties/message", func(code int, name string) any {
			m := maps.Clone(message)
			m["msgtype"], m["msgtype_name"] = code, name
			return m
		}, -1 << 31},
		{"PartyType", wecomhit.PartyTypeName, "/$defs/party", func(code int, name string) any {
			return map[string]any{"type": code, "type_name": name, "id": "wo1"}
		}, -1 << 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			validate := c.Part(t, tc.pointer)
			names := collect(tc.named)
			for _, code := range codes {
				for _, name := range names {
					err := validate(encode(t, tc.value(code, name)))
					if code >= tc.min && name == tc.named(code) {
						require.NoError(t, err, "code %d named %q", code, name)
					} else {
						require.Error(t, err, "code %d named %q", code, name)
					}
				}
			}
		})
	}
}

// TestNormalize_KeepsContract generates hit messages, some broken in each
// way the contract forbids, some merely odd (repeats, unknown codes, long
// non-ASCII ids): every broken one is refused with ErrInvalidRecord, and
// every event of the others keeps the whole contract, schema and Go rules.
func TestNormalize_KeepsContract(t *testing.T) {
	c := hittest.New(t)
	rng := rand.New(rand.NewPCG(13, 13))
	id := func(prefix string) string {
		switch rng.IntN(10) {
		case 0:
			return prefix + strings.Repeat("长", 80) // 240+ bytes, 80+ characters
		case 1:
			return prefix + " with.odd*chars>"
		default:
			return fmt.Sprintf("%s%d", prefix, rng.IntN(1000))
		}
	}
	good := func() wecomhit.HitMessage {
		m := wecomhit.HitMessage{MsgID: id("m")}
		for range 1 + rng.IntN(4) {
			r := wecomhit.HitRule{RuleID: id("r"), HasHitKeyword: rng.IntN(2) == 0}
			for range rng.IntN(4) {
				r.SemanticsList = append(r.SemanticsList, 1+rng.IntN(14)) // repeats and unknown codes
			}
			if !r.HasHitKeyword && len(r.SemanticsList) == 0 {
				r.SemanticsList = []int{2}
			}
			m.HitRules = append(m.HitRules, r)
		}
		if rng.IntN(5) == 0 {
			m.HitRules = append(m.HitRules, m.HitRules[0]) // a repeated rule
		}
		if rng.IntN(6) == 0 {
			return m // no detail
		}
		d := &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: rng.IntN(5), ID: id("wo")},
			SendTime: rng.Int64N(2e9), MsgType: rng.IntN(25)}
		for range rng.IntN(24) { // repeats above and below the scan limit
			d.ReceiverList = append(d.ReceiverList, wecomhit.Party{Type: 1 + rng.IntN(3), ID: fmt.Sprintf("wm%d", rng.IntN(30))})
		}
		if rng.IntN(2) == 0 {
			d.ServiceEncryptInfo = &wecomhit.ServiceEncryptInfo{EncryptedSecretKey: "k", PublicKeyVer: rng.IntN(3)}
		}
		m.Detail = d
		return m
	}
	withDetail := func(m *wecomhit.HitMessage) *wecomhit.MsgDetail {
		if m.Detail == nil {
			m.Detail = &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "wo"}}
		}
		return m.Detail
	}
	breaks := []func(m *wecomhit.HitMessage){
		func(m *wecomhit.HitMessage) { m.MsgID = "" },
		func(m *wecomhit.HitMessage) { m.MsgID = strings.Repeat("m", 257) },
		func(m *wecomhit.HitMessage) { m.MsgID = strings.Repeat("长", 86) }, // 258 bytes, 86 characters
		func(m *wecomhit.HitMessage) { m.MsgID += "\n" },
		func(m *wecomhit.HitMessage) { m.HitRules = nil },
		func(m *wecomhit.HitMessage) { m.HitRules[0].RuleID = "" },
		func(m *wecomhit.HitMessage) { m.HitRules[0].RuleID = "r\x7f" },
		func(m *wecomhit.HitMessage) { m.HitRules[0].HasHitKeyword, m.HitRules[0].SemanticsList = false, nil },
		func(m *wecomhit.HitMessage) { m.HitRules[0].SemanticsList = append(m.HitRules[0].SemanticsList, 0) },
		func(m *wecomhit.HitMessage) { m.HitRules[0].SemanticsList = append(m.HitRules[0].SemanticsList, -4) },
		func(m *wecomhit.HitMessage) { withDetail(m).Sender.ID = "" },
		func(m *wecomhit.HitMessage) {
			d := withDetail(m)
			d.ReceiverList = append(d.ReceiverList, wecomhit.Party{Type: 2})
		},
		func(m *wecomhit.HitMessage) { withDetail(m).SendTime = -1 },
		func(m *wecomhit.HitMessage) {
			withDetail(m).ServiceEncryptInfo = &wecomhit.ServiceEncryptInfo{PublicKeyVer: -1}
		},
	}
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	var accepted, refused int
	for i := range 300 {
		m := good()
		broken := i%3 == 0
		if broken {
			breaks[(i/3)%len(breaks)](&m)
		}
		evs, err := publish.Normalize(o, &m, nil)
		if broken {
			require.ErrorIs(t, err, publish.ErrInvalidRecord, "message %d: %+v", i, m)
			refused++
			continue
		}
		require.NoError(t, err, "message %d: %+v", i, m)
		for _, ev := range evs {
			require.NoError(t, c.Check(encode(t, ev)), "message %d", i)
		}
		accepted++
	}
	assert.Equal(t, 200, accepted)
	assert.Equal(t, 100, refused)

	t.Run("CorpID", func(t *testing.T) {
		for _, corp := range []string{"", "ww\r\nCorp", strings.Repeat("w", 257)} {
			_, err := publish.Normalize(publish.Origin{App: "a", CorpID: corp}, &wecomhit.HitMessage{MsgID: "m",
				HitRules: []wecomhit.HitRule{{RuleID: "r", HasHitKeyword: true}}}, nil)
			assert.True(t, errors.Is(err, publish.ErrInvalidRecord), "%q: %v", corp, err)
		}
	})
}
