package wecom_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// The contract tests run the real client against the real simulator over
// HTTP, for the archive HTTPS paths and for sync_call_program with and
// without wrapped ability I/O.

func TestContract_Rules(t *testing.T) {
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc)
			c := e.client()
			ctx := natstest.Context(t)
			pop, err := e.sim.Population(e.corp)
			require.NoError(t, err)

			want := wecom.Rule{
				Name:      "价格敏感词",
				Keyword:   &wecom.Keyword{WordList: []string{"优惠", "invoice", "报价单"}},
				Semantics: &wecom.Semantics{SemanticsList: []int{wecomsim.SemMobile, wecomsim.SemEmail}},
				ApplicableRange: &wecom.ApplicableRange{
					TargetType:      &wecom.TypeList{TypeList: []int{1, 2}},
					ChatType:        &wecom.TypeList{TypeList: []int{1}},
					Department:      &wecom.Department{IDList: pop.Departments[:1]},
					User:            &wecom.IDList{IDList: pop.Employees[:2]},
					ExternalContact: &wecom.IDList{IDList: pop.Customers[:1]},
					ExcludeMobile:   &wecom.ExcludeMobile{MobileList: []string{"13800000000"}},
				},
			}
			var id string
			t.Run("CreateRule", func(t *testing.T) {
				id, err = c.CreateRule(ctx, e.corp, want)
				require.NoError(t, err)
				require.NotEmpty(t, id)
			})
			require.NotEmpty(t, id, "CreateRule failed")

			t.Run("GetRule", func(t *testing.T) {
				got, err := c.GetRule(ctx, e.corp, id)
				require.NoError(t, err)
				assert.Equal(t, id, got.RuleID)
				assert.Equal(t, want, got.Rule)
			})

			t.Run("UpdateRule", func(t *testing.T) {
				err := c.UpdateRule(ctx, e.corp, wecom.RuleUpdate{
					RuleID: id,
					Name:   "改名后的规则",
					// Words absent: unchanged. Semantics and Users set empty:
					// cleared. ChatTypes set: replaced.
					Semantics: wecom.Set[int](),
					Users:     wecom.Set[string](),
					ChatTypes: wecom.Set(2),
				})
				require.NoError(t, err)
				got, err := c.GetRule(ctx, e.corp, id)
				require.NoError(t, err)
				assert.Equal(t, "改名后的规则", got.Name)
				require.NotNil(t, got.Keyword)
				assert.Equal(t, want.Keyword.WordList, got.Keyword.WordList, "absent word_list is left as it was")
				if got.Semantics != nil {
					assert.Empty(t, got.Semantics.SemanticsList, "semantics_list set empty is cleared")
				}
				require.NotNil(t, got.ApplicableRange)
				if got.ApplicableRange.User != nil {
					assert.Empty(t, got.ApplicableRange.User.IDList, "user set empty is cleared")
				}
				assert.Equal(t, &wecom.TypeList{TypeList: []int{2}}, got.ApplicableRange.ChatType)
				// Lists the update did not name stay as created.
				assert.Equal(t, want.ApplicableRange.TargetType, got.ApplicableRange.TargetType)
				assert.Equal(t, want.ApplicableRange.Department, got.ApplicableRange.Department)
				assert.Equal(t, want.ApplicableRange.ExternalContact, got.ApplicableRange.ExternalContact)
				assert.Equal(t, want.ApplicableRange.ExcludeMobile, got.ApplicableRange.ExcludeMobile)
			})

			t.Run("DeleteRule", func(t *testing.T) {
				require.NoError(t, c.DeleteRule(ctx, e.corp, id))
				_, err := c.GetRule(ctx, e.corp, id)
				var apiErr *wecom.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, "get_rule_detail", apiErr.API)
				assert.NotZero(t, apiErr.Code)
				assert.False(t, wecom.IsRetryable(err))

				rules, err := collect(c.ListRules(ctx, e.corp, 0))
				require.NoError(t, err)
				assert.Empty(t, rules)
			})

			t.Run("ListRules", func(t *testing.T) {
				const n, limit = 8, 3
				var ids []string
				for i := range n {
					id, err := c.CreateRule(ctx, e.corp, wecom.Rule{
						Name:      fmt.Sprintf("rule-%d", i),
						Semantics: &wecom.Semantics{SemanticsList: []int{wecomsim.SemLink}},
					})
					require.NoError(t, err)
					ids = append(ids, id)
				}
				before := e.sim.Requests("get_rule_list")
				rules, err := collect(c.ListRules(ctx, e.corp, limit))
				require.NoError(t, err)
				var gotIDs []string
				for i, r := range rules {
					gotIDs = append(gotIDs, r.RuleID)
					assert.Equal(t, fmt.Sprintf("rule-%d", i), r.Name)
					assert.Equal(t, e.sim.Now().Unix(), r.CreateTime)
				}
				assert.Equal(t, ids, gotIDs, "every rule once, in creation order")
				assert.Equal(t, (n+limit-1)/limit, e.sim.Requests("get_rule_list")-before, "pages")

				// Stopping early fetches no further page.
				before = e.sim.Requests("get_rule_list")
				for _, err := range c.ListRules(ctx, e.corp, limit) {
					require.NoError(t, err)
					break
				}
				assert.Equal(t, 1, e.sim.Requests("get_rule_list")-before)
			})
		})
	}
}

