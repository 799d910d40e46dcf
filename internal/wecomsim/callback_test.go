package wecomsim

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestSim_ArchiveCallbacks(t *testing.T) {
	cb := newCBServer(t, testSuite, nil)
	s := newTestSim(t, func(o *Options) { o.Archive.CallbackURL = cb.srv.URL + "/callback/archive?x=1" })

	// The first suite_ticket is pushed at Start.
	natstest.Eventually(t, 5*time.Second, "suite_ticket", func() bool { return len(cb.ofKind("suite_ticket")) == 1 })
	st := cb.ofKind("suite_ticket")[0]
	assert.Equal(t, testSuite, st.to, "envelope ToUserName is the SuiteId")
	assert.Equal(t, map[string]string{"SuiteId": testSuite, "InfoType": "suite_ticket",
		"TimeStamp": strconv.FormatInt(testStart().Unix(), 10), "SuiteTicket": s.SuiteTicket()}, st.fields)

	s.Advance(10 * time.Minute)
	natstest.Eventually(t, 5*time.Second, "second suite_ticket", func() bool { return len(cb.ofKind("suite_ticket")) == 2 })
	assert.Equal(t, s.SuiteTicket(), cb.ofKind("suite_ticket")[1].fields["SuiteTicket"])

	tok := corpToken(t, s)
	createRule(t, s, tok, obj{"name": "r", "keyword": obj{"word_list": []string{"退款"}}})
	_, err := s.SendMessage(testCorp, Message{Text: "退款"})
	require.NoError(t, err)
	_, err = s.SendMessage(testCorp, Message{Text: "还是退款"}) // coalesced into the same callback
	require.NoError(t, err)
	natstest.Eventually(t, 5*time.Second, "hit_keyword", func() bool { return len(cb.ofKind("hit_keyword")) == 1 })
	hk := cb.ofKind("hit_keyword")[0].fields
	assert.Equal(t, testSuite, hk["SuiteId"])
	assert.Equal(t, testCorp, hk["AuthCorpId"])
	assert.Equal(t, strconv.FormatInt(s.Now().Unix(), 10), hk["TimeStamp"])
	require.NotEmpty(t, hk["Token"])
	assert.LessOrEqual(t, len(hk["Token"]), 128)

	// The callback's token opens get_hit_msg_list.
	o := api(t, s, hitsPath, tok, obj{"token": hk["Token"]})
	assert.Len(t, o["msg_list"], 2)

	// A hit within the coalescing interval waits for its end.
	s.Advance(2 * time.Second)
	_, _ = s.SendMessage(testCorp, Message{Text: "退款 3"})
	s.Advance(2 * time.Second)
	assert.Len(t, cb.ofKind("hit_keyword"), 1)
	s.Advance(time.Second)
	natstest.Eventually(t, 5*time.Second, "second hit_keyword", func() bool { return len(cb.ofKind("hit_keyword")) == 2 })
	assert.NotEqual(t, hk["Token"], cb.ofKind("hit_keyword")[1].fields["Token"], "a fresh token each time")
	natstest.Eventually(t, 5*time.Second, "stats", func() bool { return s.CallbackStats()["hit_keyword"].Delivered == 2 })
}

