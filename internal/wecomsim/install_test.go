package wecomsim

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

func suiteToken(t testing.TB, s *Sim) string {
	t.Helper()
	st := do(t, http.MethodPost, s.URL()+"/cgi-bin/service/get_suite_token",
		obj{"suite_id": testSuite, "suite_secret": testSecret, "suite_ticket": s.SuiteTicket()})
	require.NotEmpty(t, st["suite_access_token"], st)
	return st["suite_access_token"].(string)
}

func suiteAPI(t testing.TB, s *Sim, path, suiteTok string, body any) obj {
	t.Helper()
	return do(t, http.MethodPost, s.URL()+path+"?suite_access_token="+suiteTok, body)
}

const (
	permV2   = "/cgi-bin/service/v2/get_permanent_code"
	permV1   = "/cgi-bin/service/get_permanent_code"
	authInfo = "/cgi-bin/service/get_auth_info"
	corpTok  = "/cgi-bin/service/get_corp_token"
)

// simHTTP sends a /_sim control request and returns status and body.
func simHTTP(t testing.TB, method, u string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, rd)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func TestSim_AuthorizeCorp(t *testing.T) {
	cb := newCBServer(t, testSuite, nil)
	s := newTestSim(t, func(o *Options) { o.Archive.CallbackURL = cb.srv.URL })
	st := suiteToken(t, s)

	status, body := simHTTP(t, http.MethodPost, s.URL()+"/_sim/corps", obj{"corp_id": "wwNewCorp", "corp_name": "New Co", "demo_rules": true})
	require.Equal(t, http.StatusOK, status, string(body))
	var inst Installed
	require.NoError(t, json.Unmarshal(body, &inst))
	assert.Equal(t, "wwNewCorp", inst.CorpID)
	require.NotEmpty(t, inst.AuthCode)

	natstest.Eventually(t, 5*time.Second, "create_auth", func() bool { return len(cb.ofKind("create_auth")) == 1 })
	ca := cb.ofKind("create_auth")[0]
	assert.Equal(t, testSuite, ca.to)
	assert.Equal(t, inst.AuthCode, ca.fields["AuthCode"])
	assert.Equal(t, testSuite, ca.fields["SuiteId"])
	assert.Equal(t, strconv.FormatInt(s.Now().Unix(), 10), ca.fields["TimeStamp"])
	_, named := ca.fields["AuthCorpId"]
	assert.False(t, named, "create_auth names no corp")

	// Before the exchange no permanent code works.
	o := suiteAPI(t, s, corpTok, st, obj{"auth_corpid": "wwNewCorp", "permanent_code": ""})
	assert.Equal(t, codeInvalidPermCode, errcode(o))

	o = suiteAPI(t, s, permV2, st, obj{"auth_code": inst.AuthCode})
	require.Equal(t, 0, errcode(o), o)
	perm, _ := o["permanent_code"].(string)
	require.NotEmpty(t, perm)
	assert.Equal(t, obj{"corpid": "wwNewCorp", "corp_name": "New Co"}, o["auth_corp_info"])
	assert.NotContains(t, o, "access_token", "v2 answers no access token")

	t.Run("SingleUse", func(t *testing.T) {
		for _, path := range []string{permV2, permV1} {
			o := suiteAPI(t, s, path, st, obj{"auth_code": inst.AuthCode})
			assert.Equal(t, codeInvalidAuthCode, errcode(o), path)
		}
	})
	t.Run("CorpTokenNeedsTheExchangedCode", func(t *testing.T) {
		o := suiteAPI(t, s, corpTok, st, obj{"auth_corpid": "wwNewCorp", "permanent_code": "guess"})
		assert.Equal(t, codeInvalidPermCode, errcode(o))
		o = suiteAPI(t, s, corpTok, st, obj{"auth_corpid": "wwNewCorp", "permanent_code": perm})
		require.NotEmpty(t, o["access_token"], o)
		list := api(t, s, "/cgi-bin/chatdata/keyword/get_rule_list", o["access_token"].(string), obj{})
		require.Equal(t, 0, errcode(list), list)
		assert.Len(t, list["rule_list"], len(DemoRules()), "demo_rules seeded the new corp")
	})
	t.Run("GetAuthInfo", func(t *testing.T) {
		o := suiteAPI(t, s, authInfo, st, obj{"auth_corpid": "wwNewCorp", "permanent_code": perm})
		require.Equal(t, 0, errcode(o), o)
		assert.Equal(t, "New Co", o["auth_corp_info"].(map[string]any)["corp_name"])
		assert.NotEmpty(t, o["auth_info"].(map[string]any)["agent"])
		o = suiteAPI(t, s, authInfo, st, obj{"auth_corpid": "wwNewCorp", "permanent_code": "guess"})
		assert.Equal(t, codeInvalidPermCode, errcode(o))
		o = suiteAPI(t, s, authInfo, st, obj{"auth_corpid": "wwNobody", "permanent_code": perm})
		assert.Equal(t, codeInvalidCorpID, errcode(o))
	})
	t.Run("V1AnswersTokenAndGrant", func(t *testing.T) {
		in, err := s.AuthorizeCorp(Install{CorpID: "wwV1Corp"})
		require.NoError(t, err)
		o := suiteAPI(t, s, permV1, st, obj{"auth_code": in.AuthCode})
		require.Equal(t, 0, errcode(o), o)
		assert.NotEmpty(t, o["permanent_code"])
		assert.NotEmpty(t, o["access_token"])
		assert.Equal(t, "wwV1Corp", o["auth_corp_info"].(map[string]any)["corpid"])
	})
	t.Run("ErrAlreadyAuthorized", func(t *testing.T) {
		status, _ := simHTTP(t, http.MethodPost, s.URL()+"/_sim/corps", obj{"corp_id": "wwNewCorp"})
		assert.Equal(t, http.StatusConflict, status)
		status, _ = simHTTP(t, http.MethodPost, s.URL()+"/_sim/corps", "not an object")
		assert.Equal(t, http.StatusBadRequest, status)
	})
	t.Run("ErrBadSuiteToken", func(t *testing.T) {
		in, err := s.AuthorizeCorp(Install{})
		require.NoError(t, err)
		o := suiteAPI(t, s, permV2, "bogus", obj{"auth_code": in.AuthCode})
		assert.Equal(t, codeInvalidSuiteToken, errcode(o))
		o = suiteAPI(t, s, permV2, st, obj{"auth_code": in.AuthCode})
		assert.Equal(t, 0, errcode(o), "a refused call does not spend the code")
	})
}