// hitKey is one (message, rule) hit.
type hitKey struct{ msgID, ruleID string }

func TestContract_GetHitMsgList(t *testing.T) {
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("HitToken", func(t *testing.T) {
				e := newEnv(t, tc, tokenlessLimit(1))
				c := e.client()
				setUpHits(t, e, c)
				tok, err := e.sim.IssueHitToken(e.corp)
				require.NoError(t, err)
				pageHits(t, e, c, wecom.HitMsgListRequest{Token: tok})
			})
			t.Run("BeginTime", func(t *testing.T) {
				// Without a cursor, begin_time skips the hits before it.
				e := newEnv(t, tc)
				c := e.client()
				ctx := natstest.Context(t)
				setUpHits(t, e, c)
				e.sim.Advance(time.Hour)
				since := e.sim.Now().Unix()
				_, err := e.sim.GenerateMessages(e.corp, 100)
				require.NoError(t, err)
				want := map[string]bool{}
				for _, h := range e.sim.Hits() {
					if h.CorpID == e.corp && h.Message.SendTime >= since {
						want[h.MsgID] = true
					}
				}
				require.NotEmpty(t, want)
				tok, err := e.sim.IssueHitToken(e.corp)
				require.NoError(t, err)
				page, err := c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{Token: tok, BeginTime: since, Limit: 1000})
				require.NoError(t, err)
				got := map[string]bool{}
				for _, m := range page.MsgList {
					got[m.MsgID] = true
					assert.Nil(t, m.Detail, "no msg_detail without need_detail")
				}
				assert.Equal(t, want, got)
				assert.False(t, bool(page.HasMore))
			})
			if !tc.zone {
				return
			}
			t.Run("NotifyID", func(t *testing.T) {
				recv := newNotifyReceiver(t)
				e := newEnv(t, tc, tokenlessLimit(1), withNotify(recv))
				c := e.client()
				setUpHits(t, e, c)
				var id string
				natstest.WaitFor(t, ctDeadline, func() error {
					if id = recv.last(); id == "" {
						return errors.New("no program_notify received yet")
					}
					return nil
				})
				pageHits(t, e, c, wecom.HitMsgListRequest{NotifyID: id})
			})
		})
	}
}

// tokenlessLimit makes every token-less get_hit_msg_list after the first in
// a minute fail with 45009, so paging through proves the token or notify id
// was honoured on every page.
func tokenlessLimit(n int) envOption {
	return func(o *wecomsim.Options) { o.TokenlessLimit = n }
}

// setUpHits creates a keyword rule and a key-behaviour rule in the env's
// corp (and, for archive, a rule in the other corp) and generates traffic
// that hits them.
func setUpHits(t testing.TB, e *env, c *wecom.Client) {
	t.Helper()
	ctx := natstest.Context(t)
	corps := []string{e.corp}
	if !e.tc.zone {
		corps = append(corps, ctCorpB)
	}
	for _, corp := range corps {
		_, err := c.CreateRule(ctx, corp, wecom.Rule{
			Name: "keywords", Keyword: &wecom.Keyword{WordList: []string{"优惠", "invoice"}},
		})
		require.NoError(t, err)
		_, err = c.CreateRule(ctx, corp, wecom.Rule{
			Name: "behaviours", Semantics: &wecom.Semantics{SemanticsList: []int{
				wecomsim.SemMobile, wecomsim.SemEmail, wecomsim.SemLink, wecomsim.SemRedPacket, wecomsim.SemFile,
			}},
		})
		require.NoError(t, err)
		_, err = e.sim.GenerateMessages(corp, 150)
		require.NoError(t, err)
	}
}

