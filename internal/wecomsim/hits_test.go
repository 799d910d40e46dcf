package wecomsim

import (
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

const hitsPath = kw + "get_hit_msg_list"

// fetchAll pages through get_hit_msg_list from cursor and returns the
// entries and the last cursor.
func fetchAll(t testing.TB, s *Sim, tok string, body obj) ([]obj, string) {
	t.Helper()
	var out []obj
	for range 100 {
		o := api(t, s, hitsPath, tok, body)
		require.Equal(t, 0, errcode(o), o)
		for _, m := range o["msg_list"].([]any) {
			out = append(out, m.(obj))
		}
		body["cursor"] = o["next_cursor"]
		if o["has_more"].(float64) == 0 {
			return out, o["next_cursor"].(string)
		}
	}
	t.Fatal("no end of pages")
	return nil, ""
}

func TestSim_GetHitMsgList(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.TokenlessLimit = 1000 })
	tok := corpToken(t, s)
	ruleID := createRule(t, s, tok, obj{"name": "r", "keyword": obj{"word_list": []string{"退款"}},
		"semantics": obj{"semantics_list": []int{2}}})
	var sent []Message
	for i := range 5 {
		m, err := s.SendMessage(testCorp, Message{Text: "退款 " + strconv.Itoa(i)})
		require.NoError(t, err)
		sent = append(sent, m)
		s.Advance(time.Minute)
	}
	_, err := s.SendMessage(testCorp, Message{Text: "nothing here"})
	require.NoError(t, err)

	t.Run("PagesOldestFirst", func(t *testing.T) {
		var got []string
		cursor := ""
		var more []float64
		for range 3 {
			o := api(t, s, hitsPath, tok, obj{"limit": 2, "cursor": cursor})
			require.Equal(t, 0, errcode(o), o)
			for _, m := range o["msg_list"].([]any) {
				got = append(got, m.(obj)["msgid"].(string))
				assert.Nil(t, m.(obj)["msg_detail"], "no detail unless asked")
				hr := m.(obj)["hit_rule_list"].([]any)
				require.Len(t, hr, 1)
				assert.Equal(t, obj{"rule_id": ruleID, "has_hit_keyword": true, "semantics_list": []any{}}, hr[0])
			}
			more = append(more, o["has_more"].(float64))
			cursor = o["next_cursor"].(string)
			assert.LessOrEqual(t, len(cursor), 64)
			_, err := strconv.ParseInt(cursor, 10, 64)
			assert.Error(t, err, "cursor is not a plain number")
		}
		assert.Equal(t, []float64{1, 1, 0}, more)
		want := make([]string, len(sent))
		for i, m := range sent {
			want[i] = m.MsgID
		}
		assert.Equal(t, want, got)

		// At the end: nothing new, same cursor back.
		o := api(t, s, hitsPath, tok, obj{"cursor": cursor})
		assert.Empty(t, o["msg_list"])
		assert.Equal(t, cursor, o["next_cursor"])
		// New hits continue from there.
		m, _ := s.SendMessage(testCorp, Message{Text: "退款 again"})
		o = api(t, s, hitsPath, tok, obj{"cursor": cursor})
		require.Len(t, o["msg_list"], 1)
		assert.Equal(t, m.MsgID, o["msg_list"].([]any)[0].(obj)["msgid"])
	})

	t.Run("NeedDetail", func(t *testing.T) {
		o := api(t, s, hitsPath, tok, obj{"limit": 1, "need_detail": 1})
		d := o["msg_list"].([]any)[0].(obj)["msg_detail"].(obj)
		m := sent[0]
		assert.Equal(t, obj{"type": 1.0, "id": m.Sender.ID}, d["sender"])
		assert.Equal(t, []any{obj{"type": 2.0, "id": m.Receivers[0].ID}}, d["receiver_list"])
		assert.Equal(t, "", d["chatid"])
		assert.EqualValues(t, testStart().Unix(), d["send_time"])
		assert.EqualValues(t, 1, d["msgtype"])
		sei := d["service_encrypt_info"].(obj)
		assert.NotEmpty(t, sei["encrypted_secret_key"])
		assert.EqualValues(t, 1, sei["public_key_ver"])
	})

	t.Run("BeginTime", func(t *testing.T) {
		o := api(t, s, hitsPath, tok, obj{"begin_time": testStart().Add(2 * time.Minute).Unix()})
		require.Equal(t, 0, errcode(o), o)
		assert.Equal(t, sent[2].MsgID, o["msg_list"].([]any)[0].(obj)["msgid"])
	})

	t.Run("Validation", func(t *testing.T) {
		long := make([]byte, 129)
		for i := range long {
			long[i] = 'a'
		}
		for name, body := range map[string]obj{
			"ErrLimit1001":     {"limit": 1001},
			"ErrLimitNegative": {"limit": -1},
			"ErrForgedCursor":  {"cursor": "AAAAAAAAAAEAAAAAAAAAAAAA"},
			"ErrLongCursor":    {"cursor": string(long[:65])},
			"ErrLongToken":     {"token": string(long)},
			"ErrNeedDetail2":   {"need_detail": 2},
		} {
			assert.Equal(t, 40058, errcode(api(t, s, hitsPath, tok, body)), name)
		}
		o := api(t, s, hitsPath, tok, obj{"limit": 1000})
		assert.Equal(t, 0, errcode(o))
	})

	t.Run("FiveDayWindow", func(t *testing.T) {
		s.Advance(5*24*time.Hour - 2*time.Minute)        // now = start+5d+3m: sent[0..2] are older than 5 days
		all, _ := fetchAll(t, s, corpToken(t, s), obj{}) // the old token is long gone
		require.NotEmpty(t, all)
		assert.Equal(t, sent[3].MsgID, all[0]["msgid"])
	})
}

