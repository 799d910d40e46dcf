package wecomsim

import (
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const kw = "/cgi-bin/chatdata/keyword/"

func ids(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strings.Repeat("x", 3) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
	}
	return out
}

func TestSim_CreateRule_Validation(t *testing.T) {
	s := newTestSim(t, nil)
	tok := corpToken(t, s)
	words := func(n int) []string { return ids(n, "w") }
	for _, tc := range []struct {
		name string
		body obj
		code int
	}{
		{"OK", obj{"name": "退款", "keyword": obj{"word_list": []string{"退款"}}}, 0},
		{"OKSemanticsOnly", obj{"name": "phones", "semantics": obj{"semantics_list": []int{2, 12}}}, 0},
		{"OKTwentyChars", obj{"name": strings.Repeat("名", 20), "keyword": obj{"word_list": words(20)}}, 0},
		{"ErrNameRequired", obj{"keyword": obj{"word_list": []string{"a"}}}, 40058},
		{"ErrNameTooLong", obj{"name": strings.Repeat("名", 21), "keyword": obj{"word_list": []string{"a"}}}, 40058},
		{"ErrTooManyWords", obj{"name": "n", "keyword": obj{"word_list": words(21)}}, 40058},
		{"ErrWordTooLong", obj{"name": "n", "keyword": obj{"word_list": []string{strings.Repeat("字", 33)}}}, 40058},
		{"ErrEmptyWord", obj{"name": "n", "keyword": obj{"word_list": []string{""}}}, 40058},
		{"ErrSemantics13", obj{"name": "n", "semantics": obj{"semantics_list": []int{13}}}, 40058},
		{"ErrSemantics0", obj{"name": "n", "semantics": obj{"semantics_list": []int{0}}}, 40058},
		{"ErrNothingToMatch", obj{"name": "n"}, 40058},
		{"ErrCaseFlag", obj{"name": "n", "keyword": obj{"word_list": []string{"a"}, "is_case_sensitive": 2}}, 40058},
		{"ErrTargetType", obj{"name": "n", "keyword": obj{"word_list": []string{"a"}},
			"applicable_range": obj{"target_type": obj{"type_list": []int{3}}}}, 40058},
		{"ErrUsers101", obj{"name": "n", "keyword": obj{"word_list": []string{"a"}},
			"applicable_range": obj{"user": obj{"id_list": ids(101, "wo")}}}, 40058},
		{"ErrChats101", obj{"name": "n", "keyword": obj{"word_list": []string{"a"}},
			"applicable_range": obj{"chat": obj{"id_list": ids(101, "wr")}}}, 40058},
		{"ErrDepartments101", obj{"name": "n", "keyword": obj{"word_list": []string{"a"}},
			"applicable_range": obj{"department": obj{"id_list": make([]int, 101)}}}, 40058},
		{"ErrExternal101", obj{"name": "n", "keyword": obj{"word_list": []string{"a"}},
			"applicable_range": obj{"external_contact": obj{"id_list": ids(101, "wm")}}}, 40058},
		{"ErrMobiles101", obj{"name": "n", "keyword": obj{"word_list": []string{"a"}},
			"applicable_range": obj{"exclude_mobile": obj{"mobile_list": ids(101, "1")}}}, 40058},
		{"ErrDataFormat", obj{"name": 5}, 47001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := api(t, s, kw+"create_rule", tok, tc.body)
			assert.Equal(t, tc.code, errcode(o), o)
			if tc.code == 0 {
				assert.NotEmpty(t, o["rule_id"])
			}
		})
	}

	t.Run("OKZoneLargerLimits", func(t *testing.T) {
		zt := zoneToken(t, s)
		body := `{"name":"n","keyword":{"word_list":["a"]},"applicable_range":{"user":{"id_list":["` +
			strings.Join(ids(1000, "wo"), `","`) + `"]}}}`
		o := syncCall(t, s, zt, "invoke_create_rule", body)
		assert.Equal(t, 0, errcode(o), o)
		assert.Equal(t, 0, errcode(decodeResponse(t, o, false)))
	})
}

