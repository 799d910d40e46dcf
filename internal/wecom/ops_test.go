package wecom

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// collect drains a paging iterator.
func collect[T any](seq func(func(T, error) bool)) ([]T, error) {
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

type opCase struct {
	name    string
	op      string
	call    func(t *testing.T, c *Client, zone bool) any
	notify  string // notify_id expected beside request_data (zone)
	wantReq string
	resp    string
	want    any
}

var opCases = []opCase{
	{
		name: "GetHitMsgList", op: opGetHitMsgList, notify: "ntf-1",
		call: func(t *testing.T, c *Client, zone bool) any {
			req := HitMsgListRequest{Token: "hit-tkn", Cursor: "C1", Limit: 1000, NeedDetail: true, BeginTime: 1716999000}
			if zone {
				req.NotifyID = "ntf-1"
			}
			got, err := c.GetHitMsgList(natstest.Context(t), "", req)
			require.NoError(t, err)
			return got
		},
		wantReq: `{"token":"hit-tkn","cursor":"C1","limit":1000,"need_detail":1,"begin_time":1716999000}`,
		resp: `{"errcode":0,"errmsg":"ok","has_more":1,"next_cursor":"C2","msg_list":[{"msgid":"m1",
			"msg_detail":{"sender":{"type":1,"id":"emp1"},"receiver_list":[{"type":2,"id":"wmcust"}],
			"chatid":"","send_time":1717000000,"msgtype":1,
			"service_encrypt_info":{"encrypted_secret_key":"ESK","public_key_ver":2}},
			"hit_rule_list":[{"rule_id":"r1","has_hit_keyword":true,"semantics_list":[2,3]}]}]}`,
		want: &HitMsgList{HasMore: true, NextCursor: "C2", MsgList: []HitMsg{{
			MsgID: "m1",
			Detail: &MsgDetail{
				Sender: Party{Type: 1, ID: "emp1"}, ReceiverList: []Party{{Type: 2, ID: "wmcust"}},
				SendTime: 1717000000, MsgType: 1,
				ServiceEncryptInfo: &ServiceEncryptInfo{EncryptedSecretKey: "ESK", PublicKeyVer: 2},
			},
			HitRules: []HitRule{{RuleID: "r1", HasHitKeyword: true, SemanticsList: []int{2, 3}}},
		}}},
	},
	{
		name: "CreateRule", op: opCreateRule,
		call: func(t *testing.T, c *Client, _ bool) any {
			id, err := c.CreateRule(natstest.Context(t), "", Rule{
				Name: "规则一", Keyword: &Keyword{WordList: []string{"退款", "投诉"}},
				Semantics: &Semantics{SemanticsList: []int{2}},
				ApplicableRange: &ApplicableRange{
					TargetType: &TypeList{TypeList: []int{1}}, Department: &Department{IDList: []int64{7}},
				},
			})
			require.NoError(t, err)
			return id
		},
		wantReq: `{"name":"规则一","keyword":{"word_list":["退款","投诉"]},"semantics":{"semantics_list":[2]},
			"applicable_range":{"target_type":{"type_list":[1]},"department":{"id_list":[7]}}}`,
		resp: `{"errcode":0,"errmsg":"ok","rule_id":"rule-9"}`,
		want: "rule-9",
	},
	{
		name: "ListRules", op: opGetRuleList,
		call: func(t *testing.T, c *Client, _ bool) any {
			got, err := collect(c.ListRules(natstest.Context(t), "", 10))
			require.NoError(t, err)
			return got
		},
		wantReq: `{"limit":10}`,
		resp:    `{"errcode":0,"has_more":0,"next_cursor":"","rule_list":[{"rule_id":"r1","name":"n1","create_time":1700000000}]}`,
		want:    []RuleSummary{{RuleID: "r1", Name: "n1", CreateTime: 1700000000}},
	},
	{
		name: "GetRule", op: opGetRuleDetail,
		call: func(t *testing.T, c *Client, _ bool) any {
			got, err := c.GetRule(natstest.Context(t), "", "r1")
			require.NoError(t, err)
			return got
		},
		wantReq: `{"rule_id":"r1"}`,
		resp: `{"errcode":0,"errmsg":"ok","name":"n1","keyword":{"word_list":["w"]},
			"semantics":{"semantics_list":[1]},"applicable_range":{"chat":{"id_list":["wr1"]}}}`,
		want: &RuleDetail{RuleID: "r1", Rule: Rule{
			Name: "n1", Keyword: &Keyword{WordList: []string{"w"}}, Semantics: &Semantics{SemanticsList: []int{1}},
			ApplicableRange: &ApplicableRange{Chat: &IDList{IDList: []string{"wr1"}}},
		}},
	},
	{
		name: "UpdateRule", op: opUpdateRule,
		call: func(t *testing.T, c *Client, _ bool) any {
			require.NoError(t, c.UpdateRule(natstest.Context(t), "", RuleUpdate{RuleID: "r1", Words: Set("新词"), Users: Set[string]()}))
			return nil
		},
		wantReq: `{"rule_id":"r1","keyword":{"word_list":["新词"]},"applicable_range":{"user":{"id_list":[]}}}`,
		resp:    `{"errcode":0,"errmsg":"ok"}`,
	},
	{
		name: "DeleteRule", op: opDeleteRule,
		call: func(t *testing.T, c *Client, _ bool) any {
			require.NoError(t, c.DeleteRule(natstest.Context(t), "", "r1"))
			return nil
		},
		wantReq: `{"rule_id":"r1"}`,
		resp:    `{"errcode":0,"errmsg":"ok"}`,
	},
	{
		name: "SearchMsg", op: opSearchMsg,
		call: func(t *testing.T, c *Client, _ bool) any {
			got, err := collect(c.SearchMsg(natstest.Context(t), "", SearchRequest{
				QueryWord: "退款", StartTime: 1716000000, EndTime: 1716086400, Limit: 50,
				ChatInfo: &ChatInfo{ChatType: 1, IDList: []IDInfo{{OpenUserID: "e1"}, {ExternalUserID: "wm1"}}},
			}))
			require.NoError(t, err)
			return got
		},
		wantReq: `{"query_word":"退款","chat_info":{"chat_type":1,"id_list":[{"open_userid":"e1"},{"external_userid":"wm1"}]},
			"start_time":1716000000,"end_time":1716086400,"limit":50}`,
		resp: `{"errcode":0,"has_more":0,"msg_list":[{"msgid":"m7"},{"msgid":"m8"}]}`,
		want: []SearchHit{{MsgID: "m7"}, {MsgID: "m8"}},
	},
}

func archivePath(op string) string {
	if op == opSearchMsg {
		return "/cgi-bin/chatdata/search_msg"
	}
	return "/cgi-bin/chatdata/keyword/" + op
}

func TestClient_OperationsArchive(t *testing.T) {
	for _, tc := range opCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			path := archivePath(tc.op)
			f.handle(path, func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(tc.resp))
			})
			c, _ := mustClient(t, archiveApp(f.srv.URL), nil)

			got := tc.call(t, c, false)
			if tc.want != nil {
				assert.Equal(t, tc.want, got)
			}
			reqs := f.requests(path)
			require.Len(t, reqs, 1)
			assert.Equal(t, "ACCESSTOKEN-1", reqs[0].Query.Get("access_token"))
			assert.JSONEq(t, tc.wantReq, string(reqs[0].Body))

			// The corp token came from the suite, which used the ticket.
			st := f.requests("/cgi-bin/service/get_suite_token")
			require.Len(t, st, 1)
			assert.JSONEq(t, `{"suite_id":"`+testSuiteID+`","suite_secret":"`+testSuiteSec+`","suite_ticket":"`+testTicket+`"}`, string(st[0].Body))
			ct := f.requests("/cgi-bin/service/get_corp_token")
			require.Len(t, ct, 1)
			assert.Equal(t, testSuiteToken, ct[0].Query.Get("suite_access_token"))
			assert.JSONEq(t, `{"auth_corpid":"`+testCorp+`","permanent_code":"`+testPermCode+`"}`, string(ct[0].Body))
		})
	}
}