func TestSim_GetHitMsgList_DefaultLimit(t *testing.T) {
	s := newTestSim(t, nil)
	tok := corpToken(t, s)
	createRule(t, s, tok, obj{"name": "r", "keyword": obj{"word_list": []string{"x"}}})
	for range 250 {
		_, err := s.SendMessage(testCorp, Message{Text: "x"})
		require.NoError(t, err)
	}
	ht, err := s.IssueHitToken(testCorp)
	require.NoError(t, err)
	o := api(t, s, hitsPath, tok, obj{"token": ht})
	assert.Len(t, o["msg_list"], 200)
	assert.EqualValues(t, 1, o["has_more"])
	o = api(t, s, hitsPath, tok, obj{"token": ht, "cursor": o["next_cursor"]})
	assert.Len(t, o["msg_list"], 50)
	assert.EqualValues(t, 0, o["has_more"])
}

func TestSim_HitToken(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.TokenlessLimit = 3 })
	tok := corpToken(t, s)
	ht, err := s.IssueHitToken(testCorp)
	require.NoError(t, err)

	// A live token may be used for any number of pages.
	for range 10 {
		require.Equal(t, 0, errcode(api(t, s, hitsPath, tok, obj{"token": ht})))
	}
	s.Advance(10*time.Minute - time.Second)
	require.Equal(t, 0, errcode(api(t, s, hitsPath, tok, obj{"token": ht})))

	// After 10 minutes it counts as no token: 3 calls a minute, then 45009.
	s.Advance(time.Second)
	for i := range 3 {
		require.Equal(t, 0, errcode(api(t, s, hitsPath, tok, obj{"token": ht})), "call %d", i)
	}
	assert.Equal(t, 45009, errcode(api(t, s, hitsPath, tok, obj{"token": ht})))
	assert.Equal(t, 45009, errcode(api(t, s, hitsPath, tok, obj{"token": "unknown"})))
	assert.Equal(t, 45009, errcode(api(t, s, hitsPath, tok, obj{})))
	fresh, _ := s.IssueHitToken(testCorp)
	assert.Equal(t, 0, errcode(api(t, s, hitsPath, tok, obj{"token": fresh})), "a live token bypasses the limit")
	s.Advance(time.Minute)
	assert.Equal(t, 0, errcode(api(t, s, hitsPath, tok, obj{})), "the window slides")
}