func TestSim_RuleCRUD(t *testing.T) {
	s := newTestSim(t, nil)
	tok := corpToken(t, s)
	id := createRule(t, s, tok, obj{
		"name":             "敏感",
		"keyword":          obj{"word_list": []string{"退款", "投诉"}},
		"semantics":        obj{"semantics_list": []int{2, 7}},
		"applicable_range": obj{"user": obj{"id_list": []string{"woA"}}, "chat_type": obj{"type_list": []int{1}}},
	})
	detail := func() obj {
		o := api(t, s, kw+"get_rule_detail", tok, obj{"rule_id": id})
		require.Equal(t, 0, errcode(o), o)
		return o
	}
	d := detail()
	assert.Equal(t, "敏感", d["name"])
	assert.Equal(t, []any{"退款", "投诉"}, d["keyword"].(obj)["word_list"])
	assert.Equal(t, []any{2.0, 7.0}, d["semantics"].(obj)["semantics_list"])
	ar := d["applicable_range"].(obj)
	assert.Equal(t, []any{"woA"}, ar["user"].(obj)["id_list"])

	t.Run("UpdateAbsentFieldsUnchanged", func(t *testing.T) {
		o := api(t, s, kw+"update_rule", tok, obj{"rule_id": id, "name": "改名"})
		require.Equal(t, 0, errcode(o), o)
		d := detail()
		assert.Equal(t, "改名", d["name"])
		assert.Equal(t, []any{"退款", "投诉"}, d["keyword"].(obj)["word_list"])
		assert.Equal(t, []any{"woA"}, d["applicable_range"].(obj)["user"].(obj)["id_list"])
		assert.NotNil(t, d["applicable_range"].(obj)["chat_type"])
	})
	t.Run("UpdateEmptyListClears", func(t *testing.T) {
		o := api(t, s, kw+"update_rule", tok, obj{"rule_id": id,
			"applicable_range": obj{"user": obj{"id_list": []string{}}}})
		require.Equal(t, 0, errcode(o), o)
		ar := detail()["applicable_range"].(obj)
		assert.Nil(t, ar["user"], "user list cleared")
		assert.NotNil(t, ar["chat_type"], "chat_type untouched")

		o = api(t, s, kw+"update_rule", tok, obj{"rule_id": id, "keyword": obj{"word_list": []string{}}})
		require.Equal(t, 0, errcode(o), o)
		assert.Empty(t, detail()["keyword"].(obj)["word_list"])
	})
	t.Run("ErrUpdateLeavesNothing", func(t *testing.T) {
		o := api(t, s, kw+"update_rule", tok, obj{"rule_id": id, "semantics": obj{"semantics_list": []int{}}})
		assert.Equal(t, 40058, errcode(o))
		assert.Equal(t, []any{2.0, 7.0}, detail()["semantics"].(obj)["semantics_list"], "failed update changes nothing")
	})
	t.Run("ErrUnknownRule", func(t *testing.T) {
		assert.Equal(t, 40058, errcode(api(t, s, kw+"update_rule", tok, obj{"rule_id": "nope", "name": "x"})))
		assert.Equal(t, 40058, errcode(api(t, s, kw+"get_rule_detail", tok, obj{})))
	})
	t.Run("ListPages", func(t *testing.T) {
		id2 := createRule(t, s, tok, obj{"name": "b", "keyword": obj{"word_list": []string{"b"}}})
		id3 := createRule(t, s, tok, obj{"name": "c", "keyword": obj{"word_list": []string{"c"}}})
		var got []string
		cursor := ""
		for range 5 {
			o := api(t, s, kw+"get_rule_list", tok, obj{"limit": 2, "cursor": cursor})
			require.Equal(t, 0, errcode(o), o)
			for _, r := range o["rule_list"].([]any) {
				got = append(got, r.(obj)["rule_id"].(string))
				assert.EqualValues(t, testStart().Unix(), r.(obj)["create_time"])
			}
			cursor = o["next_cursor"].(string)
			if o["has_more"].(float64) == 0 {
				break
			}
		}
		assert.Equal(t, []string{id, id2, id3}, got)
		assert.Equal(t, 40058, errcode(api(t, s, kw+"get_rule_list", tok, obj{"cursor": "AAAA"})))
		assert.Equal(t, 40058, errcode(api(t, s, kw+"get_rule_list", tok, obj{"limit": 1001})))
	})
	t.Run("Delete", func(t *testing.T) {
		require.Equal(t, 0, errcode(api(t, s, kw+"delete_rule", tok, obj{"rule_id": id})))
		assert.Equal(t, 40058, errcode(api(t, s, kw+"get_rule_detail", tok, obj{"rule_id": id})))
		assert.Equal(t, 40058, errcode(api(t, s, kw+"delete_rule", tok, obj{"rule_id": id})))
	})
}

func TestSim_SeedDemoRules(t *testing.T) {
	s, err := New(Options{Seed: 3, MessageRate: -1, Archive: Archive{SuiteID: "s", SuiteSecret: "x",
		Corps: []Corp{{CorpID: "c1", PermanentCode: "p"}}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SeedDemoRules(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GenerateMessages("c1", 300); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, h := range s.Hits() {
		names[h.RuleID] = true
	}
	if len(names) < len(DemoRules()) {
		t.Fatalf("300 messages hit %d of %d demo rules", len(names), len(DemoRules()))
	}
	if _, err := s.AddRule("nope", "n", []string{"w"}, nil); !errors.Is(err, ErrUnknownCorp) {
		t.Fatalf("unknown corp: %v", err)
	}
	if _, err := s.AddRule("c1", "", nil, nil); !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("invalid rule: %v", err)
	}
}