// pageHits pages through the corp's hits with req and compares them with
// the simulator's ground truth.
func pageHits(t testing.TB, e *env, c *wecom.Client, req wecom.HitMsgListRequest) {
	t.Helper()
	ctx := natstest.Context(t)
	truth := map[hitKey]wecomsim.Hit{}
	msgs := map[string]wecomsim.Message{}
	for _, h := range e.sim.Hits() {
		if h.CorpID == e.corp {
			truth[hitKey{h.MsgID, h.RuleID}] = h
			msgs[h.MsgID] = h.Message
		}
	}
	const limit = 7
	require.Greater(t, len(msgs), 2*limit, "the traffic should hit enough messages for several pages")

	req.Limit, req.NeedDetail = limit, true
	got := map[hitKey]wecom.HitRule{}
	var order []string
	before := e.sim.Requests("get_hit_msg_list")
	pages := 0
	for {
		page, err := c.GetHitMsgList(ctx, e.corp, req)
		require.NoError(t, err, "page %d", pages+1)
		pages++
		require.LessOrEqual(t, len(page.MsgList), limit)
		for _, m := range page.MsgList {
			order = append(order, m.MsgID)
			truthMsg, ok := msgs[m.MsgID]
			if !assert.True(t, ok, "msgid %s is not a hit of %s", m.MsgID, e.corp) {
				continue
			}
			if assert.NotNil(t, m.Detail, "need_detail") {
				assert.Equal(t, truthMsg.SendTime, m.Detail.SendTime)
				assert.Equal(t, truthMsg.MsgType, m.Detail.MsgType)
				assert.Equal(t, truthMsg.ChatID, m.Detail.ChatID)
				assert.Equal(t, wecomhit.Party{Type: truthMsg.Sender.Type, ID: truthMsg.Sender.ID}, m.Detail.Sender)
				assert.Len(t, m.Detail.ReceiverList, len(truthMsg.Receivers))
				if assert.NotNil(t, m.Detail.ServiceEncryptInfo) {
					assert.Equal(t, truthMsg.EncryptedSecretKey, m.Detail.ServiceEncryptInfo.EncryptedSecretKey)
					assert.Equal(t, truthMsg.PublicKeyVer, m.Detail.ServiceEncryptInfo.PublicKeyVer)
				}
			}
			for _, r := range m.HitRules {
				got[hitKey{m.MsgID, r.RuleID}] = r
			}
		}
		if !page.HasMore {
			break
		}
		require.NotEmpty(t, page.NextCursor)
		require.NotEqual(t, req.Cursor, page.NextCursor, "cursor advances")
		req.Cursor = page.NextCursor
		require.Less(t, pages, 100, "paging does not end")
	}
	assert.Equal(t, pages, e.sim.Requests("get_hit_msg_list")-before, "one request per page")
	assert.GreaterOrEqual(t, pages, 3)
	seen := map[string]bool{}
	for _, id := range order {
		assert.False(t, seen[id], "message %s twice", id)
		seen[id] = true
	}
	assert.Len(t, order, len(msgs), "each hit message once")

	require.Equal(t, keysOf(truth), keysOf(got), "(msgid, rule_id) pairs")
	for k, want := range truth {
		g := got[k]
		assert.Equal(t, want.HasHitKeyword, g.HasHitKeyword, "has_hit_keyword of %v", k)
		assert.ElementsMatch(t, want.SemanticsList, g.SemanticsList, "semantics_list of %v", k)
	}
	// Oldest first: the order is the simulator's hit order.
	var wantOrder []string
	for _, h := range e.sim.Hits() {
		if h.CorpID == e.corp && (len(wantOrder) == 0 || wantOrder[len(wantOrder)-1] != h.MsgID) {
			wantOrder = append(wantOrder, h.MsgID)
		}
	}
	assert.Equal(t, wantOrder, order)
}

func keysOf[V any](m map[hitKey]V) []hitKey {
	out := make([]hitKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b hitKey) int {
		return strings.Compare(a.msgID+"\x00"+a.ruleID, b.msgID+"\x00"+b.ruleID)
	})
	return out
}

// searchable are the message types whose Text search_msg searches: text,
// link, mini program, file, doc, mixed and WeDrive file (wecomsim.Message's
// Text doc; protocol §5).
var searchable = []int{wecomsim.MsgText, wecomsim.MsgLink, wecomsim.MsgMiniProgram, wecomsim.MsgFile,
	wecomsim.MsgDoc, wecomsim.MsgMixed, wecomsim.MsgWeDriveFile}

