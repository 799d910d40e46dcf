package wecom

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Token kinds, the kind label of token_refreshes_total.
const (
	TokenCorp  = "corp"  // a corp access token (gettoken or get_corp_token)
	TokenSuite = "suite" // a suite access token (get_suite_token)
)

// Token calls, the api label of the calls that get access tokens.
const (
	apiGetToken      = "gettoken"
	apiGetSuiteToken = "get_suite_token"
	apiGetCorpToken  = "get_corp_token"
)

// Errcode label values besides WeCom's own codes.
const (
	// errcodeOK is a call WeCom answered with errcode 0.
	errcodeOK = "0"
	// errcodeTransport is a call that got no WeCom answer: connection
	// failure, timeout, an unreadable or oversized body.
	errcodeTransport = "error"
)

// operationAPIs are the api label values of the chat-data operations.
var operationAPIs = []string{
	opGetHitMsgList, opCreateRule, opGetRuleList, opGetRuleDetail,
	opUpdateRule, opDeleteRule, opSearchMsg,
}

// Metrics are the WeCom client's Prometheus metrics, shared by the Clients
// of all apps. Create them with NewMetrics and hand them to New with
// WithMetrics; New pre-creates the app's series. A nil *Metrics records
// nothing.
type Metrics struct {
	calls     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	refreshes *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (none when reg is
// nil):
//
//   - wecom_receiver_wecom_api_calls_total{app,api,errcode}: HTTP calls to
//     WeCom, each retry counted, errcode "0" on success, WeCom's errcode
//     (also one a zone program returns), "http_<status>" for a non-200
//     answer, "error" when no answer came.
//   - wecom_receiver_wecom_api_duration_seconds{app,api}: one call, from
//     sending to the decoded answer (not waiting for a concurrency slot).
//   - wecom_receiver_token_refreshes_total{app,kind}: access tokens fetched
//     from WeCom, kind corp or suite; tokens another replica shared through
//     KV are not counted.
//
// api is an operation (get_hit_msg_list, …) or a token call (gettoken,
// get_suite_token, get_corp_token). errcode takes WeCom's documented codes
// and HTTP statuses, both finite sets.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wecom_receiver_wecom_api_calls_total",
			Help: `WeCom API calls (each retry counted), by app, api and errcode ("0" success, "http_<status>", "error" when no answer came).`,
		}, []string{"app", "api", "errcode"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wecom_receiver_wecom_api_duration_seconds",
			Help:    "Duration of one WeCom API call, by app and api.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"app", "api"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wecom_receiver_token_refreshes_total",
			Help: "Access tokens fetched from WeCom, by app and kind (corp, suite).",
		}, []string{"app", "kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.calls, m.duration, m.refreshes)
	}
	return m
}

// init pre-creates an app's series: every API it calls, at errcode 0, and
// get_suite_token's 40085.
func (m *Metrics) init(app string, zone bool) {
	if m == nil {
		return
	}
	apis := append([]string{}, operationAPIs...)
	kinds := []string{TokenCorp}
	if zone {
		apis = append(apis, apiGetToken)
	} else {
		apis = append(apis, apiGetSuiteToken, apiGetCorpToken)
		kinds = append(kinds, TokenSuite)
	}
	for _, api := range apis {
		m.calls.WithLabelValues(app, api, errcodeOK)
		m.duration.WithLabelValues(app, api)
	}
	if !zone {
		// An alert counts 40085 answers with increase(), which cannot see
		// a series' first sample: the series exists from the start, so
		// the first rejection counts.
		m.calls.WithLabelValues(app, apiGetSuiteToken, strconv.Itoa(codeInvalidSuiteTicket))
	}
	for _, k := range kinds {
		m.refreshes.WithLabelValues(app, k)
	}
}

// call records one call of api that ended with err after d.
func (m *Metrics) call(app, api string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(app, api, errcodeLabel(err)).Inc()
	m.duration.WithLabelValues(app, api).Observe(d.Seconds())
}

func (m *Metrics) refreshed(app, kind string) {
	if m == nil {
		return
	}
	m.refreshes.WithLabelValues(app, kind).Inc()
}

// errcodeOther labels an errcode outside knownErrcode.
const errcodeOther = "other"

// knownErrcode bounds the label's values: WeCom's errcodes are -1 and
// codes of up to six digits. A zone program, which its author writes, could
// answer anything; outside that range it becomes "other".
func knownErrcode(code int) bool { return code >= -1 && code <= 999999 }

// errcodeLabel is the errcode label of a call that ended with err: "0" for nil,
// WeCom's errcode for an *APIError ("other" outside WeCom's range), "http_<status>" for a *StatusError,
// and "error" for anything else.
func errcodeLabel(err error) string {
	if err == nil {
		return errcodeOK
	}
	if e, ok := errors.AsType[*APIError](err); ok {
		if !knownErrcode(e.Code) {
			// A zone program can answer any code it likes: keep the
			// label's values within WeCom's range.
			return errcodeOther
		}
		return strconv.Itoa(e.Code)
	}
	if e, ok := errors.AsType[*StatusError](err); ok {
		return "http_" + strconv.Itoa(e.StatusCode)
	}
	return errcodeTransport
}

// countRefresh wraps fetch to count the tokens it gets.
func (c *Client) countRefresh(kind string, fetch fetchFunc) fetchFunc {
	return func(ctx context.Context) (string, time.Duration, error) {
		tok, exp, err := fetch(ctx)
		if err == nil {
			c.opt.metrics.refreshed(c.app.Name, kind)
		}
		return tok, exp, err
	}
}
