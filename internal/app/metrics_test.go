package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// adminGet GETs path from m's admin listener, with a bearer token unless
// token is empty, and returns the status and body.
func adminGet(t testing.TB, m *app.Main, path, token string) (int, string) {
	t.Helper()
	require.NotEmpty(t, m.AdminAddr(), "admin listener is on")
	status, body := apiDo(t, m, http.MethodGet, path, token, "")
	return status, string(body)
}

// scrape reads /metrics from the admin listener, as Prometheus would:
// over HTTP, without a token.
func scrape(t testing.TB, m *app.Main) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := adminGet(t, m, "/metrics", "")
	require.Equal(t, http.StatusOK, status)
	return metricstest.ParseText(t, strings.NewReader(body))
}

// TestMetrics_EndToEnd drives callbacks, fetches and publishes for both apps
// through the simulator, then checks every metric on /metrics with its
// labels, and that the Grafana dashboard uses only metrics that exist.
func TestMetrics_EndToEnd(t *testing.T) {
	s := startSystem(t, "0s")
	js := s.m.Broker().JetStream()
	for _, corp := range []string{simCorp, zoneCorp} {
		_, err := s.sim.GenerateMessages(corp, 300)
		require.NoError(t, err)
		s.sim.Advance(6 * time.Second) // past the callback coalescing interval
	}
	want := s.hitIDs()
	require.NotEmpty(t, s.hitIDs(simCorp))
	require.NotEmpty(t, s.hitIDs(zoneCorp))
	natstest.WaitFor(t, 30*time.Second, func() error {
		if got, _ := hittest.Stored(t, js); len(got) < len(want) {
			return fmt.Errorf("%d of %d hits published", len(got), len(want))
		}
		return nil
	})
	// A refusal, as a scanner would cause.
	status, _ := send(t, http.MethodPost, "http://"+s.m.Addr()+"/callback/archive", "<xml/>")
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = send(t, http.MethodPost, "http://"+s.m.Addr()+"/callback/nosuchapp", "<xml/>")
	require.Equal(t, http.StatusNotFound, status)

	// Counters move after the acks the test waited for: poll until the
	// last of them has.
	var mfs map[string]*dto.MetricFamily
	natstest.WaitFor(t, 10*time.Second, func() error {
		mfs = scrape(t, s.m)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"wecom_receiver_hits_published_total", nil, float64(len(want))},
			{"wecom_receiver_callbacks_handled_total", []string{"kind", "program_notify", "result", intake.ResultAck}, 1},
			{"wecom_receiver_callbacks_handled_total", []string{"kind", "hit_keyword", "result", intake.ResultAck}, 1},
		} {
			if v := metricstest.Value(t, mfs, c.name, c.labels...); v < c.want {
				return fmt.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
			}
		}
		return nil
	})
	v := func(name string, labels ...string) float64 {
		t.Helper()
		return metricstest.Value(t, mfs, name, labels...)
	}
	archive := []string{"app", "archive", "corp", simCorp}
	zone := []string{"app", "zone", "corp", zoneCorp}

	t.Run("Callbacks", func(t *testing.T) {
		assert.Positive(t, v("wecom_receiver_callbacks_total", "app", "archive", "kind", "hit_keyword", "outcome", "accepted"))
		assert.Positive(t, v("wecom_receiver_callbacks_total", "app", "archive", "kind", "suite_ticket", "outcome", "accepted"))
		assert.Positive(t, v("wecom_receiver_callbacks_total", "app", "zone", "kind", "program_notify", "outcome", "accepted"))
		assert.Equal(t, 1.0, v("wecom_receiver_callbacks_total", "app", "archive", "kind", "none", "outcome", "rejected"))
		assert.Equal(t, 1.0, v("wecom_receiver_callbacks_total", "app", "(unknown)", "outcome", "rejected"))
		v("wecom_receiver_callbacks_total", "app", "archive", "kind", "hit_keyword", "outcome", "unavailable") // pre-created
		assert.Equal(t, 1.0, v("wecom_receiver_callback_rejections_total", "app", "archive", "reason", "missing_param"))
		assert.Equal(t, 1.0, v("wecom_receiver_callback_rejections_total", "app", "(unknown)", "reason", "unknown_app"))
		assert.Positive(t, v("wecom_receiver_callback_duration_seconds", "app", "archive"))
		assert.Positive(t, v("wecom_receiver_callback_duration_seconds", "app", "zone"))
		assert.Equal(t, []string{"(unknown)", "archive", "zone"}, metricstest.LabelValues(t, mfs, "wecom_receiver_callbacks_total", "app"),
			"no label value from a request path")

		assert.Positive(t, v("wecom_receiver_callbacks_handled_total", "kind", "suite_ticket", "result", "ack"))
		for _, r := range []string{intake.ResultAck, intake.ResultRetry, intake.ResultTerminate} {
			v("wecom_receiver_callbacks_handled_total", "kind", "hit_keyword", "result", r) // pre-created
		}
	})

	t.Run("Fetch", func(t *testing.T) {
		assert.Positive(t, v("wecom_receiver_fetch_pages_total", append(archive, "source", "callback")...))
		assert.Positive(t, v("wecom_receiver_fetch_pages_total", append(zone, "source", "callback")...))
		v("wecom_receiver_fetch_pages_total", append(archive, "source", "poll")...)
		v("wecom_receiver_fetch_pages_total", append(archive, "source", "backfill")...)
		assert.Positive(t, v("wecom_receiver_fetch_page_duration_seconds", "app", "archive"))
		assert.Positive(t, v("wecom_receiver_fetch_page_duration_seconds", "app", "zone"))
		v("wecom_receiver_fetch_errors_total", archive...) // pre-created; a slow machine may see a failed fetch
		v("wecom_receiver_fetch_errors_total", zone...)

		// The lag was set after the last page, before this scrape: at most
		// the age of the newest message now.
		_, events := hittest.Stored(t, js)
		newest := map[string]int64{}
		for _, ev := range events {
			if ev.Message != nil {
				newest[ev.CorpID] = max(newest[ev.CorpID], ev.Message.SendTime)
			}
		}
		for _, l := range [][]string{archive, zone} {
			lag := v("wecom_receiver_cursor_lag_seconds", l...)
			age := time.Since(time.Unix(newest[l[3]], 0)).Seconds()
			assert.GreaterOrEqual(t, lag, 0.0, l)
			assert.LessOrEqual(t, lag, max(age, 0)+1, l)
		}
	})

	t.Run("Hits", func(t *testing.T) {
		assert.Equal(t, float64(len(s.hitIDs(simCorp))), v("wecom_receiver_hits_published_total", archive...))
		assert.Equal(t, float64(len(s.hitIDs(zoneCorp))), v("wecom_receiver_hits_published_total", zone...))
		v("wecom_receiver_hits_duplicates_total", archive...)
		v("wecom_receiver_hits_dead_lettered_total", archive...)
	})

	t.Run("WeComAPI", func(t *testing.T) {
		calls := func(app, api, code string) float64 {
			return v("wecom_receiver_wecom_api_calls_total", "app", app, "api", api, "errcode", code)
		}
		assert.Positive(t, calls("archive", "get_hit_msg_list", "0"))
		assert.Equal(t, 4.0, calls("archive", "create_rule", "0"), "startSystem creates four rules")
		assert.Positive(t, calls("archive", "get_suite_token", "0"))
		assert.Positive(t, calls("archive", "get_corp_token", "0"))
		assert.Positive(t, calls("zone", "get_hit_msg_list", "0"))
		assert.Positive(t, calls("zone", "gettoken", "0"))
		assert.Positive(t, v("wecom_receiver_wecom_api_duration_seconds", "app", "archive", "api", "get_hit_msg_list"))
		assert.Positive(t, v("wecom_receiver_wecom_api_duration_seconds", "app", "zone", "api", "gettoken"))
		assert.Positive(t, v("wecom_receiver_token_refreshes_total", "app", "archive", "kind", "corp"))
		assert.Positive(t, v("wecom_receiver_token_refreshes_total", "app", "archive", "kind", "suite"))
		assert.Positive(t, v("wecom_receiver_token_refreshes_total", "app", "zone", "kind", "corp"))
		for _, code := range metricstest.LabelValues(t, mfs, "wecom_receiver_wecom_api_calls_total", "errcode") {
			assert.Regexp(t, `^(-?\d+|http_\d{3}|error)$`, code)
		}
	})

	t.Run("NATS", func(t *testing.T) {
		assert.Positive(t, v("wecom_receiver_nats_publish_duration_seconds", "stream", intake.StreamName))
		assert.Positive(t, v("wecom_receiver_nats_publish_duration_seconds", "stream", publish.StreamName))
	})

	t.Run("Runtime", func(t *testing.T) {
		assert.Positive(t, v("go_goroutines"))
		assert.Contains(t, mfs, "process_start_time_seconds")
	})

	t.Run("Health", func(t *testing.T) {
		for _, l := range [][]string{archive, zone} {
			assert.Zero(t, v("wecom_receiver_corp_consecutive_failures", l...), l)
			assert.InDelta(t, float64(time.Now().Unix()), v("wecom_receiver_corp_last_success_timestamp_seconds", l...), 120, l)
		}
		v("wecom_receiver_intake_pending")
		v("wecom_receiver_intake_oldest_unhandled_age_seconds")
		// The missing gauge may still hold the first reading, taken as the
		// consumers were being created on this fresh store (values:
		// internal/health's tests); both series exist from the start.
		for _, d := range app.IntakeDurables() {
			v("wecom_receiver_intake_consumer_missing", "consumer", d)
			v("wecom_receiver_intake_consumer_bound", "consumer", d)
		}
		assert.Equal(t, 1.0, v("wecom_receiver_intake_consumer_bound", "consumer", intake.DefaultDurable),
			"the hits were fetched: their callbacks were pulled")
		for _, k := range []string{"callback", "hit"} {
			assert.Zero(t, v("wecom_receiver_dead_letters", "kind", k), k)
		}
		v("wecom_receiver_suite_ticket_age_seconds", "suite", simSuite)
		// Read from NATS at start and every 15 s (values: internal/health's
		// tests): the series exist from the start.
		v("wecom_receiver_jetstream_store_used_bytes")
		v("wecom_receiver_jetstream_store_limit_bytes")
		for _, st := range []string{intake.StreamName, publish.StreamName} {
			v("wecom_receiver_jetstream_stream_bytes", "stream", st)
			v("wecom_receiver_jetstream_stream_limit_bytes", "stream", st)
		}
	})

	t.Run("Alerts", func(t *testing.T) {
		for _, name := range alertMetrics(t, "../../configs/alerts.yaml") {
			assert.Contains(t, mfs, name, "an alert rule uses %s", name)
		}
	})

	t.Run("Dashboard", func(t *testing.T) {
		used := dashboardMetrics(t, "../../configs/grafana-dashboard.json")
		require.NotEmpty(t, used)
		for _, name := range used {
			assert.Contains(t, mfs, name, "the dashboard queries %s", name)
		}
		// And the other way: every metric of ours has a panel.
		for name := range mfs {
			if strings.HasPrefix(name, "wecom_receiver_") {
				assert.True(t, slices.Contains(used, name), "no panel shows %s", name)
			}
		}
	})
}