func TestContract_SearchMsg(t *testing.T) {
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc)
			c := e.client()
			ctx := natstest.Context(t)
			msgs, err := e.sim.GenerateMessages(e.corp, 200)
			require.NoError(t, err)

			// The query is the start of the most common text phrase.
			counts := map[string]int{}
			for _, m := range msgs {
				if m.MsgType == wecomsim.MsgText && m.Text != "" {
					phrase, _, _ := strings.Cut(m.Text, " ")
					if r := []rune(phrase); len(r) >= 4 {
						counts[string(r[:4])]++
					}
				}
			}
			var word string
			for w, n := range counts {
				if n > counts[word] || n == counts[word] && w < word {
					word = w
				}
			}
			var want []string
			for _, m := range msgs {
				if slices.Contains(searchable, m.MsgType) &&
					strings.Contains(strings.ToLower(m.Text), strings.ToLower(word)) {
					want = append(want, m.MsgID)
				}
			}
			const limit = 4
			require.Greater(t, len(want), 2*limit, "query %q should match several pages", word)

			before := e.sim.Requests("search_msg")
			hits, err := collect(c.SearchMsg(ctx, e.corp, wecom.SearchRequest{QueryWord: word, Limit: limit}))
			require.NoError(t, err)
			var got []string
			for _, h := range hits {
				got = append(got, h.MsgID)
			}
			assert.Equal(t, want, got, "every match once, oldest first")
			assert.Equal(t, (len(want)+limit-1)/limit, e.sim.Requests("search_msg")-before, "pages")

			t.Run("GroupChat", func(t *testing.T) {
				// The group and query: the most common phrase start of a
				// group's text messages.
				type pair struct{ chat, word string }
				counts := map[pair]int{}
				for _, m := range msgs {
					if m.ChatID != "" && m.MsgType == wecomsim.MsgText && m.Text != "" {
						phrase, _, _ := strings.Cut(m.Text, " ")
						if r := []rune(phrase); len(r) >= 4 {
							counts[pair{m.ChatID, string(r[:4])}]++
						}
					}
				}
				var best pair
				for p, n := range counts {
					if n > counts[best] || n == counts[best] && p.chat+p.word < best.chat+best.word {
						best = p
					}
				}
				require.NotEmpty(t, best.chat)
				var inChat, elsewhere []string
				for _, m := range msgs {
					if !slices.Contains(searchable, m.MsgType) ||
						!strings.Contains(strings.ToLower(m.Text), strings.ToLower(best.word)) {
						continue
					}
					if m.ChatID == best.chat {
						inChat = append(inChat, m.MsgID)
					} else {
						elsewhere = append(elsewhere, m.MsgID)
					}
				}
				require.NotEmpty(t, inChat)
				require.NotEmpty(t, elsewhere, "the filter should have something to leave out")
				hits, err := collect(c.SearchMsg(ctx, e.corp, wecom.SearchRequest{
					QueryWord: best.word, ChatInfo: &wecom.ChatInfo{ChatType: 2, ChatID: best.chat}, Limit: 2,
				}))
				require.NoError(t, err)
				var got []string
				for _, h := range hits {
					got = append(got, h.MsgID)
				}
				assert.Equal(t, inChat, got)
			})

			t.Run("TimeWindow", func(t *testing.T) {
				now := e.sim.Now().Unix()
				hits, err := collect(c.SearchMsg(ctx, e.corp, wecom.SearchRequest{
					QueryWord: word, StartTime: now - 3600, EndTime: now + 1, Limit: 100,
				}))
				require.NoError(t, err)
				assert.Len(t, hits, len(want))
				hits, err = collect(c.SearchMsg(ctx, e.corp, wecom.SearchRequest{
					QueryWord: word, StartTime: now - 7200, EndTime: now - 3600,
				}))
				require.NoError(t, err)
				assert.Empty(t, hits)
			})
		})
	}
}

