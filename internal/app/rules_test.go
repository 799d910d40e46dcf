package app_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// opsSystem is a running receiver and simulator, with a configuration for
// operator commands that reach them over TCP, as an operator's would.
type opsSystem struct {
	*system
	cfgPath string
}

func startOpsSystem(t *testing.T) *opsSystem {
	t.Helper()
	s := startSystem(t, "0s")
	path := opsConfig(t, s, "")
	return &opsSystem{system: s, cfgPath: path}
}

// run runs the receiver with args and -config, and returns the exit code,
// stdout and stderr.
func (s *opsSystem) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr testlog.Buffer
	args = append(args, "-config", s.cfgPath)
	code := run(context.Background(), args, cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	return code, stdout.String(), stderr.String()
}

// getRule runs "rules get -o json" and decodes its document.
func (s *opsSystem) getRule(t *testing.T, id string) wecom.RuleDetail {
	t.Helper()
	code, out, errOut := s.run(t, "rules", "get", id, "-o", "json")
	require.Equal(t, 0, code, errOut)
	var r wecom.RuleDetail
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	return r
}

// decodeLines decodes one JSON document per line.
func decodeLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var all []T
	for line := range strings.Lines(out) {
		var v T
		require.NoError(t, json.Unmarshal([]byte(line), &v), line)
		all = append(all, v)
	}
	return all
}