func TestSim_AuthCodeExpires(t *testing.T) {
	s := newTestSim(t, nil)
	in, err := s.AuthorizeCorp(Install{CorpID: "wwLate"})
	require.NoError(t, err)
	s.Advance(authCodeTTL)
	st := suiteToken(t, s)
	o := suiteAPI(t, s, permV2, st, obj{"auth_code": in.AuthCode})
	assert.Equal(t, codeInvalidAuthCode, errcode(o))
}

func TestSim_CancelCorp(t *testing.T) {
	cb := newCBServer(t, testSuite, nil)
	s := newTestSim(t, func(o *Options) {
		o.Archive.CallbackURL = cb.srv.URL
		o.MessageRate = 6
	})
	tok := corpToken(t, s)
	s.Advance(time.Minute)
	s.mu.Lock()
	c := s.corps[testCorp]
	before := c.msgSeq
	s.mu.Unlock()
	require.Positive(t, before, "traffic runs before the cancel")

	status, body := simHTTP(t, http.MethodDelete, s.URL()+"/_sim/corps/"+testCorp, nil)
	require.Equal(t, http.StatusOK, status, string(body))
	natstest.Eventually(t, 5*time.Second, "cancel_auth", func() bool { return len(cb.ofKind("cancel_auth")) == 1 })
	assert.Equal(t, map[string]string{"SuiteId": testSuite, "InfoType": "cancel_auth", "AuthCorpId": testCorp,
		"TimeStamp": strconv.FormatInt(s.Now().Unix(), 10)}, cb.ofKind("cancel_auth")[0].fields)

	s.Advance(10 * time.Minute)
	s.mu.Lock()
	after := c.msgSeq
	s.mu.Unlock()
	assert.Equal(t, before, after, "no traffic after the cancel")

	o := api(t, s, "/cgi-bin/chatdata/keyword/get_rule_list", tok, obj{})
	assert.Equal(t, codeInvalidToken, errcode(o), "the corp's tokens stop working")
	o = suiteAPI(t, s, corpTok, suiteToken(t, s), obj{"auth_corpid": testCorp, "permanent_code": testPerm})
	assert.Equal(t, codeInvalidPermCode, errcode(o), "and its permanent code")

	status, _ = simHTTP(t, http.MethodDelete, s.URL()+"/_sim/corps/"+testCorp, nil)
	assert.Equal(t, http.StatusNotFound, status, "cancelled already")
	status, _ = simHTTP(t, http.MethodPost, s.URL()+"/_sim/corps/"+testCorp+"/reset", nil)
	assert.Equal(t, http.StatusNotFound, status)

	// It may install again, and its traffic resumes.
	in, err := s.AuthorizeCorp(Install{CorpID: testCorp})
	require.NoError(t, err)
	assert.NotEmpty(t, in.AuthCode)
	s.Advance(time.Minute)
	s.mu.Lock()
	assert.Greater(t, c.msgSeq, after)
	s.mu.Unlock()
	assert.Equal(t, []CorpInfo{{CorpID: testCorp, CorpName: "Simulated corp " + testCorp, Authorized: true}}, s.Corps())
}

