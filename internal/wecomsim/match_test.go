package wecomsim

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRule_Match(t *testing.T) {
	all := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	emp := Party{PartyEmployee, "woE1"}
	cust := Party{PartyCustomer, "wmC1"}
	dept := map[string]int64{"woE1": 2}
	card := "622202020011223344" + string(luhnDigit("622202020011223344"))
	badCard := card[:18] + string('0'+(card[18]-'0'+1)%10)
	text := func(s string) *Message {
		return &Message{Sender: emp, Receivers: []Party{cust}, MsgType: MsgText, Text: s}
	}
	for _, tc := range []struct {
		name string
		r    rule
		m    *Message
		kw   bool
		sem  []int
	}{
		{"Keyword", rule{Words: []string{"退款"}}, text("我要退款"), true, nil},
		{"KeywordIgnoresCase", rule{Words: []string{"refund"}}, text("REFUND now"), true, nil},
		{"KeywordCaseSensitive", rule{Words: []string{"refund"}, CaseSensitive: 1}, text("REFUND now"), false, nil},
		{"KeywordExact", rule{Words: []string{"退款"}, MatchRule: 1}, text("我要退款"), false, nil},
		{"KeywordExactTrim", rule{Words: []string{"退款"}, MatchRule: 1, TrimMsg: 1}, text(" 退款 "), true, nil},
		{"Mobile", rule{Semantics: all}, text("call 13812345678 ok"), false, []int{2}},
		{"MobileExcluded", rule{Semantics: all, ExcludeMobiles: []string{"13812345678"}}, text("call 13812345678"), false, nil},
		{"TooLongIsNotMobile", rule{Semantics: all}, text("138123456789"), false, nil},
		{"Email", rule{Semantics: all}, text("mail a.b@example.com"), false, []int{3}},
		{"BankCard", rule{Semantics: all}, text("卡号 " + card), false, []int{7}},
		{"BankCardBadLuhn", rule{Semantics: all}, text("卡号 " + badCard), false, nil},
		{"IDCard", rule{Semantics: all}, text("身份证 11010519491231002X"), false, []int{8}},
		{"URLInText", rule{Semantics: all}, text("see https://example.com/x"), false, []int{10}},
		{"Link", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgLink, Text: "t"}, false, []int{10}},
		{"RedPacket", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgRedPacket}, false, []int{1}},
		{"Card", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgCard}, false, []int{4}},
		{"QRImage", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgImage, QRCode: true}, false, []int{5}},
		{"PlainImage", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgImage}, false, nil},
		{"Recall", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgVoice, Recalled: true}, false, []int{6}},
		{"File", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgFile, Text: "a.pdf"}, false, []int{9}},
		{"WeDriveIsNotFile", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgWeDriveFile, Text: "a.pdf"}, false, nil},
		{"MiniProgram", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgMiniProgram, Text: "t"}, false, []int{11}},
		{"Welcome", rule{Semantics: all}, &Message{Sender: emp, MsgType: MsgText, Text: "hi", Welcome: true}, false, []int{12}},
		{"OnlyRuleSemantics", rule{Semantics: []int{3}}, text("13812345678 a@b.cn"), false, []int{3}},
		{"TargetCustomerOnly", rule{Words: []string{"x"}, TargetTypes: []int{2}}, text("x"), false, nil},
		{"GroupOnly", rule{Words: []string{"x"}, ChatTypes: []int{2}}, text("x"), false, nil},
		{"UserListOther", rule{Words: []string{"x"}, Users: []string{"woOther"}}, text("x"), false, nil},
		{"DepartmentMatches", rule{Words: []string{"x"}, Users: []string{"woOther"}, Departments: []int64{2}}, text("x"), true, nil},
		{"UserListDoesNotScopeCustomers", rule{Words: []string{"x"}, Users: []string{"woOther"}},
			&Message{Sender: cust, MsgType: MsgText, Text: "x"}, true, nil},
		{"ChatListDoesNotScopeSingleChats", rule{Words: []string{"x"}, Chats: []string{"wrG"}}, text("x"), true, nil},
		{"ChatListScopesGroups", rule{Words: []string{"x"}, Chats: []string{"wrG"}},
			&Message{Sender: emp, ChatID: "wrOther", MsgType: MsgText, Text: "x"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := tc.r.match(tc.m, detect(tc.m), dept)
			assert.Equal(t, tc.kw || len(tc.sem) > 0, ok)
			assert.Equal(t, tc.kw, h.HasHitKeyword)
			if len(tc.sem) > 0 {
				assert.Equal(t, tc.sem, h.SemanticsList)
			} else {
				assert.Empty(t, h.SemanticsList)
			}
		})
	}
}

func TestChecksums(t *testing.T) {
	assert.True(t, luhnValid("4111111111111111"))
	assert.False(t, luhnValid("4111111111111112"))
	assert.Equal(t, byte('X'), idCheck("11010519491231002"))
	assert.Equal(t, byte('1'), luhnDigit("411111111111111"))
}