// dashboardMetrics returns the wecom_receiver_ metric families the
// dashboard's queries name, histogram series suffixes removed.
func dashboardMetrics(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var dash any
	require.NoError(t, json.Unmarshal(data, &dash), "valid JSON")
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	require.NotEmpty(t, exprs)
	re := regexp.MustCompile(`wecom_receiver_[a-z_]+`)
	var names []string
	for _, e := range exprs {
		for _, n := range re.FindAllString(e, -1) {
			// A histogram's series; no metric of ours ends so otherwise.
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				n = strings.TrimSuffix(n, suffix)
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return names
}

// TestAdmin covers the admin listener: /metrics, /healthz and /readyz
// without a token, and the API behind it.
func TestAdmin(t *testing.T) {
	const token = "admin-token-for-tests-0123"

	t.Run("API", func(t *testing.T) {
		cfg := testConfig(t, "0s", "3s", "")
		cfg.Admin.Token = config.Secret(token)
		m, logs := startMain(t, cfg)

		for _, tt := range []struct {
			name, path, token string
			status            int
			body              string
		}{
			{"PingOK", "/api/ping", token, http.StatusOK, "pong\n"},
			{"PingNoToken", "/api/ping", "", http.StatusUnauthorized, "401 unauthorized\n"},
			{"PingWrongToken", "/api/ping", token + "x", http.StatusUnauthorized, "401 unauthorized\n"},
			{"PingPrefixOfToken", "/api/ping", token[:10], http.StatusUnauthorized, "401 unauthorized\n"},
			{"UnknownAPIPathNeedsToken", "/api/nothing", "", http.StatusUnauthorized, "401 unauthorized\n"},
			{"MetricsNoToken", "/metrics", "", http.StatusOK, ""},
			{"HealthzNoToken", "/healthz", "", http.StatusOK, "ok\n"},
			{"ReadyzNoToken", "/readyz", "", http.StatusOK, "ready\n"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				status, body := adminGet(t, m, tt.path, tt.token)
				assert.Equal(t, tt.status, status)
				if tt.body != "" {
					assert.Equal(t, tt.body, body)
				}
			})
		}
		t.Run("OtherSchemes", func(t *testing.T) {
			for _, h := range []string{"Basic " + token, token, "Bearer", "Bearer  ", "bearer " + token + " extra"} {
				req, err := http.NewRequest(http.MethodGet, "http://"+m.AdminAddr()+"/api/ping", nil)
				require.NoError(t, err)
				req.Header.Set("Authorization", h)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%q", h)
				assert.Equal(t, `Bearer realm="receiver admin"`, resp.Header.Get("WWW-Authenticate"))
			}
		})
		assert.NotContains(t, logs.String(), token, "the token is never logged")
	})

	t.Run("NoTokenNoAPI", func(t *testing.T) {
		m, _ := startMain(t, testConfig(t, "0s", "3s", ""))
		require.False(t, m.AdminHandler().APIOn())
		status, _ := adminGet(t, m, "/api/ping", "anything-at-all-0123")
		assert.Equal(t, http.StatusNotFound, status)
		status, _ = adminGet(t, m, "/metrics", "")
		assert.Equal(t, http.StatusOK, status)
	})

	t.Run("Off", func(t *testing.T) {
		cfg := testConfig(t, "0s", "3s", "")
		cfg.Admin.Listen = ""
		m, _ := startMain(t, cfg)
		assert.Empty(t, m.AdminAddr())
		assert.Nil(t, m.AdminServer())
	})

	t.Run("NotOnCallbackPort", func(t *testing.T) {
		// /metrics and /api live on the admin listener only.
		cfg := testConfig(t, "0s", "3s", "")
		cfg.Admin.Token = config.Secret(token)
		m, _ := startMain(t, cfg)
		for _, p := range []string{"/metrics", "/api/ping"} {
			status, _ := send(t, http.MethodGet, "http://"+m.Addr()+p, "")
			assert.Equal(t, http.StatusNotFound, status, p)
		}
	})
}