func TestClient_OperationsZone(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		name := "Plain"
		if wrap {
			name = "Wrapped"
		}
		t.Run(name, func(t *testing.T) {
			for _, tc := range opCases {
				t.Run(tc.name, func(t *testing.T) {
					f := newFake(t)
					f.handle(syncCallProgramPath, func(w http.ResponseWriter, r *http.Request) {
						data := tc.resp
						if wrap {
							data = `{"output":` + tc.resp + `}`
						}
						reply(w, map[string]any{"errcode": 0, "errmsg": "ok", "response_data": data})
					})
					c, _ := mustClient(t, zoneApp(f.srv.URL, wrap), nil)

					got := tc.call(t, c, true)
					if tc.want != nil {
						assert.Equal(t, tc.want, got)
					}

					tok := f.requests("/cgi-bin/gettoken")
					require.Len(t, tok, 1)
					assert.Equal(t, testCorp, tok[0].Query.Get("corpid"))
					assert.Equal(t, testSecret, tok[0].Query.Get("corpsecret"))

					reqs := f.requests(syncCallProgramPath)
					require.Len(t, reqs, 1)
					assert.Equal(t, "ACCESSTOKEN-1", reqs[0].Query.Get("access_token"))
					var env struct {
						ProgramID   string  `json:"program_id"`
						AbilityID   string  `json:"ability_id"`
						NotifyID    *string `json:"notify_id"`
						RequestData string  `json:"request_data"`
					}
					require.NoError(t, json.Unmarshal(reqs[0].Body, &env))
					assert.Equal(t, testProgram, env.ProgramID)
					assert.Equal(t, allAbilities[tc.op], env.AbilityID)
					if tc.notify != "" {
						require.NotNil(t, env.NotifyID)
						assert.Equal(t, tc.notify, *env.NotifyID)
					} else {
						assert.Nil(t, env.NotifyID, "notify_id absent when not given")
					}
					data := env.RequestData
					if wrap {
						var in struct {
							Input json.RawMessage `json:"input"`
						}
						require.NoError(t, json.Unmarshal([]byte(data), &in))
						require.NotEmpty(t, in.Input)
						data = string(in.Input)
					}
					assert.JSONEq(t, tc.wantReq, data)
				})
			}
		})
	}
}