func TestContract_Validation(t *testing.T) {
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("id%04d", i)
		}
		return out
	}
	words := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("w%d", i)
		}
		return out
	}
	sem := &wecom.Semantics{SemanticsList: []int{wecomsim.SemMobile}}
	const day = 24 * 60 * 60
	start := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC).Unix()

	type call func(*testing.T, *wecom.Client, string) error
	createRule := func(r wecom.Rule) call {
		return func(t *testing.T, c *wecom.Client, corp string) error {
			_, err := c.CreateRule(natstest.Context(t), corp, r)
			return err
		}
	}
	updateRule := func(u wecom.RuleUpdate) call {
		return func(t *testing.T, c *wecom.Client, corp string) error {
			u.RuleID = "some-rule"
			return c.UpdateRule(natstest.Context(t), corp, u)
		}
	}
	search := func(r wecom.SearchRequest) call {
		return func(t *testing.T, c *wecom.Client, corp string) error {
			_, err := collect(c.SearchMsg(natstest.Context(t), corp, r))
			return err
		}
	}
	hits := func(r wecom.HitMsgListRequest) call {
		return func(t *testing.T, c *wecom.Client, corp string) error {
			_, err := c.GetHitMsgList(natstest.Context(t), corp, r)
			return err
		}
	}

	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			maxUsers, maxDays := 100, 30
			if tc.zone {
				maxUsers, maxDays = 1000, 31
			}
			tests := []struct {
				name  string
				call  call
				field string
				limit int
			}{
				{"CreateRule/NameTooLong", createRule(wecom.Rule{Name: strings.Repeat("名", 21), Semantics: sem}), "name", 20},
				{"CreateRule/NameEmpty", createRule(wecom.Rule{Semantics: sem}), "name", 20},
				{"CreateRule/21Words", createRule(wecom.Rule{Name: "r", Keyword: &wecom.Keyword{WordList: words(21)}}), "keyword.word_list", 20},
				{"CreateRule/Word33Chars", createRule(wecom.Rule{Name: "r", Keyword: &wecom.Keyword{WordList: []string{"ok", strings.Repeat("字", 33)}}}), "keyword.word_list[1]", 32},
				{"CreateRule/Semantics13", createRule(wecom.Rule{Name: "r", Semantics: &wecom.Semantics{SemanticsList: []int{2, 13}}}), "semantics.semantics_list[1]", 12},
				{"CreateRule/Semantics0", createRule(wecom.Rule{Name: "r", Semantics: &wecom.Semantics{SemanticsList: []int{0}}}), "semantics.semantics_list[0]", 12},
				{"CreateRule/NeitherWordsNorSemantics", createRule(wecom.Rule{Name: "r"}), "keyword", 0},
				{"CreateRule/EmptyLists", createRule(wecom.Rule{Name: "r", Keyword: &wecom.Keyword{}, Semantics: &wecom.Semantics{}}), "keyword.word_list", 20},
				{"CreateRule/TooManyUsers", createRule(wecom.Rule{Name: "r", Semantics: sem, ApplicableRange: &wecom.ApplicableRange{
					User: &wecom.IDList{IDList: ids(maxUsers + 1)}}}), "applicable_range.user.id_list", maxUsers},
				{"CreateRule/TooManyExternalContacts", createRule(wecom.Rule{Name: "r", Semantics: sem, ApplicableRange: &wecom.ApplicableRange{
					ExternalContact: &wecom.IDList{IDList: ids(101)}}}), "applicable_range.external_contact.id_list", 100},
				{"UpdateRule/NameTooLong", updateRule(wecom.RuleUpdate{Name: strings.Repeat("n", 21)}), "name", 20},
				{"UpdateRule/21Words", updateRule(wecom.RuleUpdate{Words: wecom.Set(words(21)...)}), "keyword.word_list", 20},
				{"UpdateRule/Semantics13", updateRule(wecom.RuleUpdate{Semantics: wecom.Set(13)}), "semantics.semantics_list[0]", 12},
				{"UpdateRule/TooManyUsers", updateRule(wecom.RuleUpdate{Users: wecom.Set(ids(maxUsers + 1)...)}), "applicable_range.user.id_list", maxUsers},
				{"UpdateRule/NoRuleID", func(t *testing.T, c *wecom.Client, corp string) error {
					return c.UpdateRule(natstest.Context(t), corp, wecom.RuleUpdate{Name: "r"})
				}, "rule_id", 0},
				{"GetRule/NoRuleID", func(t *testing.T, c *wecom.Client, corp string) error {
					_, err := c.GetRule(natstest.Context(t), corp, "")
					return err
				}, "rule_id", 0},
				{"DeleteRule/NoRuleID", func(t *testing.T, c *wecom.Client, corp string) error {
					return c.DeleteRule(natstest.Context(t), corp, "")
				}, "rule_id", 0},
				{"ListRules/NegativeLimit", func(t *testing.T, c *wecom.Client, corp string) error {
					_, err := collect(c.ListRules(natstest.Context(t), corp, -1))
					return err
				}, "limit", 0},
				{"SearchMsg/QueryWord1Char", search(wecom.SearchRequest{QueryWord: "价"}), "query_word", 2},
				{"SearchMsg/SingleChatIDList1", search(wecom.SearchRequest{QueryWord: "价格", ChatInfo: &wecom.ChatInfo{
					ChatType: 1, IDList: []wecom.IDInfo{{OpenUserID: "u1"}}}}), "chat_info.id_list", 2},
				{"SearchMsg/EndWithoutStart", search(wecom.SearchRequest{QueryWord: "价格", EndTime: start}), "end_time", 0},
				{"SearchMsg/EndBeforeStart", search(wecom.SearchRequest{QueryWord: "价格", StartTime: start, EndTime: start - 1}), "end_time", 0},
				{"SearchMsg/WindowTooLong", search(wecom.SearchRequest{QueryWord: "价格", StartTime: start,
					EndTime: start + int64(maxDays)*day + 1}), "end_time", maxDays},
				{"SearchMsg/Limit101", search(wecom.SearchRequest{QueryWord: "价格", Limit: 101}), "limit", 100},
				{"SearchMsg/Cursor65Bytes", search(wecom.SearchRequest{QueryWord: "价格", Cursor: strings.Repeat("c", 65)}), "cursor", 64},
				{"GetHitMsgList/Limit1001", hits(wecom.HitMsgListRequest{Limit: 1001}), "limit", 1000},
				{"GetHitMsgList/Cursor65Bytes", hits(wecom.HitMsgListRequest{Cursor: strings.Repeat("c", 65)}), "cursor", 64},
				{"GetHitMsgList/Token129Bytes", hits(wecom.HitMsgListRequest{Token: strings.Repeat("t", 129)}), "token", 128},
			}
			if tc.zone {
				tests = append(tests, struct {
					name  string
					call  call
					field string
					limit int
				}{"GetHitMsgList/NotifyID129Bytes", hits(wecom.HitMsgListRequest{NotifyID: strings.Repeat("n", 129)}), "notify_id", 128})
			} else {
				tests = append(tests, []struct {
					name  string
					call  call
					field string
					limit int
				}{
					{"GetHitMsgList/NotifyIDOnArchive", hits(wecom.HitMsgListRequest{NotifyID: "ntf"}), "notify_id", 0},
					// The zone's larger limits are not the archive's.
					{"CreateRule/1001UsersOnArchive", createRule(wecom.Rule{Name: "r", Semantics: sem, ApplicableRange: &wecom.ApplicableRange{
						User: &wecom.IDList{IDList: ids(1001)}}}), "applicable_range.user.id_list", 100},
					{"SearchMsg/31DaysOnArchive", search(wecom.SearchRequest{QueryWord: "价格", StartTime: start,
						EndTime: start + 31*day}), "end_time", 30},
				}...)
			}

			e := newEnv(t, tc)
			c := e.client()
			// Warm the token, so a request sent by mistake would reach the
			// operation rather than stop at gettoken.
			_, err := collect(c.ListRules(natstest.Context(t), e.corp, 0))
			require.NoError(t, err)

			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					before := e.requests()
					err := tt.call(t, c, e.corp)
					require.Error(t, err)
					assert.ErrorIs(t, err, wecom.ErrValidation)
					var ve *wecom.ValidationError
					if assert.ErrorAs(t, err, &ve) {
						assert.Equal(t, tt.field, ve.Field)
						assert.Equal(t, tt.limit, ve.Limit)
						assert.NotEmpty(t, ve.Rule)
					}
					assert.Equal(t, before, e.requests(), "no request sent")
				})
			}

			// Boundaries are accepted: the largest valid values reach the
			// simulator, which agrees they are valid.
			t.Run("BoundariesAccepted", func(t *testing.T) {
				ctx := natstest.Context(t)
				id, err := c.CreateRule(ctx, e.corp, wecom.Rule{
					Name:      strings.Repeat("名", 20),
					Keyword:   &wecom.Keyword{WordList: append(words(19), strings.Repeat("字", 32))},
					Semantics: &wecom.Semantics{SemanticsList: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
					ApplicableRange: &wecom.ApplicableRange{
						User: &wecom.IDList{IDList: ids(maxUsers)},
					},
				})
				require.NoError(t, err)
				require.NoError(t, c.DeleteRule(ctx, e.corp, id))
				now := e.sim.Now().Unix()
				_, err = collect(c.SearchMsg(ctx, e.corp, wecom.SearchRequest{
					QueryWord: "价格", StartTime: now - int64(maxDays)*day, EndTime: now, Limit: 100,
				}))
				require.NoError(t, err)
				tok, err := e.sim.IssueHitToken(e.corp)
				require.NoError(t, err)
				_, err = c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{Token: tok, Limit: 1000})
				require.NoError(t, err)
			})
		})
	}
}

