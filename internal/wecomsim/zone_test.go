package wecomsim

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const syncPath = "/cgi-bin/chatdata/sync_call_program"

func syncCall(t testing.TB, s *Sim, token, ability, requestData string) obj {
	t.Helper()
	return api(t, s, syncPath, token, obj{"program_id": testProg, "ability_id": ability, "request_data": requestData})
}

// decodeResponse unpacks response_data, and {"output":…} when wrapped.
func decodeResponse(t testing.TB, o obj, wrapped bool) obj {
	t.Helper()
	raw, ok := o["response_data"].(string)
	require.True(t, ok, "response_data is a JSON string: %v", o)
	var out obj
	require.NoError(t, json.Unmarshal([]byte(raw), &out))
	if wrapped {
		require.Len(t, out, 1, out)
		inner, ok := out["output"].(obj)
		require.True(t, ok, out)
		return inner
	}
	return out
}

func TestSim_SyncCallProgram(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		name := "Plain"
		if wrap {
			name = "Wrapped"
		}
		t.Run(name, func(t *testing.T) {
			s := newTestSim(t, func(o *Options) {
				o.Zone.WrapIO = wrap
				o.Zone.Abilities = map[string]string{"create_rule": "ab_create", "get_hit_msg_list": "ab_hits",
					"get_rule_detail": "ab_detail"}
				o.TokenlessLimit = 1
			})
			tok := zoneToken(t, s)
			in := func(js string) string {
				if wrap {
					return `{"input":` + js + `}`
				}
				return js
			}
			o := syncCall(t, s, tok, "ab_create", in(`{"name":"r","keyword":{"word_list":["退款"]}}`))
			require.Equal(t, 0, errcode(o), o)
			created := decodeResponse(t, o, wrap)
			require.Equal(t, 0, errcode(created), created)
			ruleID := created["rule_id"].(string)

			// The operation's own errors travel inside response_data.
			o = syncCall(t, s, tok, "ab_detail", in(`{"rule_id":"nope"}`))
			require.Equal(t, 0, errcode(o), o)
			assert.Equal(t, 40058, errcode(decodeResponse(t, o, wrap)))
			o = syncCall(t, s, tok, "ab_detail", in(`{"rule_id":"`+ruleID+`"}`))
			assert.Equal(t, "r", decodeResponse(t, o, wrap)["name"])

			for _, bad := range []struct{ name, data string }{
				{"NotJSON", `{"name":`},
				{"UnknownField", in(`{"rule_id":"x","bogus":1}`)},
				{"WrongType", in(`{"rule_id":5}`)},
				{"WrongWrapping", map[bool]string{false: `{"input":{"rule_id":"x"}}`, true: `{"rule_id":"x"}`}[wrap]},
			} {
				o := syncCall(t, s, tok, "ab_detail", bad.data)
				assert.Equal(t, 790016, errcode(o), "%s: %v", bad.name, o)
			}
			assert.Equal(t, 40058, errcode(syncCall(t, s, tok, "ab_unknown", in(`{}`))))
			assert.Equal(t, 40058, errcode(api(t, s, syncPath, tok,
				obj{"program_id": "other", "ability_id": "ab_detail", "request_data": in(`{}`)})))
			assert.Equal(t, 48002, errcode(syncCall(t, s, corpToken(t, s), "ab_detail", in(`{}`))))
			assert.Equal(t, 47001, errcode(api(t, s, syncPath, tok, obj{"program_id": testProg,
				"ability_id": "ab_detail", "request_data": obj{"rule_id": "x"}})), "request_data must be a string")

			// A notify id stands for a hit token: no token-less limit.
			_, err := s.SendMessage(testZone, Message{Text: "我要退款"})
			require.NoError(t, err)
			s.mu.Lock()
			s.notifies["ntf-test"] = &notify{token: s.newHitTokenLocked(s.corps[testZone]), expires: s.now.Add(s.opts.HitTokenTTL)}
			s.mu.Unlock()
			for range 3 {
				o := api(t, s, syncPath, tok, obj{"program_id": testProg, "ability_id": "ab_hits",
					"notify_id": "ntf-test", "request_data": in(`{"limit":10}`)})
				res := decodeResponse(t, o, wrap)
				require.Equal(t, 0, errcode(res), res)
				assert.Len(t, res["msg_list"], 1)
			}
			// Without it, the limit of 1 per minute applies.
			hits := func() int {
				return errcode(decodeResponse(t, syncCall(t, s, tok, "ab_hits", in(`{}`)), wrap))
			}
			assert.Equal(t, 0, hits())
			assert.Equal(t, 45009, hits())
			assert.Equal(t, 5, s.Requests("get_hit_msg_list"))
		})
	}
}
