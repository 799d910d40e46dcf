package wecomsim

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSim_GetToken(t *testing.T) {
	s := newTestSim(t, nil)
	get := func(q string) obj { return do(t, http.MethodGet, s.URL()+"/cgi-bin/gettoken?"+q, nil) }

	for _, tc := range []struct {
		name, q string
		code    int
	}{
		{"ErrCorpIDMissing", "corpsecret=x", 41002},
		{"ErrSecretMissing", "corpid=" + testZone, 41004},
		{"ErrBadCorpID", "corpid=wwNope&corpsecret=" + testZoneSc, 40013},
		{"ErrBadSecret", "corpid=" + testZone + "&corpsecret=nope", 40001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := get(tc.q)
			assert.Equal(t, tc.code, errcode(o))
			assert.Contains(t, o["errmsg"], "more info at")
		})
	}

	t.Run("OK", func(t *testing.T) {
		o := get("corpid=" + testZone + "&corpsecret=" + testZoneSc)
		require.Equal(t, 0, errcode(o))
		assert.Equal(t, "ok", o["errmsg"])
		assert.EqualValues(t, 7200, o["expires_in"])
		tok := o["access_token"].(string)
		assert.LessOrEqual(t, len(tok), 512)

		// Within its lifetime WeCom hands out the same token.
		s.Advance(time.Hour)
		again := get("corpid=" + testZone + "&corpsecret=" + testZoneSc)
		assert.Equal(t, tok, again["access_token"])
		assert.EqualValues(t, 3600, again["expires_in"])

		// The token works, then expires on the simulated clock.
		sync := obj{"program_id": testProg, "ability_id": "invoke_get_rule_list", "request_data": "{}"}
		assert.Equal(t, 0, errcode(api(t, s, "/cgi-bin/chatdata/sync_call_program", tok, sync)))
		s.Advance(time.Hour)
		assert.Equal(t, 42001, errcode(api(t, s, "/cgi-bin/chatdata/sync_call_program", tok, sync)))
		fresh := get("corpid=" + testZone + "&corpsecret=" + testZoneSc)
		assert.NotEqual(t, tok, fresh["access_token"])
	})
	assert.Equal(t, 7, s.Requests("gettoken"))
}

func TestSim_SuiteAndCorpToken(t *testing.T) {
	s := newTestSim(t, nil)
	suite := func(id, secret, ticket string) obj {
		return do(t, http.MethodPost, s.URL()+"/cgi-bin/service/get_suite_token",
			obj{"suite_id": id, "suite_secret": secret, "suite_ticket": ticket})
	}
	corp := func(suiteTok, corp, code string) obj {
		return do(t, http.MethodPost, s.URL()+"/cgi-bin/service/get_corp_token?suite_access_token="+suiteTok,
			obj{"auth_corpid": corp, "permanent_code": code})
	}
	ticket := s.SuiteTicket()
	require.NotEmpty(t, ticket)

	assert.Equal(t, 40083, errcode(suite("wwOther", testSecret, ticket)))
	assert.Equal(t, 40001, errcode(suite(testSuite, "bad", ticket)))
	assert.Equal(t, 40085, errcode(suite(testSuite, testSecret, "stale")))

	ok := suite(testSuite, testSecret, ticket)
	_, has := ok["errcode"]
	assert.False(t, has, "success omits errcode, as WeCom does: %v", ok)
	st := ok["suite_access_token"].(string)
	assert.EqualValues(t, 7200, ok["expires_in"])

	assert.Equal(t, 40084, errcode(corp(st, testCorp, "wrong")))
	assert.Equal(t, 40013, errcode(corp(st, "wwUnknown", testPerm)))
	assert.Equal(t, 40082, errcode(corp("nope", testCorp, testPerm)))
	assert.Equal(t, 41022, errcode(corp("", testCorp, testPerm)))
	ct := corp(st, testCorp, testPerm)
	_, has = ct["errcode"]
	assert.False(t, has)
	tok := ct["access_token"].(string)

	list := "/cgi-bin/chatdata/keyword/get_rule_list"
	assert.Equal(t, 0, errcode(api(t, s, list, tok, obj{})))
	assert.Equal(t, 41001, errcode(api(t, s, list, "", obj{})))
	assert.Equal(t, 40014, errcode(api(t, s, list, "forged", obj{})))
	assert.Equal(t, 48002, errcode(api(t, s, list, zoneToken(t, s), obj{})), "zone tokens cannot call the HTTPS path")

	// Tickets rotate every 10 minutes; the newest and the previous one are
	// accepted while younger than 30 minutes.
	s.Advance(10 * time.Minute)
	newer := s.SuiteTicket()
	require.NotEqual(t, ticket, newer)
	assert.Equal(t, 40085, errcode(suite(testSuite, testSecret, "x")))
	_, has = suite(testSuite, testSecret, ticket)["suite_access_token"]
	assert.True(t, has, "previous ticket still accepted")
	s.Advance(10 * time.Minute)
	assert.Equal(t, 40085, errcode(suite(testSuite, testSecret, ticket)), "two rotations back")

	// Expiry: suite token 42009, corp token 42001.
	s.Advance(7200 * time.Second)
	assert.Equal(t, 42009, errcode(corp(st, testCorp, testPerm)))
	assert.Equal(t, 42001, errcode(api(t, s, list, tok, obj{})))
}
