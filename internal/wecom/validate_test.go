package wecom

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func strs(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "id" + strings.Repeat("x", i%5)
	}
	return s
}

func ids(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = int64(i + 1)
	}
	return s
}

const day = 24 * 60 * 60

// okRule is a valid rule the rows below break one field of.
func okRule() Rule {
	return Rule{Name: "r", Keyword: &Keyword{WordList: []string{"w"}}}
}

func withRange(a ApplicableRange) Rule {
	r := okRule()
	r.ApplicableRange = &a
	return r
}

func TestClient_Validation(t *testing.T) {
	ctx := context.Background()
	hits := func(r HitMsgListRequest) func(*Client) error {
		return func(c *Client) error { _, err := c.GetHitMsgList(ctx, "", r); return err }
	}
	create := func(r Rule) func(*Client) error {
		return func(c *Client) error { _, err := c.CreateRule(ctx, "", r); return err }
	}
	update := func(u RuleUpdate) func(*Client) error {
		return func(c *Client) error { return c.UpdateRule(ctx, "", u) }
	}
	search := func(r SearchRequest) func(*Client) error {
		return func(c *Client) error { _, err := collect(c.SearchMsg(ctx, "", r)); return err }
	}
	single := func(n int) *ChatInfo {
		return &ChatInfo{ChatType: 1, IDList: make([]IDInfo, n)}
	}
	long := func(n int) string { return strings.Repeat("a", n) }

	tests := []struct {
		name  string
		zone  bool
		call  func(*Client) error
		field string
	}{
		// Rules.
		{"NameEmpty", false, create(Rule{Keyword: &Keyword{WordList: []string{"w"}}}), "name"},
		{"NameTooLong", false, create(Rule{Name: strings.Repeat("名", 21), Keyword: &Keyword{WordList: []string{"w"}}}), "name"},
		{"NoWordsNoSemantics", false, create(Rule{Name: "r"}), "keyword"},
		{"EmptyWordList", false, create(Rule{Name: "r", Keyword: &Keyword{WordList: []string{}}}), "keyword.word_list"},
		{"TooManyWords", false, create(Rule{Name: "r", Keyword: &Keyword{WordList: strs(21)}}), "keyword.word_list"},
		{"WordTooLong", false, create(Rule{Name: "r", Keyword: &Keyword{WordList: []string{strings.Repeat("词", 33)}}}), "keyword.word_list[0]"},
		{"WordEmpty", false, create(Rule{Name: "r", Keyword: &Keyword{WordList: []string{"w", ""}}}), "keyword.word_list[1]"},
		{"SemanticsZero", false, create(Rule{Name: "r", Semantics: &Semantics{SemanticsList: []int{0}}}), "semantics.semantics_list[0]"},
		{"SemanticsThirteen", false, create(Rule{Name: "r", Semantics: &Semantics{SemanticsList: []int{1, 13}}}), "semantics.semantics_list[1]"},
		{"TargetType", false, create(withRange(ApplicableRange{TargetType: &TypeList{TypeList: []int{3}}})), "applicable_range.target_type.type_list[0]"},
		{"ChatType", false, create(withRange(ApplicableRange{ChatType: &TypeList{TypeList: []int{0}}})), "applicable_range.chat_type.type_list[0]"},
		{"Departments", false, create(withRange(ApplicableRange{Department: &Department{IDList: ids(101)}})), "applicable_range.department.id_list"},
		{"DepartmentsZone", true, create(withRange(ApplicableRange{Department: &Department{IDList: ids(101)}})), "applicable_range.department.id_list"},
		{"UsersArchive", false, create(withRange(ApplicableRange{User: &IDList{IDList: strs(101)}})), "applicable_range.user.id_list"},
		{"UsersZone", true, create(withRange(ApplicableRange{User: &IDList{IDList: strs(1001)}})), "applicable_range.user.id_list"},
		{"ExternalContacts", false, create(withRange(ApplicableRange{ExternalContact: &IDList{IDList: strs(101)}})), "applicable_range.external_contact.id_list"},
		{"ExternalContactsZone", true, create(withRange(ApplicableRange{ExternalContact: &IDList{IDList: strs(101)}})), "applicable_range.external_contact.id_list"},
		{"ChatsArchive", false, create(withRange(ApplicableRange{Chat: &IDList{IDList: strs(101)}})), "applicable_range.chat.id_list"},
		{"ChatsZone", true, create(withRange(ApplicableRange{Chat: &IDList{IDList: strs(2001)}})), "applicable_range.chat.id_list"},
		{"ExcludeMobiles", false, create(withRange(ApplicableRange{ExcludeMobile: &ExcludeMobile{MobileList: strs(101)}})), "applicable_range.exclude_mobile.mobile_list"},
		{"ExcludeMobilesZone", true, create(withRange(ApplicableRange{ExcludeMobile: &ExcludeMobile{MobileList: strs(101)}})), "applicable_range.exclude_mobile.mobile_list"},

		// Updates: the same limits on what is set.
		{"UpdateNoRuleID", false, update(RuleUpdate{Words: Set("w")}), "rule_id"},
		{"UpdateNameTooLong", false, update(RuleUpdate{RuleID: "r1", Name: long(21)}), "name"},
		{"UpdateTooManyWords", false, update(RuleUpdate{RuleID: "r1", Words: Set(strs(21)...)}), "keyword.word_list"},
		{"UpdateWordTooLong", false, update(RuleUpdate{RuleID: "r1", Words: Set(long(33))}), "keyword.word_list[0]"},
		{"UpdateSemantics", false, update(RuleUpdate{RuleID: "r1", Semantics: Set(13)}), "semantics.semantics_list[0]"},
		{"UpdateUsersArchive", false, update(RuleUpdate{RuleID: "r1", Users: Set(strs(101)...)}), "applicable_range.user.id_list"},
		{"UpdateChatsZone", true, update(RuleUpdate{RuleID: "r1", Chats: Set(strs(2001)...)}), "applicable_range.chat.id_list"},
		{"UpdateDepartments", false, update(RuleUpdate{RuleID: "r1", Departments: Set(ids(101)...)}), "applicable_range.department.id_list"},
		{"GetRuleNoID", false, func(c *Client) error { _, err := c.GetRule(ctx, "", ""); return err }, "rule_id"},
		{"DeleteRuleNoID", false, func(c *Client) error { return c.DeleteRule(ctx, "", "") }, "rule_id"},
		{"ListRulesNegativeLimit", false, func(c *Client) error { _, err := collect(c.ListRules(ctx, "", -1)); return err }, "limit"},

		// Hits.
		{"HitsLimit", false, hits(HitMsgListRequest{Limit: 1001}), "limit"},
		{"HitsNegativeLimit", true, hits(HitMsgListRequest{Limit: -1}), "limit"},
		{"HitsCursor", false, hits(HitMsgListRequest{Cursor: long(65)}), "cursor"},
		{"HitsToken", false, hits(HitMsgListRequest{Token: long(129)}), "token"},
		{"HitsNotifyIDZone", true, hits(HitMsgListRequest{NotifyID: long(129)}), "notify_id"},
		{"HitsNotifyIDArchive", false, hits(HitMsgListRequest{NotifyID: "ntf"}), "notify_id"},

		// Search.
		{"QueryWordEmpty", false, search(SearchRequest{}), "query_word"},
		{"QueryWordOneRune", false, search(SearchRequest{QueryWord: "退"}), "query_word"},
		{"SingleChatOneID", false, search(SearchRequest{QueryWord: "ab", ChatInfo: single(1)}), "chat_info.id_list"},
		{"SingleChatThreeIDs", true, search(SearchRequest{QueryWord: "ab", ChatInfo: single(3)}), "chat_info.id_list"},
		{"EndWithoutStart", false, search(SearchRequest{QueryWord: "ab", EndTime: 1716000000}), "end_time"},
		{"EndBeforeStart", false, search(SearchRequest{QueryWord: "ab", StartTime: 1716000000, EndTime: 1716000000}), "end_time"},
		{"WindowArchive", false, search(SearchRequest{QueryWord: "ab", StartTime: 1716000000, EndTime: 1716000000 + 30*day + 1}), "end_time"},
		{"WindowZone", true, search(SearchRequest{QueryWord: "ab", StartTime: 1716000000, EndTime: 1716000000 + 31*day + 1}), "end_time"},
		{"SearchLimit", false, search(SearchRequest{QueryWord: "ab", Limit: 101}), "limit"},
		{"SearchCursor", false, search(SearchRequest{QueryWord: "ab", Cursor: long(65)}), "cursor"},
		{"SenderListZone", true, search(SearchRequest{QueryWord: "ab", ChatInfo: &ChatInfo{ChatType: 2, SenderList: make([]IDInfo, 101)}}), "chat_info.sender_list"},
		{"MsgTypeListArchive", false, search(SearchRequest{QueryWord: "ab", ChatInfo: &ChatInfo{ChatType: 2, MsgTypeList: []int{1}}}), "chat_info.msg_type_list"},
		{"SkipStopWordsArchive", false, search(SearchRequest{QueryWord: "ab", SkipStopWords: true}), "skip_stop_words"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var c *Client
			if tc.zone {
				c, _ = mustClient(t, zoneApp(f.srv.URL, false), nil)
			} else {
				// Archive clients are built without stores here: nothing
				// may reach a token anyway.
				var err error
				c, err = New(archiveApp(f.srv.URL), &Stores{})
				require.NoError(t, err)
			}
			err := tc.call(c)
			require.ErrorIs(t, err, ErrValidation)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, tc.field, ve.Field)
			assert.NotEmpty(t, ve.Rule)
			assert.Zero(t, f.count(""), "no request may be sent")
		})
	}
}