func TestContract_Tokens(t *testing.T) {
	for _, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("OneFetchForThreeReplicas", func(t *testing.T) {
				e := newEnv(t, tc)
				clients := make([]*wecom.Client, 3)
				for i := range clients {
					clients[i] = e.client() // each on its own NATS connection
				}
				ctx := natstest.Context(t)
				var ready, done sync.WaitGroup
				start := make(chan struct{})
				errs := make([]error, len(clients))
				for i, c := range clients {
					ready.Add(1)
					done.Go(func() {
						ready.Done()
						<-start
						_, errs[i] = collect(c.ListRules(ctx, e.corp, 0))
					})
				}
				ready.Wait()
				close(start)
				done.Wait()
				for i, err := range errs {
					assert.NoError(t, err, "client %d", i)
				}
				for _, api := range tc.tokenAPIs() {
					assert.Equal(t, 1, e.sim.Requests(api), api)
				}
				assert.Equal(t, len(clients), e.sim.Requests("get_rule_list"))
			})

			t.Run("ExpiredAccessToken", func(t *testing.T) {
				e := newEnv(t, tc)
				c := e.client()
				ctx := natstest.Context(t)
				_, err := collect(c.ListRules(ctx, e.corp, 0))
				require.NoError(t, err)
				before := e.requests()
				require.NoError(t, e.sim.SetFaults(wecomsim.Fault{
					Kind: wecomsim.FaultExpireAccessToken, API: "get_rule_list", Count: 1,
				}))
				_, err = collect(c.ListRules(ctx, e.corp, 0))
				require.NoError(t, err)
				after := e.requests()
				assert.Equal(t, 2, after["get_rule_list"]-before["get_rule_list"], "one call and one retry")
				if tc.zone {
					assert.Equal(t, 1, after["gettoken"]-before["gettoken"], "one refresh")
				} else {
					assert.Equal(t, 1, after["get_corp_token"]-before["get_corp_token"], "one refresh")
					assert.Equal(t, 0, after["get_suite_token"]-before["get_suite_token"], "the suite token is still good")
				}
				assert.Empty(t, e.sim.Faults(), "the fault fired")

				// The new token is shared: a second replica fetches none.
				before = e.requests()
				_, err = collect(e.client().ListRules(ctx, e.corp, 0))
				require.NoError(t, err)
				after = e.requests()
				for _, api := range tc.tokenAPIs() {
					assert.Equal(t, before[api], after[api], api)
				}
			})

			t.Run("RateLimited", func(t *testing.T) {
				e := newEnv(t, tc)
				c := e.client()
				ctx := natstest.Context(t)
				tok, err := e.sim.IssueHitToken(e.corp)
				require.NoError(t, err)
				_, err = c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{Token: tok})
				require.NoError(t, err)
				require.NoError(t, e.sim.SetFaults(wecomsim.Fault{
					Kind: wecomsim.FaultRateLimit, API: "get_hit_msg_list", Count: 1,
				}))
				before := e.sim.Requests("get_hit_msg_list")
				_, err = c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{Token: tok})
				require.Error(t, err)
				assert.True(t, wecom.IsRateLimited(err), "%v", err)
				assert.False(t, wecom.IsRetryable(err))
				var apiErr *wecom.APIError
				if assert.ErrorAs(t, err, &apiErr) {
					assert.Equal(t, 45009, apiErr.Code)
				}
				assert.Equal(t, 1, e.sim.Requests("get_hit_msg_list")-before, "not retried")

				// The fault is used up, so a request now would succeed: the
				// call fails fast without one.
				require.Empty(t, e.sim.Faults())
				began := time.Now()
				_, err = c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{Token: tok})
				assert.True(t, wecom.IsRateLimited(err), "%v", err)
				assert.Less(t, time.Since(began), time.Second, "fails fast")
				assert.Equal(t, 1, e.sim.Requests("get_hit_msg_list")-before, "no request while blocked")

				// The block is for that API only.
				_, err = collect(c.ListRules(ctx, e.corp, 0))
				assert.NoError(t, err)
			})

			t.Run("RateLimitedWithoutToken", func(t *testing.T) {
				// The simulator's own token-less limit, not a fault: for zone
				// apps the 45009 comes inside response_data.
				e := newEnv(t, tc, tokenlessLimit(1))
				c := e.client()
				ctx := natstest.Context(t)
				_, err := c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{})
				require.NoError(t, err)
				before := e.sim.Requests("get_hit_msg_list")
				_, err = c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{})
				assert.True(t, wecom.IsRateLimited(err), "%v", err)
				_, err = c.GetHitMsgList(ctx, e.corp, wecom.HitMsgListRequest{})
				assert.True(t, wecom.IsRateLimited(err), "%v", err)
				assert.Equal(t, 1, e.sim.Requests("get_hit_msg_list")-before, "one request, then none while blocked")
			})

			t.Run("TransientFailures", func(t *testing.T) {
				const timeout = 250 * time.Millisecond
				e := newEnv(t, tc)
				tests := []struct {
					name     string
					fault    wecomsim.Fault
					attempts int
					requests int
					check    func(*testing.T, error)
				}{
					{"HTTP503ThenOK", wecomsim.Fault{Kind: wecomsim.FaultHTTPError, Count: 1}, 3, 2, func(t *testing.T, err error) {
						assert.NoError(t, err)
					}},
					{"TimeoutThenOK", wecomsim.Fault{Kind: wecomsim.FaultHang, Count: 1, Delay: 5 * time.Second}, 3, 2, func(t *testing.T, err error) {
						assert.NoError(t, err)
					}},
					{"HTTP502Exhausted", wecomsim.Fault{Kind: wecomsim.FaultHTTPError, Status: 502, Count: 3}, 3, 3, func(t *testing.T, err error) {
						var se *wecom.StatusError
						if assert.ErrorAs(t, err, &se) {
							assert.Equal(t, 502, se.StatusCode)
						}
						assert.True(t, wecom.IsRetryable(err))
					}},
					{"TimeoutExhausted", wecomsim.Fault{Kind: wecomsim.FaultHang, Count: 2, Delay: 5 * time.Second}, 2, 2, func(t *testing.T, err error) {
						assert.Error(t, err)
						assert.True(t, wecom.IsRetryable(err), "%v", err)
					}},
				}
				for _, tt := range tests {
					t.Run(tt.name, func(t *testing.T) {
						c := e.client(wecom.WithCallTimeout(timeout), wecom.WithAttempts(tt.attempts))
						ctx := natstest.Context(t)
						_, err := collect(c.ListRules(ctx, e.corp, 0))
						require.NoError(t, err)
						tt.fault.API = "get_rule_list"
						require.NoError(t, e.sim.SetFaults(tt.fault))
						t.Cleanup(func() { _ = e.sim.SetFaults() })
						before := e.sim.Requests("get_rule_list")
						_, err = collect(c.ListRules(ctx, e.corp, 0))
						tt.check(t, err)
						assert.Equal(t, tt.requests, e.sim.Requests("get_rule_list")-before)
						if err != nil {
							for _, tok := range e.cachedTokens() {
								assert.NotContains(t, err.Error(), tok, "no access token in errors")
							}
						}
					})
				}
			})

			if !tc.zone {
				t.Run("ExpiredSuiteToken", func(t *testing.T) {
					// The corp token is rejected, and so is the suite token
					// when the client asks for a new corp token: one suite
					// token refresh, then the corp token, then the retry.
					e := newEnv(t, tc)
					c := e.client()
					ctx := natstest.Context(t)
					_, err := collect(c.ListRules(ctx, e.corp, 0))
					require.NoError(t, err)
					before := e.requests()
					require.NoError(t, e.sim.SetFaults(
						wecomsim.Fault{Kind: wecomsim.FaultExpireAccessToken, API: "get_rule_list", Count: 1},
						wecomsim.Fault{Kind: wecomsim.FaultExpireAccessToken, API: "get_corp_token", Count: 1},
					))
					_, err = collect(c.ListRules(ctx, e.corp, 0))
					require.NoError(t, err)
					after := e.requests()
					assert.Equal(t, 2, after["get_rule_list"]-before["get_rule_list"])
					assert.Equal(t, 2, after["get_corp_token"]-before["get_corp_token"], "42009, then the new corp token")
					assert.Equal(t, 1, after["get_suite_token"]-before["get_suite_token"])
					assert.Empty(t, e.sim.Faults())
				})
			}

			t.Run("SystemBusyRetried", func(t *testing.T) {
				e := newEnv(t, tc)
				c := e.client(wecom.WithAttempts(3))
				ctx := natstest.Context(t)
				_, err := collect(c.ListRules(ctx, e.corp, 0))
				require.NoError(t, err)
				require.NoError(t, e.sim.SetFaults(wecomsim.Fault{
					Kind: wecomsim.FaultErrcode, Errcode: -1, API: "get_rule_detail", Count: 2,
				}))
				id, err := c.CreateRule(ctx, e.corp, wecom.Rule{Name: "r", Semantics: &wecom.Semantics{SemanticsList: []int{2}}})
				require.NoError(t, err)
				before := e.sim.Requests("get_rule_detail")
				got, err := c.GetRule(ctx, e.corp, id)
				require.NoError(t, err)
				assert.Equal(t, "r", got.Name)
				assert.Equal(t, 3, e.sim.Requests("get_rule_detail")-before, "two failures, then success")
				assert.Empty(t, e.sim.Faults())

				// One failure more than the attempts: the error surfaces.
				require.NoError(t, e.sim.SetFaults(wecomsim.Fault{
					Kind: wecomsim.FaultErrcode, Errcode: -1, API: "get_rule_detail", Count: 3,
				}))
				_, err = c.GetRule(ctx, e.corp, id)
				assert.ErrorIs(t, err, wecom.ErrSystemBusy)
				assert.True(t, wecom.IsRetryable(err))
			})
		})
	}
}