func TestSim_CallbackRetries(t *testing.T) {
	t.Run("RetriedUntilSuccess", func(t *testing.T) {
		cb := newCBServer(t, testSuite, func(n int) (int, string) {
			if n < 3 {
				return http.StatusOK, "SUCCESS\n" // not exactly "success"
			}
			return http.StatusOK, "success"
		})
		s := newTestSim(t, func(o *Options) { o.Archive.CallbackURL = cb.srv.URL })
		natstest.Eventually(t, 5*time.Second, "delivery", func() bool { return s.CallbackStats()["suite_ticket"].Delivered == 1 })
		got := cb.all()
		require.Len(t, got, 3)
		assert.Equal(t, got[0].encrypt, got[2].encrypt, "retries resend the same ciphertext")
		assert.Equal(t, CallbackCounts{Sent: 1, Attempts: 3, Delivered: 1}, s.CallbackStats()["suite_ticket"])
	})
	t.Run("GivesUpAfterThreeRetries", func(t *testing.T) {
		cb := newCBServer(t, testSuite, func(int) (int, string) { return http.StatusInternalServerError, "" })
		s := newTestSim(t, func(o *Options) { o.Archive.CallbackURL = cb.srv.URL })
		natstest.Eventually(t, 5*time.Second, "give up", func() bool { return s.CallbackStats()["suite_ticket"].Failed == 1 })
		assert.Len(t, cb.all(), 4)
		assert.Equal(t, 4, s.CallbackStats()["suite_ticket"].Attempts)
	})
	t.Run("ZoneNeedsOnlyHTTP200", func(t *testing.T) {
		cb := newCBServer(t, testZone, func(int) (int, string) { return http.StatusOK, "" })
		s := newTestSim(t, func(o *Options) { o.Zone.CallbackURL = cb.srv.URL })
		tok := zoneToken(t, s)
		o := syncCall(t, s, tok, "invoke_create_rule", `{"name":"r","semantics":{"semantics_list":[2]}}`)
		require.Equal(t, 0, errcode(decodeResponse(t, o, false)))
		_, err := s.SendMessage(testZone, Message{Text: "13812345678"})
		require.NoError(t, err)
		natstest.Eventually(t, 5*time.Second, "program_notify", func() bool { return s.CallbackStats()["program_notify"].Delivered == 1 })
		got := cb.ofKind("program_notify")
		require.Len(t, got, 1)
		f := got[0].fields
		assert.Equal(t, testZone, got[0].to)
		assert.Equal(t, testZone, f["ToUserName"])
		assert.Equal(t, "sys", f["FromUserName"])
		assert.Equal(t, "event", f["MsgType"])
		assert.Equal(t, "1", f["NotifyScene"])
		assert.Equal(t, strconv.FormatInt(testStart().Unix(), 10), f["CreateTime"])
		require.NotEmpty(t, f["NotifyId"])

		// The notify id carries the token into get_hit_msg_list.
		o = api(t, s, syncPath, tok, obj{"program_id": testProg, "ability_id": "invoke_get_hit_msg_list",
			"notify_id": f["NotifyId"], "request_data": `{"need_detail":1}`})
		res := decodeResponse(t, o, false)
		assert.Len(t, res["msg_list"], 1)
	})
}

func TestSim_CallbackFaults(t *testing.T) {
	t.Run("Dropped", func(t *testing.T) {
		cb := newCBServer(t, testSuite, nil)
		s := newTestSim(t, func(o *Options) {
			o.Archive.CallbackURL = cb.srv.URL
			o.Faults = []Fault{{Kind: FaultDropCallback, API: "suite_ticket", Count: 1}}
		})
		s.Advance(10 * time.Minute)
		natstest.Eventually(t, 5*time.Second, "second ticket", func() bool { return len(cb.all()) == 1 })
		assert.Equal(t, s.SuiteTicket(), cb.all()[0].fields["SuiteTicket"], "the first push was dropped")
		assert.Equal(t, 1, s.CallbackStats()["suite_ticket"].Dropped)
	})
	t.Run("Duplicated", func(t *testing.T) {
		cb := newCBServer(t, testSuite, nil)
		s := newTestSim(t, func(o *Options) {
			o.Archive.CallbackURL = cb.srv.URL
			o.Faults = []Fault{{Kind: FaultDuplicateCallback, Count: 1}}
		})
		natstest.Eventually(t, 5*time.Second, "two copies", func() bool { return len(cb.all()) == 2 })
		got := cb.all()
		assert.Equal(t, got[0].encrypt, got[1].encrypt)
		// The simulator counts a delivery once the receiver's answer is
		// back, which is after the receiver has seen the request.
		want := CallbackCounts{Sent: 1, Attempts: 2, Delivered: 2, Duplicated: 1}
		natstest.Eventually(t, 5*time.Second, "both deliveries counted", func() bool { return s.CallbackStats()["suite_ticket"] == want })
	})
}

func TestSim_LogsNoSecrets(t *testing.T) {
	cb := newCBServer(t, testSuite, func(int) (int, string) { return http.StatusBadGateway, "" })
	var logs syncBuf
	s, err := New(Options{Seed: 1, Start: testStart(), MessageRate: -1, CallbackRetries: -1,
		Archive: Archive{SuiteID: testSuite, SuiteSecret: testSecret, Corps: []Corp{{CorpID: testCorp, PermanentCode: testPerm}},
			Token: testToken, EncodingAESKey: testKey, CallbackURL: cb.srv.URL}}, zerolog.New(&logs))
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background(), "127.0.0.1:0"))
	defer func() { require.NoError(t, s.Close(context.Background())) }()
	tok := corpToken(t, s)
	createRule(t, s, tok, obj{"name": "r", "keyword": obj{"word_list": []string{"x"}}})
	_, err = s.SendMessage(testCorp, Message{Text: "x"})
	require.NoError(t, err)
	natstest.Eventually(t, 5*time.Second, "failed hit_keyword", func() bool { return s.CallbackStats()["hit_keyword"].Failed == 1 })
	hit := cb.ofKind("hit_keyword")[0].fields["Token"]
	require.NotEmpty(t, hit)
	out := logs.String()
	assert.Contains(t, out, "callback given up")
	for _, secret := range []string{testKey, testSecret, testPerm, tok, hit, s.SuiteTicket()} {
		assert.NotContains(t, out, secret)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