func TestClient_ZoneProgramError(t *testing.T) {
	f := newFake(t)
	f.handle(syncCallProgramPath, func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"errcode": 0, "errmsg": "ok", "response_data": `{"errcode":48002,"errmsg":"api forbidden"}`})
	})
	c, _ := mustClient(t, zoneApp(f.srv.URL, false), nil)
	_, err := c.GetHitMsgList(natstest.Context(t), "", HitMsgListRequest{})
	var apiErr *APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 48002, apiErr.Code)
	assert.Equal(t, opGetHitMsgList, apiErr.API)
}

func TestClient_Paging(t *testing.T) {
	t.Run("ListRulesFollowsCursor", func(t *testing.T) {
		f := newFake(t)
		f.handle(syncCallProgramPath, func(w http.ResponseWriter, r *http.Request) {
			var env struct {
				RequestData string `json:"request_data"`
			}
			_ = json.NewDecoder(r.Body).Decode(&env)
			resp := `{"has_more":1,"next_cursor":"P2","rule_list":[{"rule_id":"r1"}]}`
			if env.RequestData == `{"cursor":"P2"}` {
				resp = `{"has_more":0,"next_cursor":"","rule_list":[{"rule_id":"r2"}]}`
			}
			reply(w, map[string]any{"response_data": resp})
		})
		c, _ := mustClient(t, zoneApp(f.srv.URL, false), nil)
		got, err := collect(c.ListRules(natstest.Context(t), "", 0))
		require.NoError(t, err)
		assert.Equal(t, []RuleSummary{{RuleID: "r1"}, {RuleID: "r2"}}, got)
		assert.Equal(t, 2, f.count(syncCallProgramPath))
	})
	t.Run("SearchFollowsCursorAndStopsEarly", func(t *testing.T) {
		f := newFake(t)
		var cursors []string
		f.handle("/cgi-bin/chatdata/search_msg", func(w http.ResponseWriter, r *http.Request) {
			var req SearchRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			cursors = append(cursors, req.Cursor)
			if req.Cursor == "" {
				reply(w, map[string]any{"has_more": 1, "next_cursor": "S2", "msg_list": []any{map[string]string{"msgid": "a"}}})
				return
			}
			reply(w, map[string]any{"has_more": 1, "next_cursor": "S3", "msg_list": []any{map[string]string{"msgid": "b"}, map[string]string{"msgid": "c"}}})
		})
		c, _ := mustClient(t, archiveApp(f.srv.URL), nil)
		var got []string
		for h, err := range c.SearchMsg(natstest.Context(t), "", SearchRequest{QueryWord: "退款"}) {
			require.NoError(t, err)
			got = append(got, h.MsgID)
			if len(got) == 2 {
				break
			}
		}
		assert.Equal(t, []string{"a", "b"}, got)
		assert.Equal(t, []string{"", "S2"}, cursors, "no page fetched after the consumer stopped")
	})
	t.Run("ErrCursorStuck", func(t *testing.T) {
		f := newFake(t)
		f.handle("/cgi-bin/chatdata/keyword/get_rule_list", func(w http.ResponseWriter, r *http.Request) {
			reply(w, map[string]any{"has_more": 1, "next_cursor": "", "rule_list": []any{}})
		})
		c, _ := mustClient(t, archiveApp(f.srv.URL), nil)
		_, err := collect(c.ListRules(natstest.Context(t), "", 0))
		require.ErrorIs(t, err, ErrCursorStuck)
		assert.Equal(t, 1, f.count("/cgi-bin/chatdata/keyword/get_rule_list"))
	})
}

