package wecom

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestMetrics_Archive(t *testing.T) {
	f := newFake(t)
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	c, _ := mustClient(t, archiveApp(f.srv.URL), nil, WithMetrics(m), WithAttempts(1))
	calls := func(api, code string) float64 {
		return testutil.ToFloat64(m.calls.WithLabelValues("archapp", api, code))
	}

	// Pre-created: every API of an archive app at errcode 0, and its token kinds.
	for _, api := range append(operationAPIs, apiGetSuiteToken, apiGetCorpToken) {
		assert.Zero(t, calls(api, "0"), api)
	}
	// And get_suite_token's 40085, which an alert counts with increase().
	assert.Zero(t, calls(apiGetSuiteToken, "40085"))
	n, err := testutil.GatherAndCount(reg, "wecom_receiver_wecom_api_calls_total")
	require.NoError(t, err)
	assert.Equal(t, len(operationAPIs)+3, n, "no gettoken for an archive app")
	n, err = testutil.GatherAndCount(reg, "wecom_receiver_token_refreshes_total")
	require.NoError(t, err)
	assert.Equal(t, 2, n)

	hits := 0
	f.handle("/cgi-bin/chatdata/keyword/get_hit_msg_list", func(w http.ResponseWriter, _ *http.Request) {
		hits++
		if hits == 2 {
			replyCode(w, codeTokenExpired) // the corp token went stale early
			return
		}
		reply(w, map[string]any{"errcode": 0, "errmsg": "ok", "msg_list": []any{}})
	})
	req := HitMsgListRequest{Limit: 10}
	_, err = c.GetHitMsgList(natstest.Context(t), testCorp, req)
	require.NoError(t, err)
	_, err = c.GetHitMsgList(natstest.Context(t), testCorp, req)
	require.NoError(t, err, "refreshed once and tried again")
	assert.Equal(t, 2.0, calls(opGetHitMsgList, "0"))
	assert.Equal(t, 1.0, calls(opGetHitMsgList, "42001"))
	assert.Equal(t, 1.0, calls(apiGetSuiteToken, "0"))
	assert.Equal(t, 2.0, calls(apiGetCorpToken, "0"))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.refreshes.WithLabelValues("archapp", TokenCorp)))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.refreshes.WithLabelValues("archapp", TokenSuite)))

	f.handle("/cgi-bin/chatdata/keyword/delete_rule", func(w http.ResponseWriter, _ *http.Request) { replyCode(w, 40058) })
	require.Error(t, c.DeleteRule(natstest.Context(t), testCorp, "r1"))
	assert.Equal(t, 1.0, calls(opDeleteRule, "40058"))

	f.handle("/cgi-bin/chatdata/keyword/delete_rule", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	require.Error(t, c.DeleteRule(natstest.Context(t), testCorp, "r1"))
	assert.Equal(t, 1.0, calls(opDeleteRule, "http_502"))

	f.handle("/cgi-bin/chatdata/keyword/delete_rule", hangUp)
	require.Error(t, c.DeleteRule(natstest.Context(t), testCorp, "r1"))
	assert.Equal(t, 1.0, calls(opDeleteRule, "error"))

	// Each call was timed.
	n, err = testutil.GatherAndCount(reg, "wecom_receiver_wecom_api_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, len(operationAPIs)+2, n)
	assert.Equal(t, uint64(3), histogramCount(t, reg, opGetHitMsgList))
	assert.Equal(t, uint64(3), histogramCount(t, reg, opDeleteRule))
}

func TestMetrics_Retries(t *testing.T) {
	// Every attempt is a call, counted under its own outcome.
	f := newFake(t)
	m := NewMetrics(prometheus.NewPedanticRegistry())
	c, _ := mustClient(t, zoneApp(f.srv.URL, false), nil, WithMetrics(m), WithAttempts(3))
	tries := 0
	f.handle(syncCallProgramPath, func(w http.ResponseWriter, _ *http.Request) {
		tries++
		if tries < 3 {
			replyCode(w, codeSystemBusy)
			return
		}
		// The zone program's own errcode is WeCom's answer too.
		reply(w, map[string]any{"errcode": 0, "response_data": `{"errcode":40003,"errmsg":"invalid userid"}`})
	})
	_, err := c.GetHitMsgList(natstest.Context(t), "", HitMsgListRequest{Limit: 10})
	require.Error(t, err)
	assert.Equal(t, 2.0, testutil.ToFloat64(m.calls.WithLabelValues("zoneapp", opGetHitMsgList, "-1")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("zoneapp", opGetHitMsgList, "40003")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.calls.WithLabelValues("zoneapp", apiGetToken, "0")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.refreshes.WithLabelValues("zoneapp", TokenCorp)))
}

func TestErrcodeLabel(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, "0"},
		{&APIError{API: "x", Code: 45009}, "45009"},
		{fmt.Errorf("wrapped: %w", &APIError{Code: -1}), "-1"},
		{&StatusError{API: "x", StatusCode: 503}, "http_503"},
		{errors.New("dial tcp: connection refused"), "error"},
		{ErrResponseTooLarge, "error"},
	} {
		assert.Equal(t, tt.want, errcodeLabel(tt.err), "%v", tt.err)
	}
}

func TestMetrics_Nil(t *testing.T) {
	// Without WithMetrics nothing is recorded and nothing breaks.
	f := newFake(t)
	f.handle("/cgi-bin/chatdata/keyword/delete_rule", func(w http.ResponseWriter, _ *http.Request) { replyCode(w, 0) })
	c, _ := mustClient(t, archiveApp(f.srv.URL), nil)
	require.NoError(t, c.DeleteRule(natstest.Context(t), testCorp, "r1"))
}

func histogramCount(t *testing.T, reg *prometheus.Registry, api string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "wecom_receiver_wecom_api_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "api" && l.GetValue() == api {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	t.Fatalf("no duration series for %s", api)
	return 0
}

func TestErrcodeLabel_Bounded(t *testing.T) {
	assert.Equal(t, "0", errcodeLabel(nil))
	assert.Equal(t, "45009", errcodeLabel(&APIError{API: "x", Code: 45009}))
	assert.Equal(t, "other", errcodeLabel(&APIError{API: "x", Code: 123456789}), "a zone program's own code")
	assert.Equal(t, "http_502", errcodeLabel(&StatusError{API: "x", StatusCode: 502}))
}