// The larger of two documented limits holds for zone apps only, and the
// bounds themselves pass.
func TestValidation_Bounds(t *testing.T) {
	rangeRule := func(a ApplicableRange) *Rule { r := withRange(a); return &r }
	assert.NoError(t, validateRule(rangeRule(ApplicableRange{User: &IDList{IDList: strs(1000)}}), true))
	assert.Error(t, validateRule(rangeRule(ApplicableRange{User: &IDList{IDList: strs(1000)}}), false))
	assert.NoError(t, validateRule(rangeRule(ApplicableRange{Chat: &IDList{IDList: strs(2000)}}), true))
	assert.Error(t, validateRule(rangeRule(ApplicableRange{Chat: &IDList{IDList: strs(2000)}}), false))
	assert.NoError(t, validateRule(rangeRule(ApplicableRange{
		User: &IDList{IDList: strs(100)}, Chat: &IDList{IDList: strs(100)}, Department: &Department{IDList: ids(100)},
		ExternalContact: &IDList{IDList: strs(100)}, ExcludeMobile: &ExcludeMobile{MobileList: strs(100)},
	}), false))
	assert.NoError(t, validateRule(&Rule{
		Name: strings.Repeat("名", 20), Keyword: &Keyword{WordList: append(strs(19), strings.Repeat("词", 32))},
		Semantics: &Semantics{SemanticsList: []int{1, 12}},
	}, false))
	assert.NoError(t, validateRule(&Rule{Name: "r", Semantics: &Semantics{SemanticsList: []int{5}}}, false), "semantics alone suffice")
	assert.NoError(t, validateUpdate(&RuleUpdate{RuleID: "r1", Words: Set[string](), Users: Set[string]()}, false), "clearing is allowed")

	const start = 1716000000
	assert.NoError(t, validateSearch(&SearchRequest{QueryWord: "退款", StartTime: start, EndTime: start + 30*day}, false))
	assert.Error(t, validateSearch(&SearchRequest{QueryWord: "退款", StartTime: start, EndTime: start + 31*day}, false))
	assert.NoError(t, validateSearch(&SearchRequest{QueryWord: "退款", StartTime: start, EndTime: start + 31*day}, true))
	assert.NoError(t, validateSearch(&SearchRequest{QueryWord: "ab", Limit: 100, Cursor: strings.Repeat("c", 64),
		ChatInfo: &ChatInfo{ChatType: 1, IDList: make([]IDInfo, 2)}}, false))
	assert.NoError(t, validateHits(&HitMsgListRequest{Limit: 1000, Cursor: strings.Repeat("c", 64),
		Token: strings.Repeat("t", 128), NotifyID: strings.Repeat("n", 128)}, true))
}
