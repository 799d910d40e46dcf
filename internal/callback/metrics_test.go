package callback

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
)

func TestMetrics_Outcomes(t *testing.T) {
	now := time.Unix(1717000030, 0)
	clock := WithClock(func() time.Time { return now })

	t.Run("Accepted", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		m := NewMetrics(reg)
		f := newFixture(t, &memSink{}, clock, WithMetrics(m))
		q, body, _ := sealHit(t, f.c, "1717000010")
		for range 2 {
			status, _, _ := do(t, http.MethodPost, f.url("v1", q), body)
			require.Equal(t, http.StatusOK, status)
		}
		assert.Equal(t, 2.0, testutil.ToFloat64(m.callbacks.WithLabelValues("v1", "hit_keyword", OutcomeAccepted)))
		assert.Equal(t, 0.0, testutil.ToFloat64(m.callbacks.WithLabelValues("v2", "hit_keyword", OutcomeAccepted)))
		assert.Equal(t, 2, histogramCount(t, reg, "wecom_receiver_callback_duration_seconds", "v1"))
	})

	t.Run("Rejected", func(t *testing.T) {
		// Every refusal counts once under its reason, with the app it was
		// for, or UnknownApp for an app that is not configured.
		reg := prometheus.NewPedanticRegistry()
		metrics := NewMetrics(reg)
		f := newFixture(t, &memSink{}, clock, WithMaxBodyBytes(1024), WithMetrics(metrics))
		bad := callbacktest.Bad(t, "v1", "v2", now)
		want := map[[2]string]float64{}
		for _, tt := range bad {
			status, _, _ := do(t, tt.Method, f.url(tt.App, tt.Query), tt.Body)
			require.Equal(t, tt.Status, status, tt.Name)
			app := tt.App
			if app == "no-such-app" {
				app = UnknownApp
			}
			want[[2]string{app, tt.Reason}]++
			assert.True(t, slices.Contains(reasons, tt.Reason), "reason %q is in the fixed list", tt.Reason)
		}
		for k, n := range want {
			assert.Equal(t, n, testutil.ToFloat64(metrics.rejections.WithLabelValues(k[0], k[1])), "%v", k)
		}
		var rejected float64
		for _, k := range kindLabels() {
			rejected += testutil.ToFloat64(metrics.callbacks.WithLabelValues("v1", k, OutcomeRejected))
		}
		var total float64
		for _, tt := range bad {
			if tt.App == "v1" {
				total++
			}
		}
		assert.Equal(t, total, rejected)
		assert.Equal(t, 1.0, testutil.ToFloat64(metrics.callbacks.WithLabelValues(UnknownApp, KindNone, OutcomeRejected)))
		assert.Equal(t, 0.0, testutil.ToFloat64(metrics.callbacks.WithLabelValues("v1", "hit_keyword", OutcomeAccepted)))
		// The scanner's path segment never became a label value.
		assert.NotContains(t, gatherText(t, reg), "no-such-app")
	})

	t.Run("Unavailable", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		metrics := NewMetrics(reg)
		f := newFixture(t, &memSink{err: errors.New("nats: timeout")}, clock, WithMetrics(metrics))
		q, body, _ := sealHit(t, f.c, "1717000010")
		status, _, _ := do(t, http.MethodPost, f.url("v1", q), body)
		require.Equal(t, http.StatusServiceUnavailable, status)
		assert.Equal(t, 1.0, testutil.ToFloat64(metrics.callbacks.WithLabelValues("v1", "hit_keyword", OutcomeUnavailable)))
		assert.Equal(t, 1.0, testutil.ToFloat64(metrics.rejections.WithLabelValues("v1", "store_failed")))
	})

	t.Run("Verify", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		metrics := NewMetrics(reg)
		f := newFixture(t, &memSink{}, WithTimestampWindow(0), WithMetrics(metrics))
		ts := "1409659813"
		enc, sig, err := f.c.Seal("1616140317555161061", ts, "n1")
		require.NoError(t, err)
		status, _, _ := do(t, http.MethodGet, f.url("v1", callbacktest.WithEcho(callbacktest.Query(sig, ts, "n1"), enc)), "")
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, 1.0, testutil.ToFloat64(metrics.callbacks.WithLabelValues("v1", KindVerify, OutcomeAccepted)))
	})

	t.Run("PreCreated", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		newFixture(t, &memSink{}, WithMetrics(NewMetrics(reg)))
		// apps (2 + unknown) × kinds × outcomes, all at zero before traffic.
		n, err := testutil.GatherAndCount(reg, "wecom_receiver_callbacks_total")
		require.NoError(t, err)
		assert.Equal(t, 3*len(kindLabels())*len(outcomes), n)
		n, err = testutil.GatherAndCount(reg, "wecom_receiver_callback_rejections_total")
		require.NoError(t, err)
		assert.Equal(t, 3*len(reasons), n)
	})

	t.Run("OutsideLists", func(t *testing.T) {
		// A kind or reason the fixed lists lack still counts (none is
		// given today): the looked-up series fall back to the vectors.
		m := NewMetrics(prometheus.NewPedanticRegistry())
		s := m.series("v1")
		s.observe("new_kind", OutcomeRejected, "new_reason", 0.01)
		s.observe("hit_keyword", OutcomeAccepted, "", 0.01)
		assert.Equal(t, 1.0, testutil.ToFloat64(m.callbacks.WithLabelValues("v1", "new_kind", OutcomeRejected)))
		assert.Equal(t, 1.0, testutil.ToFloat64(m.rejections.WithLabelValues("v1", "new_reason")))
		assert.Equal(t, 1.0, testutil.ToFloat64(m.callbacks.WithLabelValues("v1", "hit_keyword", OutcomeAccepted)))
		var none *Metrics
		none.series("v1").observe("hit_keyword", OutcomeAccepted, "", 0) // records nothing, does not panic
	})

	t.Run("Nil", func(t *testing.T) {
		// No metrics: the handler works and records nothing.
		f := newFixture(t, &memSink{}, clock)
		q, body, _ := sealHit(t, f.c, "1717000010")
		status, _, _ := do(t, http.MethodPost, f.url("v1", q), body)
		assert.Equal(t, http.StatusOK, status)
	})
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name, app string) int {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "app" && l.GetValue() == app {
					return int(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	t.Fatalf("%s{app=%q} not found", name, app)
	return 0
}

func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var s string
	for _, mf := range mfs {
		s += mf.String()
	}
	return s
}