func TestSim_ResetPermanentCode(t *testing.T) {
	cb := newCBServer(t, testSuite, nil)
	s := newTestSim(t, func(o *Options) { o.Archive.CallbackURL = cb.srv.URL })
	st := suiteToken(t, s)

	status, body := simHTTP(t, http.MethodPost, s.URL()+"/_sim/corps/"+testCorp+"/reset", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	var in Installed
	require.NoError(t, json.Unmarshal(body, &in))
	natstest.Eventually(t, 5*time.Second, "reset_permanent_code", func() bool { return len(cb.ofKind("reset_permanent_code")) == 1 })
	f := cb.ofKind("reset_permanent_code")[0].fields
	assert.Equal(t, in.AuthCode, f["AuthCode"])
	assert.Equal(t, testCorp, f["AuthCorpId"])

	// Until the exchange the old code works.
	o := suiteAPI(t, s, corpTok, st, obj{"auth_corpid": testCorp, "permanent_code": testPerm})
	require.NotEmpty(t, o["access_token"], o)

	o = suiteAPI(t, s, permV2, st, obj{"auth_code": in.AuthCode})
	require.Equal(t, 0, errcode(o), o)
	newPerm := o["permanent_code"].(string)
	assert.NotEqual(t, testPerm, newPerm)
	o = suiteAPI(t, s, corpTok, st, obj{"auth_corpid": testCorp, "permanent_code": testPerm})
	assert.Equal(t, codeInvalidPermCode, errcode(o), "the old code is replaced")
	o = suiteAPI(t, s, corpTok, st, obj{"auth_corpid": testCorp, "permanent_code": newPerm})
	assert.NotEmpty(t, o["access_token"], o)
}

// TestSim_ManyCorps: thousands of corps, each with its own traffic, one of
// them hot.
func TestSim_ManyCorps(t *testing.T) {
	corps := GenerateCorps(2000)
	corps[0].MessageRate = 600
	s := newTestSim(t, func(o *Options) {
		o.Archive.Corps = corps
		o.MessageRate = 2
	})
	s.Advance(time.Minute)
	s.mu.Lock()
	defer s.mu.Unlock()
	busy, total := 0, int64(0)
	for _, c := range corps[1:] {
		n := s.corps[c.CorpID].msgSeq
		total += n
		if n > 0 {
			busy++
		}
	}
	// Poisson(2) per corp-minute: about 86% of corps see a message, 2
	// each on average (with one-second floor on gaps, a little less).
	assert.Greater(t, busy, 1500, "traffic spreads across the corps")
	assert.InDelta(t, 2*1999, float64(total), 400)
	assert.Greater(t, s.corps[corps[0].CorpID].msgSeq, int64(450), "the hot corp runs at its own rate")
}

func TestSim_NoCorpsAtStart(t *testing.T) {
	s := newTestSim(t, func(o *Options) { o.Archive.Corps = nil })
	in, err := s.AuthorizeCorp(Install{})
	require.NoError(t, err)
	assert.Equal(t, "wwInstCorp0001", in.CorpID)
	_, err = s.AuthorizeCorp(Install{CorpID: testZone})
	require.ErrorIs(t, err, ErrInvalidOption, "the zone corp is not an archive corp")
	err = s.CancelCorp("wwNobody")
	require.ErrorIs(t, err, ErrCorpNotAuthorized)
}

// BenchmarkSim_Advance10000Corps: one simulated minute of traffic in
// 10,000 corps at 2 messages per corp-minute.
func BenchmarkSim_Advance10000Corps(b *testing.B) {
	s, err := New(Options{Seed: 1, Start: testStart(), MessageRate: 2,
		Archive: Archive{SuiteID: testSuite, SuiteSecret: testSecret, Corps: GenerateCorps(10000)}}, zeroLogger())
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		s.Advance(time.Minute)
	}
}
