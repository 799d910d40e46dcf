package wecom

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestGetHitMsgList_ErrcodeOnce: the page and its errcode are decoded
// together; an error answer is an *APIError whatever else it carries, even
// fields of a shape the page cannot take, and a good page arrives whole.
func TestGetHitMsgList_ErrcodeOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		zone bool
		path string
		wrap func(any) any
	}{
		{"Archive", false, "/cgi-bin/chatdata/keyword/get_hit_msg_list", func(v any) any { return v }},
		{"Zone", true, "/cgi-bin/chatdata/sync_call_program", func(v any) any {
			b, _ := json.Marshal(v)
			return map[string]any{"errcode": 0, "errmsg": "ok", "response_data": string(b)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var answer any
			f.handle(tc.path, func(w http.ResponseWriter, _ *http.Request) { reply(w, tc.wrap(answer)) })
			app := archiveApp(f.srv.URL)
			if tc.zone {
				app = zoneApp(f.srv.URL, false)
			}
			c, _ := mustClient(t, app, nil, WithAttempts(1))

			answer = map[string]any{"errcode": 0, "errmsg": "ok", "has_more": 1, "next_cursor": "c2",
				"msg_list": []map[string]any{{"msgid": "m1", "hit_rule_list": []map[string]any{{"rule_id": "r1"}}}}}
			page, err := c.GetHitMsgList(natstest.Context(t), testCorp, HitMsgListRequest{Token: "tok"})
			require.NoError(t, err)
			require.True(t, bool(page.HasMore))
			require.Equal(t, "c2", page.NextCursor)
			require.Len(t, page.MsgList, 1)
			require.Equal(t, "m1", page.MsgList[0].MsgID)
			require.Equal(t, "r1", page.MsgList[0].HitRules[0].RuleID)

			answer = map[string]any{"errcode": 45009, "errmsg": "api freq out of limit"}
			_, err = c.GetHitMsgList(natstest.Context(t), testCorp, HitMsgListRequest{Token: "tok2"})
			var apiErr *APIError
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, 45009, apiErr.Code)

			answer = map[string]any{"errcode": 301042, "errmsg": "bad", "msg_list": "not a list"}
			_, err = c.GetHitMsgList(natstest.Context(t), testCorp, HitMsgListRequest{Token: "tok3"})
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, 301042, apiErr.Code)

			answer = map[string]any{"errcode": 0, "msg_list": "not a list"}
			_, err = c.GetHitMsgList(natstest.Context(t), testCorp, HitMsgListRequest{Token: "tok4"})
			require.ErrorContains(t, err, "decode response")
			_, isAPI := errors.AsType[*APIError](err)
			require.False(t, isAPI, "a good errcode with a bad page is a decode error")
		})
	}
}

// BenchmarkDecodeHitPage compares ways of reading a 1000-hit page:
// Twice, the first way (errcode decoded from the whole page, then the
// page, both with encoding/json); OnceStd, one decode with encoding/json;
// Once, what GetHitMsgList does now (decodeAnswer: one decode, with
// go-json).
func BenchmarkDecodeHitPage(b *testing.B) {
	msgs := make([]wecomhit.HitMessage, 1000)
	for i := range msgs {
		msgs[i] = wecomhit.HitMessage{MsgID: fmt.Sprintf("msg-%06d-abcdefghijkl", i),
			HitRules: []wecomhit.HitRule{{RuleID: "rule-0001", HasHitKeyword: true, SemanticsList: []int{2}}},
			Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "woEmployee0001"},
				ReceiverList: []wecomhit.Party{{Type: 2, ID: "wmCustomer0001"}}, MsgType: 1, SendTime: 1717000000}}
	}
	data, err := json.Marshal(struct {
		envelope
		HasMore    int                   `json:"has_more"`
		NextCursor string                `json:"next_cursor"`
		MsgList    []wecomhit.HitMessage `json:"msg_list"`
	}{envelope{0, "ok"}, 1, "cursor", msgs})
	require.NoError(b, err)
	b.Run("Twice", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var page HitMsgList
			if err := checkEnvelope(opGetHitMsgList, data); err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(data, &page); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("OnceStd", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var page hitMsgListAnswer
			if err := json.Unmarshal(data, &page); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Once", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var page hitMsgListAnswer
			if err := decodeAnswer(opGetHitMsgList, data, &page); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzUnmarshalHitPage: whatever the answer, hitMsgListAnswer.unmarshal makes of it
// the hit page encoding/json makes of it, or fails with encoding/json's
// error: go-json on the hot path changes nothing but the speed.
func FuzzUnmarshalHitPage(f *testing.F) {
	for _, seed := range []string{
		`{"errcode":0,"errmsg":"ok","has_more":1,"next_cursor":"c2","msg_list":[{"msgid":"m1","hit_rule_list":[{"rule_id":"r1","has_hit_keyword":true,"semantics_list":[1,2]}],` +
			`"msg_detail":{"sender":{"type":1,"id":"wo1"},"receiver_list":[{"type":2,"id":"wm1"}],"chatid":"","send_time":1717000000,"msgtype":1,` +
			`"service_encrypt_info":{"encrypted_secret_key":"k","public_key_ver":2}}}]}`,
		`{"errcode":0,"msg_list":"not a list"}`,
		`{"errcode":301042,"errmsg":"bad","msg_list":[]}`,
		`{"has_more":2}`, `{"has_more":true,"HAS_MORE":0}`, `{"Msg_List":[{"MsgId":"m"}]}`,
		`{"next_cursor":"a","next_cursor":"b"}`, `{"errcode":1.5}`, `{"errcode":1e2}`, `{"msg_list":null}`,
		`{"msg_list":[{"msgid":"\ud800\u00e9\"\\\/"}]}`, "{\"next_cursor\":\"\xff\xfe\"}", `{} x`, `[]`, `null`, ``,
		`{"msg_list":[{"msg_detail":null,"hit_rule_list":[{"semantics_list":[1,"2"]}]}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want hitMsgListAnswer
		wantErr := json.Unmarshal(data, &want)
		var got hitMsgListAnswer
		err := got.unmarshal(data)
		if wantErr != nil {
			require.EqualError(t, err, wantErr.Error())
			return
		}
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
}