// TestSim_GroundTruth generates seeded traffic against rules and checks that
// paging through get_hit_msg_list returns exactly the recorded hits.
func TestSim_GroundTruth(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.TokenlessLimit = 1000 })
	tok := corpToken(t, s)
	pop, err := s.Population(testCorp)
	require.NoError(t, err)
	r1 := createRule(t, s, tok, obj{"name": "words", "keyword": obj{"word_list": []string{"退款", "Refund"}}})
	r2 := createRule(t, s, tok, obj{"name": "behaviour", "semantics": obj{"semantics_list": []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}})
	r3 := createRule(t, s, tok, obj{"name": "scoped", "keyword": obj{"word_list": []string{"退款"}},
		"applicable_range": obj{"target_type": obj{"type_list": []int{1}}, "user": obj{"id_list": pop.Employees[:1]}}})
	for range 20 {
		_, err := s.GenerateMessages(testCorp, 20)
		require.NoError(t, err)
		s.Advance(time.Minute)
	}
	truth := s.Hits()
	require.NotEmpty(t, truth)
	byRule := map[string]int{}
	sems := map[int]bool{}
	want := map[string]map[string]Hit{}
	for _, h := range truth {
		byRule[h.RuleID]++
		for _, c := range h.SemanticsList {
			sems[c] = true
		}
		if want[h.MsgID] == nil {
			want[h.MsgID] = map[string]Hit{}
		}
		want[h.MsgID][h.RuleID] = h
		if h.RuleID == r3 {
			assert.Equal(t, pop.Employees[0], h.Message.Sender.ID, "scoped rule only hits its user")
		}
	}
	assert.Positive(t, byRule[r1])
	assert.Positive(t, byRule[r2])
	assert.Positive(t, byRule[r3])
	assert.GreaterOrEqual(t, len(sems), 8, "traffic exercises most key behaviours: %v", sems)

	got, _ := fetchAll(t, s, tok, obj{"limit": 37, "need_detail": 1})
	require.Len(t, got, len(want), "one entry per message")
	var lastSend float64
	for _, m := range got {
		id := m["msgid"].(string)
		rules := want[id]
		require.NotNil(t, rules, "unexpected message %s", id)
		hr := m["hit_rule_list"].([]any)
		assert.Len(t, hr, len(rules))
		for _, x := range hr {
			x := x.(obj)
			h, ok := rules[x["rule_id"].(string)]
			require.True(t, ok)
			assert.Equal(t, h.HasHitKeyword, x["has_hit_keyword"])
			var codes []int
			for _, c := range x["semantics_list"].([]any) {
				codes = append(codes, int(c.(float64)))
			}
			assert.ElementsMatch(t, h.SemanticsList, codes)
			assert.EqualValues(t, h.Message.MsgType, m["msg_detail"].(obj)["msgtype"])
		}
		send := m["msg_detail"].(obj)["send_time"].(float64)
		assert.GreaterOrEqual(t, send, lastSend, "oldest first")
		lastSend = send
	}
}

func TestSim_Traffic(t *testing.T) {
	run := func(speed float64) *Sim {
		return newTestSim(t, func(o *Options) {
			o.MessageRate = 30
			o.Speed = speed
		})
	}
	t.Run("Deterministic", func(t *testing.T) {
		var runs [2][]string
		for i := range runs {
			s := run(0)
			tok := corpToken(t, s)
			createRule(t, s, tok, obj{"name": "r", "semantics": obj{"semantics_list": []int{2, 9, 10, 13 - 1}}})
			s.Advance(2 * time.Hour)
			for _, h := range s.Hits() {
				runs[i] = append(runs[i], h.MsgID)
			}
			s.mu.Lock()
			n := len(s.corps[testCorp].messages)
			s.mu.Unlock()
			assert.InDelta(t, 3600, n, 400, "about 30 messages a minute")
		}
		require.NotEmpty(t, runs[0])
		assert.Equal(t, runs[0], runs[1])
	})
	t.Run("Speed", func(t *testing.T) {
		// Speed compresses the conversation, not the clock: a fake real
		// clock moved by three hours sees 3h×60×30 messages at ×60, all
		// sent no later than that clock says.
		var mu sync.Mutex
		wall := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return wall }
		s := newTestSim(t, func(o *Options) { o.MessageRate, o.Speed, o.Clock = 1, 60, clock })
		start := s.Now()
		assert.Equal(t, wall, start, "Speed mode runs on Clock, not Start")
		for range 3 * 60 {
			mu.Lock()
			wall = wall.Add(time.Minute)
			mu.Unlock()
			natstest.Eventually(t, 5*time.Second, "the clock to follow", func() bool { return s.Now().Equal(clock()) })
		}
		s.mu.Lock()
		msgs := s.corps[testCorp].messages
		n, last := len(msgs), msgs[len(msgs)-1].SendTime
		s.mu.Unlock()
		assert.InDelta(t, 3*60*60, n, 600, "about 60 messages a real minute")
		assert.LessOrEqual(t, last, clock().Unix(), "no send_time after the real clock")
		assert.Greater(t, last, clock().Add(-time.Minute).Unix())
	})
	t.Run("Search window messages are sorted", func(t *testing.T) {
		s := run(0)
		s.Advance(time.Hour)
		s.mu.Lock()
		msgs := s.corps[testCorp].messages
		sorted := sort.SliceIsSorted(msgs, func(i, j int) bool { return msgs[i].SendTime < msgs[j].SendTime })
		s.mu.Unlock()
		assert.True(t, sorted)
	})
}
