package wecomsim

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSim_Faults(t *testing.T) {
	s := newTestSim(t, nil)
	tok := corpToken(t, s)
	list := kw + "get_rule_list"
	hits := func() int { return errcode(api(t, s, hitsPath, tok, obj{})) }

	t.Run("NextNCallsErrcode", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultErrcode, API: "get_hit_msg_list", Count: 2}))
		assert.Equal(t, 0, errcode(api(t, s, list, tok, obj{})), "other APIs unaffected")
		assert.Equal(t, -1, hits())
		assert.Equal(t, -1, hits())
		assert.Equal(t, 0, hits())
		assert.Empty(t, s.Faults(), "spent faults are removed")
	})
	t.Run("RateLimitAndCustomCode", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultRateLimit, Count: 1}, Fault{Kind: FaultErrcode, Errcode: 45033, Count: 1}))
		assert.Equal(t, 45033, hits(), "terminal faults: errcode before rate_limit")
		assert.Equal(t, 45009, hits())
		assert.Equal(t, 0, hits())
	})
	t.Run("HTTPError", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultHTTPError, API: "*", Status: 502, Count: 1}))
		resp, err := http.Post(s.URL()+hitsPath+"?access_token="+tok, "application/json", strings.NewReader("{}"))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 502, resp.StatusCode)
		assert.Equal(t, 0, hits())
	})
	t.Run("Delay", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultDelay, Delay: 150 * time.Millisecond, Count: 1}))
		start := time.Now()
		assert.Equal(t, 0, hits())
		assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	})
	t.Run("HangUntilClientGivesUp", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultHang, Count: 1}))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+hitsPath+"?access_token="+tok, strings.NewReader("{}"))
		_, err := http.DefaultClient.Do(req)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("HangCapped", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultHang, Delay: 50 * time.Millisecond, Count: 1}))
		resp, err := http.Post(s.URL()+hitsPath+"?access_token="+tok, "application/json", strings.NewReader("{}"))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	})
	t.Run("ExpireAccessToken", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultExpireAccessToken, API: "get_hit_msg_list", Count: 1}))
		assert.Equal(t, 42001, hits())
		assert.Equal(t, 42001, errcode(api(t, s, list, tok, obj{})), "the token stays expired")
		tok = corpToken(t, s)
		assert.NotEqual(t, 42001, errcode(api(t, s, list, tok, obj{})))
	})
	t.Run("ExpireHitToken", func(t *testing.T) {
		s2 := newTestSim(t, func(o *Options) { o.TokenlessLimit = 1 })
		tok2 := corpToken(t, s2)
		ht, _ := s2.IssueHitToken(testCorp)
		require.NoError(t, s2.SetFaults(Fault{Kind: FaultExpireHitToken, Count: 1}))
		assert.Equal(t, 0, errcode(api(t, s2, hitsPath, tok2, obj{"token": ht})), "first token-less call passes")
		assert.Equal(t, 45009, errcode(api(t, s2, hitsPath, tok2, obj{"token": ht})), "token is dead now")
	})
	t.Run("Probabilistic", func(t *testing.T) {
		require.NoError(t, s.SetFaults(Fault{Kind: FaultErrcode, API: "get_rule_list", Rate: 0.3}))
		failed := 0
		for range 200 {
			if errcode(api(t, s, list, tok, obj{})) == -1 {
				failed++
			}
		}
		assert.InDelta(t, 60, failed, 30)
	})
	t.Run("ControlEndpoint", func(t *testing.T) {
		resp, err := http.Post(s.URL()+"/_sim/faults", "application/json",
			strings.NewReader(`[{"kind":"delay","api":"search_msg","delay":"2s","rate":0.5}]`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, []Fault{{Kind: FaultDelay, API: "search_msg", Delay: 2 * time.Second, Rate: 0.5}}, s.Faults())

		var shown []obj
		r, err := http.Get(s.URL() + "/_sim/faults")
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(r.Body).Decode(&shown))
		r.Body.Close()
		assert.Equal(t, []obj{{"kind": "delay", "api": "search_msg", "delay": "2s", "rate": 0.5}}, shown)

		resp, err = http.Post(s.URL()+"/_sim/faults", "application/json", strings.NewReader(`[{"kind":"nope"}]`))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		resp, err = http.Post(s.URL()+"/_sim/faults", "application/json", strings.NewReader(`[]`))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Empty(t, s.Faults())
	})
}

func TestParseFault(t *testing.T) {
	f, err := ParseFault("kind=errcode,api=get_hit_msg_list,errcode=-1,count=3,rate=0.5,status=502,delay=1s")
	require.NoError(t, err)
	assert.Equal(t, Fault{Kind: FaultErrcode, API: "get_hit_msg_list", Errcode: -1, Count: 3, Rate: 0.5,
		Status: 502, Delay: time.Second}, f)
	for _, bad := range []string{"", "kind=nope", "kind=errcode,count=x", "kind=errcode,foo=1", "errcode"} {
		_, err := ParseFault(bad)
		assert.ErrorIs(t, err, ErrInvalidOption, bad)
	}
}

func TestSim_GroundTruthEndpoint(t *testing.T) {
	s := newTestSim(t, nil)
	tok := corpToken(t, s)
	createRule(t, s, tok, obj{"name": "r", "keyword": obj{"word_list": []string{"x"}}})
	m, _ := s.SendMessage(testCorp, Message{Text: "x"})
	r, err := http.Get(s.URL() + "/_sim/hits")
	require.NoError(t, err)
	defer r.Body.Close()
	var got []Hit
	require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
	require.Len(t, got, 1)
	assert.Equal(t, m.MsgID, got[0].MsgID)
	assert.Equal(t, testCorp, got[0].CorpID)
	assert.True(t, got[0].HasHitKeyword)
}

func TestNew_Errors(t *testing.T) {
	for name, o := range map[string]Options{
		"ErrNothingToSimulate": {},
		"ErrNegativeCorpRate":  {Archive: Archive{SuiteID: "s", Corps: []Corp{{CorpID: "c", MessageRate: -1}}}},
		"ErrBadKey":            {Archive: Archive{SuiteID: "s", Corps: []Corp{{CorpID: "c"}}, CallbackURL: "http://x", EncodingAESKey: "short"}},
		"ErrBadFault":          {Zone: Zone{CorpID: "c"}, Faults: []Fault{{Kind: "x"}}},
		"ErrDuplicateCorp":     {Archive: Archive{SuiteID: "s", Corps: []Corp{{CorpID: "c"}, {CorpID: "c"}}}},
	} {
		_, err := New(o, zeroLogger())
		assert.ErrorIs(t, err, ErrInvalidOption, name)
	}
}