func TestRuleUpdate_MarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		u    RuleUpdate
		want string
	}{
		{"OnlyID", RuleUpdate{RuleID: "r1"}, `{"rule_id":"r1"}`},
		{"ClearWords", RuleUpdate{RuleID: "r1", Words: Set[string]()}, `{"rule_id":"r1","keyword":{"word_list":[]}}`},
		{"ClearWithNilSlice", RuleUpdate{RuleID: "r1", Semantics: Set([]int(nil)...)}, `{"rule_id":"r1","semantics":{"semantics_list":[]}}`},
		{"SetWords", RuleUpdate{RuleID: "r1", Name: "新名", Words: Set("a", "b")}, `{"rule_id":"r1","name":"新名","keyword":{"word_list":["a","b"]}}`},
		{"RangeMembersIndependent", RuleUpdate{
			RuleID: "r1", Departments: Set[int64](), Chats: Set("wr1"), TargetTypes: Set(1),
		}, `{"rule_id":"r1","applicable_range":{"target_type":{"type_list":[1]},"department":{"id_list":[]},"chat":{"id_list":["wr1"]}}}`},
		{"AllRangeClears", RuleUpdate{
			RuleID: "r1", TargetTypes: Set[int](), ChatTypes: Set[int](), Departments: Set[int64](),
			Users: Set[string](), ExternalContacts: Set[string](), Chats: Set[string](), ExcludeMobiles: Set[string](),
		}, `{"rule_id":"r1","applicable_range":{"target_type":{"type_list":[]},"chat_type":{"type_list":[]},
			"department":{"id_list":[]},"user":{"id_list":[]},"external_contact":{"id_list":[]},
			"chat":{"id_list":[]},"exclude_mobile":{"mobile_list":[]}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.u)
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(b))
		})
	}
}

func TestFlag_JSON(t *testing.T) {
	var v struct{ A, B, C Flag }
	require.NoError(t, json.Unmarshal([]byte(`{"A":1,"B":true,"C":0}`), &v))
	assert.Equal(t, Flag(true), v.A)
	assert.Equal(t, Flag(true), v.B)
	assert.Equal(t, Flag(false), v.C)
	require.Error(t, json.Unmarshal([]byte(`{"A":2}`), &v))
	b, err := json.Marshal(struct{ A, B Flag }{true, false})
	require.NoError(t, err)
	assert.JSONEq(t, `{"A":1,"B":0}`, string(b))
}

func TestList_UnmarshalJSON(t *testing.T) {
	var body struct {
		A List[string] `json:"a"`
		B List[int]    `json:"b"`
		C List[string] `json:"c"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"a":["x","y"],"b":[]}`), &body))
	items, set := body.A.Items()
	assert.True(t, set)
	assert.Equal(t, []string{"x", "y"}, items)
	items2, set := body.B.Items()
	assert.True(t, set, "[] clears")
	assert.Empty(t, items2)
	_, set = body.C.Items()
	assert.False(t, set, "absent keeps")
	assert.Error(t, json.Unmarshal([]byte(`{"a":null}`), &body))
}