func TestRun_Rules(t *testing.T) {
	s := startOpsSystem(t)
	// The "nothing was sent" checks count WeCom calls; the start-up rule
	// listing makes some of its own, so let it end first.
	select {
	case <-s.m.RulesWarmed():
	case <-time.After(30 * time.Second):
		t.Fatal("start-up rule listing did not end")
	}
	ctx := context.Background()
	client := s.m.Clients()["archive"]
	var seeded []wecom.RuleSummary
	for r, err := range client.ListRules(ctx, simCorp, 0) {
		require.NoError(t, err)
		seeded = append(seeded, r)
	}
	require.Len(t, seeded, 4, "startSystem's rules")

	var created []string // ids, in order
	t.Run("CreateTable", func(t *testing.T) {
		rangeFile := filepath.Join(t.TempDir(), "range.json")
		require.NoError(t, writeFile(rangeFile,
			`{"target_type":{"type_list":[1]},"user":{"id_list":["wo1","wo2","wo3","wo4"]},"chat_type":{"type_list":[2]}}`))
		code, out, errOut := s.run(t, "rules", "create", "-app", "archive", "-name", "外部联系",
			"-words", "加微信, 私聊", "-semantics", "mobile,3,bank-card", "-range", rangeFile)
		require.Equal(t, 0, code, errOut)
		id, ok := strings.CutPrefix(strings.TrimSpace(out), "created rule ")
		require.True(t, ok, out)
		id, _, _ = strings.Cut(id, " ")
		assert.Contains(t, out, `"外部联系"`)
		created = append(created, id)

		r := s.getRule(t, id)
		assert.Equal(t, id, r.RuleID)
		assert.Equal(t, "外部联系", r.Name)
		assert.Equal(t, []string{"加微信", "私聊"}, r.Keyword.WordList)
		assert.Equal(t, []int{2, 3, 7}, r.Semantics.SemanticsList)
		assert.Equal(t, []string{"wo1", "wo2", "wo3", "wo4"}, r.ApplicableRange.User.IDList)

		// The table shows every field and sums the range up.
		code, out, errOut = s.run(t, "rules", "get", id)
		require.Equal(t, 0, code, errOut)
		assert.Regexp(t, `(?m)^RULE_ID\s+`+id+`$`, out)
		assert.Regexp(t, `(?m)^NAME\s+外部联系$`, out)
		assert.Regexp(t, `(?m)^WORDS\s+加微信, 私聊$`, out)
		assert.Regexp(t, `(?m)^SEMANTICS\s+2 mobile, 3 email, 7 bank_card$`, out)
		assert.Regexp(t, `(?m)^RANGE\s+targets: employee; chat types: group; users: 4 \(wo1,wo2,wo3,…\)$`, out)
	})

	t.Run("CreateJSON", func(t *testing.T) {
		code, out, errOut := s.run(t, "rules", "create", "-name", "钱", "-semantics", "red_packet", "-o", "json")
		require.Equal(t, 0, code, errOut)
		var got wecom.RuleSummary
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.NotEmpty(t, got.RuleID)
		assert.Equal(t, "钱", got.Name)
		created = append(created, got.RuleID)
		r := s.getRule(t, got.RuleID)
		assert.Equal(t, []int{1}, r.Semantics.SemanticsList)
		if r.Keyword != nil {
			assert.Empty(t, r.Keyword.WordList)
		}
	})
	require.Len(t, created, 2)

	t.Run("List", func(t *testing.T) {
		code, out, errOut := s.run(t, "rules", "list", "-o", "json")
		require.Equal(t, 0, code, errOut)
		got := decodeLines[wecom.RuleSummary](t, out)
		require.Len(t, got, 6)
		var ids []string
		for _, r := range got {
			ids = append(ids, r.RuleID)
			assert.Positive(t, r.CreateTime)
		}
		for _, r := range seeded {
			assert.Contains(t, ids, r.RuleID)
		}
		for _, id := range created {
			assert.Contains(t, ids, id)
		}

		code, out, errOut = s.run(t, "rules", "list")
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 7, out)
		assert.Regexp(t, `^RULE_ID\s+NAME\s+CREATED$`, lines[0])
		for _, r := range got {
			row := tableRow(t, lines, r.RuleID)
			created := time.Unix(r.CreateTime, 0).Local().Format("2006-01-02 15:04:05")
			assert.True(t, strings.HasSuffix(row, "  "+created), row)
			assert.Contains(t, row, "  "+r.Name+"  ", row)
		}
	})

	t.Run("Update", func(t *testing.T) {
		id := created[0]
		before := s.getRule(t, id)
		code, out, errOut := s.run(t, "rules", "update", id, "-name", "外部联系2", "-clear", "words,users")
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, "updated rule "+id+"\n", out)

		after := s.getRule(t, id)
		assert.Equal(t, "外部联系2", after.Name)
		if after.Keyword != nil {
			assert.Empty(t, after.Keyword.WordList, "cleared")
		}
		if after.ApplicableRange.User != nil {
			assert.Empty(t, after.ApplicableRange.User.IDList, "cleared")
		}
		assert.Equal(t, before.Semantics, after.Semantics, "left out: unchanged")
		assert.Equal(t, before.ApplicableRange.TargetType, after.ApplicableRange.TargetType, "unchanged")
		assert.Equal(t, before.ApplicableRange.ChatType, after.ApplicableRange.ChatType, "unchanged")

		// A range file replaces the members it holds and keeps the rest;
		// -o json prints the rule id.
		rangeFile := filepath.Join(t.TempDir(), "range.json")
		require.NoError(t, writeFile(rangeFile, `{"chat":{"id_list":["wrA"]}}`))
		code, out, errOut = s.run(t, "rules", "update", "-o", "json", "-range", rangeFile, "-words", "转账", id)
		require.Equal(t, 0, code, errOut)
		assert.JSONEq(t, `{"rule_id":"`+id+`","name":"","create_time":0}`, out)
		after = s.getRule(t, id)
		assert.Equal(t, []string{"wrA"}, after.ApplicableRange.Chat.IDList)
		assert.Equal(t, []string{"转账"}, after.Keyword.WordList)
		assert.Equal(t, before.ApplicableRange.TargetType, after.ApplicableRange.TargetType)
		assert.Equal(t, "外部联系2", after.Name)
	})

	t.Run("Delete", func(t *testing.T) {
		id := created[1]
		code, out, errOut := s.run(t, "rules", "delete", id)
		require.Equal(t, 0, code, errOut)
		assert.Equal(t, "deleted rule "+id+"\n", out)

		code, out, errOut = s.run(t, "rules", "get", id)
		assert.Equal(t, 1, code, "a WeCom error")
		assert.Empty(t, out)
		assert.Contains(t, errOut, "wecom get_rule_detail: errcode 40058: invalid parameter")

		code, _, errOut = s.run(t, "rules", "delete", id)
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "wecom delete_rule: errcode 40058")
	})

	t.Run("Invalid", func(t *testing.T) {
		long := strings.Repeat("名", 21)
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"NameTooLong", []string{"create", "-name", long, "-words", "a"}, "invalid name (-name): 1 to 20 characters; nothing was sent"},
			{"SemanticsCode", []string{"create", "-name", "x", "-semantics", "2,13"}, "invalid semantics.semantics_list[1] (-semantics): a code from 1 to 12"},
			{"SemanticsName", []string{"create", "-name", "x", "-semantics", "mobile,phone"}, `-semantics: unknown key behaviour "phone"`},
			{"NoWords", []string{"create", "-name", "x"}, "invalid keyword (-words or -semantics)"},
			{"WordTooLong", []string{"create", "-name", "x", "-words", "a," + strings.Repeat("b", 33)}, "invalid keyword.word_list[1] (-words)"},
			{"EmptyWords", []string{"update", "r1", "-words", ""}, "-clear"},
			{"RangeUnknownMember", []string{"create", "-name", "x", "-words", "a", "-range", "UNKNOWN"}, `unknown field "users"`},
			{"RangeTooManyUsers", []string{"update", "r1", "-range", "MANY"}, "invalid applicable_range.user.id_list (-range or -clear): at most 100 entries"},
			{"ClearUnknown", []string{"update", "r1", "-clear", "word"}, `-clear: unknown list "word"`},
			{"ClearAndSet", []string{"update", "r1", "-words", "a", "-clear", "words"}, "-clear words: the list is also set by -words"},
			{"NothingToUpdate", []string{"update", "r1"}, "nothing to update"},
			{"EmptyName", []string{"update", "r1", "-name", ""}, "-name: empty"},
			{"NoRuleID", []string{"get"}, "RULE_ID is required"},
			{"TwoRuleIDs", []string{"delete", "r1", "r2"}, "one RULE_ID"},
			{"UnknownFlag", []string{"list", "-x"}, "flag provided but not defined: -x"},
			{"UnknownCommand", []string{"rename"}, `unknown command "rename"`},
			{"FlagsFirst", []string{"-app", "archive", "list"}, "the command comes first"},
			{"UnknownApp", []string{"list", "-app", "zone"}, `-app "zone" is not configured`},
			{"UnknownCorp", []string{"list", "-corp", "wwOther"}, `-corp "wwOther" is not a corp`},
			{"Output", []string{"list", "-o", "yaml"}, `want "table" or "json"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				args := slices.Clone(tc.args)
				for i, a := range args {
					switch a {
					case "UNKNOWN":
						args[i] = filepath.Join(dir, "r.json")
						require.NoError(t, writeFile(args[i], `{"users":{"id_list":["a"]}}`))
					case "MANY":
						ids, _ := json.Marshal(slices.Repeat([]string{"wo"}, 101))
						args[i] = filepath.Join(dir, "r.json")
						require.NoError(t, writeFile(args[i], `{"user":{"id_list":`+string(ids)+`}}`))
					}
				}
				calls := ruleCalls(s.sim)
				code, out, errOut := s.run(t, append([]string{"rules"}, args...)...)
				assert.Equal(t, 2, code, errOut)
				assert.Empty(t, out)
				assert.Contains(t, errOut, tc.want)
				assert.Equal(t, calls, ruleCalls(s.sim), "nothing sent")
			})
		}
	})

	t.Run("Help", func(t *testing.T) {
		code, out, _ := s.run(t, "rules", "-h")
		assert.Equal(t, 0, code)
		assert.Contains(t, out, "update RULE_ID")
		var stderr testlog.Buffer
		code = run(context.Background(), []string{"rules", "update", "-h"}, cli.Env{LookupEnv: noEnv, Stdout: &stderr, Stderr: &stderr})
		assert.Equal(t, 0, code)
		assert.Contains(t, stderr.String(), "A list flag left out leaves that list unchanged")
		assert.Contains(t, stderr.String(), "-clear")
	})
}

// tableRow is the table line of a rule.
func tableRow(t *testing.T, lines []string, id string) string {
	t.Helper()
	for _, l := range lines {
		if strings.HasPrefix(l, id+" ") {
			return l
		}
	}
	t.Fatalf("no row for %s in\n%s", id, strings.Join(lines, "\n"))
	return ""
}

// ruleCalls counts the simulator's rule requests of every kind.
func ruleCalls(sim *wecomsim.Sim) [5]int {
	var n [5]int
	for i, api := range []string{"create_rule", "get_rule_list", "get_rule_detail", "update_rule", "delete_rule"} {
		n[i] = sim.Requests(api)
	}
	return n
}

func TestRun_Search(t *testing.T) {
	s := startOpsSystem(t)
	msgs, err := s.sim.GenerateMessages(simCorp, 300)
	require.NoError(t, err)
	// A two-character word from a text that several messages share.
	count := map[string]int{}
	var group wecomsim.Message
	for _, m := range msgs {
		if r := []rune(m.Text); len(r) >= 2 {
			count[string(r[:2])]++
		}
		if m.ChatID != "" && m.Text != "" {
			group = m
		}
	}
	var word string
	for w, n := range count {
		if n > count[word] {
			word = w
		}
	}
	require.Greater(t, count[word], 10, "enough matches for several pages")
	require.NotEmpty(t, group.ChatID)

	client := s.m.Clients()["archive"]
	want := func(t *testing.T, req wecom.SearchRequest) []string {
		t.Helper()
		var ids []string
		for h, err := range client.SearchMsg(context.Background(), simCorp, req) {
			require.NoError(t, err)
			ids = append(ids, h.MsgID)
		}
		return ids
	}

	t.Run("Table", func(t *testing.T) {
		ids := want(t, wecom.SearchRequest{QueryWord: word})
		require.GreaterOrEqual(t, len(ids), count[word])
		before := s.sim.Requests("search_msg")
		code, out, errOut := s.run(t, "search", word, "-app", "archive", "-limit", "7", "-from", "1h")
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		assert.Equal(t, ids, lines, "stdout holds the msgids only")
		assert.Contains(t, errOut, strconv.Itoa(len(ids))+" messages\n", "the count is a note, on stderr")
		assert.Equal(t, (len(ids)+6)/7, s.sim.Requests("search_msg")-before, "every page of 7")
	})

	t.Run("JSONGroup", func(t *testing.T) {
		q := string([]rune(group.Text)[:2])
		ids := want(t, wecom.SearchRequest{QueryWord: q, ChatInfo: &wecom.ChatInfo{ChatType: 2, ChatID: group.ChatID}})
		require.Contains(t, ids, group.MsgID)
		code, out, errOut := s.run(t, "search", "-chat", group.ChatID, "-o", "json", "-limit", "2", q)
		require.Equal(t, 0, code, errOut)
		var got []string
		for _, h := range decodeLines[wecom.SearchHit](t, out) {
			got = append(got, h.MsgID)
		}
		assert.Equal(t, ids, got)
	})

	t.Run("Between", func(t *testing.T) {
		var single wecomsim.Message
		for _, m := range msgs {
			if m.ChatID == "" && len([]rune(m.Text)) >= 2 {
				single = m
				break
			}
		}
		require.NotEmpty(t, single.MsgID)
		q := string([]rune(single.Text)[:2])
		a, b := single.Sender.ID, single.Receivers[0].ID
		code, out, errOut := s.run(t, "search", q, "-between", b+","+a,
			"-from", "2h", "-to", time.Now().Format(time.RFC3339))
		require.Equal(t, 0, code, errOut)
		assert.Contains(t, strings.Split(out, "\n"), single.MsgID)
	})

	t.Run("Invalid", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"ShortQuery", []string{"x"}, "invalid query_word (QUERY): at least 2 characters; nothing was sent"},
			{"NoQuery", []string{}, "want one QUERY"},
			{"BetweenThree", []string{"hello", "-between", "wo1,wo2,wm3"}, "invalid chat_info.id_list (-between): exactly 2 entries"},
			{"ZoneOnlyTypes", []string{"hello", "-types", "text,link"}, "invalid chat_info.msg_type_list (-types): only for zone apps"},
			{"UnknownType", []string{"hello", "-types", "txt"}, `-types: unknown message type "txt"`},
			{"SenderCustomer", []string{"hello", "-sender", "wmX"}, "employees (open_userid)"},
			{"ZoneOnlySender", []string{"hello", "-sender", "wo1"}, "invalid chat_info.sender_list (-sender): only for zone apps"},
			{"BadTime", []string{"hello", "-from", "yesterday"}, "-from: want RFC 3339 or a duration"},
			{"ToWithoutFrom", []string{"hello", "-to", "1h"}, "invalid end_time (-to): requires start_time"},
			{"Window", []string{"hello", "-from", "800h", "-to", "1h"}, "invalid end_time (-to): at most 30 days"},
			{"Limit", []string{"hello", "-limit", "101"}, "invalid limit (-limit): between 0 and 100"},
			{"ChatType", []string{"hello", "-chat-type", "private"}, `-chat-type: "private"`},
			{"GroupWithoutChat", []string{"hello", "-chat-type", "group"}, "-chat-type group needs -chat ID"},
			{"ChatAndBetween", []string{"hello", "-chat", "wrA", "-between", "wo1,wm2"}, "-between is a single chat"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := s.sim.Requests("search_msg")
				code, out, errOut := s.run(t, append([]string{"search"}, tc.args...)...)
				assert.Equal(t, 2, code, errOut)
				assert.Empty(t, out)
				assert.Contains(t, errOut, tc.want)
				assert.Equal(t, before, s.sim.Requests("search_msg"), "nothing sent")
			})
		}
	})
}
