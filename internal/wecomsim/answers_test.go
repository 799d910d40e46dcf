package wecomsim

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestSim_Answers(t *testing.T) {
	// The receiver refuses the first delivery, answers a wrong body to the
	// second and acknowledges the third.
	cb := newCBServer(t, testSuite, func(n int) (int, string) {
		switch n {
		case 1:
			return http.StatusServiceUnavailable, "store_timeout"
		case 2:
			return http.StatusOK, "ok"
		}
		return http.StatusOK, "success"
	})
	s := newTestSim(t, func(o *Options) { o.Archive.CallbackURL = cb.srv.URL + "/callback/archive" })
	natstest.Eventually(t, 5*time.Second, "three deliveries", func() bool { return len(s.Answers().Answers) == 3 })

	log := s.Answers()
	require.Len(t, log.Answers, 3)
	assert.Zero(t, log.Dropped)
	got := cb.all()
	require.NotEmpty(t, got)
	for i, want := range []struct {
		status  int
		success bool
	}{{503, false}, {200, false}, {200, true}} {
		a := log.Answers[i]
		assert.Equal(t, CallbackSuiteTicket, a.Kind, "answer %d", i)
		assert.Equal(t, want.status, a.Status, "answer %d", i)
		assert.Equal(t, want.success, a.Success, "answer %d", i)
		assert.Equal(t, got[0].encrypt, a.Encrypt, "answer %d: retries repeat the ciphertext", i)
		assert.False(t, a.At.IsZero())
	}

	// Over HTTP as well.
	o := do(t, http.MethodGet, s.URL()+"/_sim/answers", nil)
	assert.Len(t, o["answers"], 3)
}

func TestSim_AnswersUnreachable(t *testing.T) {
	s := newTestSim(t, func(o *Options) {
		o.Archive.CallbackURL = "http://127.0.0.1:1/callback/archive"
		o.CallbackRetries = -1
	})
	natstest.Eventually(t, 5*time.Second, "one delivery", func() bool { return len(s.Answers().Answers) == 1 })
	a := s.Answers().Answers[0]
	assert.Zero(t, a.Status, "no answer")
	assert.False(t, a.Success)
	assert.NotEmpty(t, a.Encrypt)
}

// TestSim_RateAboveOnePerSecond checks that MessageRate means what it says
// above one message per second, the floor interarrival once had.
func TestSim_RateAboveOnePerSecond(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.MessageRate = 600 })
	s.Advance(10 * time.Minute)
	s.mu.Lock()
	n := len(s.corps[testCorp].messages)
	s.mu.Unlock()
	assert.InDelta(t, 6000, n, 400, "about 600 messages a minute")
}

func TestSim_SetMessageRate(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.MessageRate = 60 })
	count := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.corps[testCorp].messages)
	}
	s.Advance(time.Minute)
	require.Positive(t, count())

	o := do(t, http.MethodPost, s.URL()+"/_sim/traffic", obj{"rate": 0})
	assert.Equal(t, obj{"rate": 0.0}, o)
	n := count()
	s.Advance(time.Hour)
	assert.Equal(t, n, count(), "no traffic while stopped")

	s.SetMessageRate(60)
	s.Advance(time.Minute)
	assert.InDelta(t, n+60, count(), 30, "resumed at the rate, without a burst for the pause")

	resp, err := http.Post(s.URL()+"/_sim/traffic", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// TestSim_PostMessage: POST /_sim/corps/{corp}/rules adds a rule, and
// POST /_sim/corps/{corp}/messages sends one message now, whose hit is in
// the ground truth under the msgid it answers; an unknown corp is 404, a
// bad body 400.
func TestSim_PostMessage(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.MessageRate = -1 })
	o := do(t, http.MethodPost, s.URL()+"/_sim/corps/"+testCorp+"/rules", obj{"name": "kw", "words": []string{"微信"}})
	require.NotEmpty(t, o["rule_id"], "POST /_sim/corps/{corp}/rules adds a rule")
	o = do(t, http.MethodPost, s.URL()+"/_sim/corps/"+testCorp+"/messages", nil)
	id, _ := o["msg_id"].(string)
	require.NotEmpty(t, id)
	var hit bool
	for _, h := range s.Hits() {
		hit = hit || h.MsgID == id && h.CorpID == testCorp
	}
	assert.True(t, hit, "the default text hits the keyword")

	for _, c := range []struct {
		corp, body string
		status     int
	}{{"wwNoSuchCorp", `{}`, http.StatusNotFound}, {testCorp, `{"text": 1}`, http.StatusBadRequest}} {
		resp, err := http.Post(s.URL()+"/_sim/corps/"+c.corp+"/messages", "application/json", strings.NewReader(c.body))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, c.status, resp.StatusCode, c.corp+" "+c.body)
	}
}

// TestSim_SetCorpMessageRate: /_sim/traffic with a corp_id gives that corp
// traffic of its own while the others stay quiet; an unknown corp is 404.
func TestSim_SetCorpMessageRate(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.MessageRate = -1 })
	count := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.corps[testCorp].messages)
	}
	s.Advance(time.Minute)
	require.Zero(t, count())
	o := do(t, http.MethodPost, s.URL()+"/_sim/traffic", obj{"rate": 600, "corp_id": testCorp})
	assert.Equal(t, testCorp, o["corp_id"])
	s.Advance(time.Minute)
	assert.InDelta(t, 600, count(), 150, "about 600 messages a minute")

	resp, err := http.Post(s.URL()+"/_sim/traffic", "application/json", strings.NewReader(`{"rate": 1, "corp_id": "wwNoSuchCorp"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}
