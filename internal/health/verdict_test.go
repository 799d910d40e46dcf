package health_test

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/metricstest"
)

func TestJudge(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := func(v float64) *float64 { return &v }
	healthy := func() health.Report {
		return health.Report{
			Intake:  health.Intake{Waiting: 3, OldestUnhandled: &now, OldestUnhandledAgeSeconds: 2},
			Storage: health.Storage{UsedRatio: 0.5},
			Suites:  []health.Suite{{App: "archive", SuiteID: "s1", ReceivedAt: &now, AgeSeconds: f(300)}},
			Corps:   []health.Corp{{App: "archive", CorpID: "ww1", ConsecutiveFailures: 2}},
		}
	}
	th := health.DefaultThresholds()
	th.CallbackRoom = 100
	for _, tt := range []struct {
		name   string
		change func(*health.Report)
		status string
		codes  []string
		line   string
	}{
		{"OK", func(*health.Report) {}, health.StatusOK, nil, "OK"},
		{"CorpFailing", func(r *health.Report) {
			r.Corps[0].ConsecutiveFailures = 3
			r.Corps[0].LastError = &fetch.HealthError{API: "get_suite_token", Errcode: 40085}
		}, health.StatusDegraded, []string{health.ReasonCorpFailing},
			"DEGRADED: archive/ww1: get_suite_token errcode 40085, 3 failed fetches in a row"},
		{"TicketMissing", func(r *health.Report) { r.Suites[0].ReceivedAt, r.Suites[0].AgeSeconds = nil, nil },
			health.StatusDegraded, []string{health.ReasonTicketMissing}, "DEGRADED: suite s1 (app archive) has no suite_ticket"},
		{"TicketRejected", func(r *health.Report) {
			r.Suites[0].ReceivedAt, r.Suites[0].AgeSeconds = nil, nil
			r.Suites[0].LastRejected, r.Suites[0].Rejections = &now, 2
		}, health.StatusDegraded, []string{health.ReasonTicketRejected},
			"DEGRADED: suite s1 (app archive) has no usable suite_ticket: WeCom rejected the last (40085)"},
		{"TicketOld", func(r *health.Report) { r.Suites[0].AgeSeconds = f(41 * 60) },
			health.StatusDegraded, []string{health.ReasonTicketOld}, "DEGRADED: suite s1 (app archive) ticket is 41m0s old (limit 40m0s)"},
		{"DeadLetters", func(r *health.Report) { r.DeadLetters = health.DeadLetters{Callback: 300, Hit: 1} },
			health.StatusDegraded, []string{health.ReasonDeadLetters}, "DEGRADED: 301 dead letters"},
		{"StorageHigh", func(r *health.Report) {
			r.Storage = health.Storage{UsedRatio: 0.95, Streams: []health.StreamStorage{{Stream: "WECOM_HITS", Bytes: 95, MaxBytes: 100}}}
		}, health.StatusDegraded, []string{health.ReasonStorageHigh}, "DEGRADED: storage 95% used (stream WECOM_HITS, limit 90%)"},
		{"StorageFull", func(r *health.Report) { r.Storage = health.Storage{UsedRatio: 1, UsedBytes: 10, LimitBytes: 10} },
			health.StatusStalled, []string{health.ReasonStorageFull}, "STALLED: storage full (account 100%)"},
		// /readyz fails on every replica once WECOM_CALLBACKS cannot take
		// one more callback of the largest size (th.CallbackRoom = 100
		// below), far below 99% of a small stream.
		{"NoCallbackRoom", func(r *health.Report) {
			r.Storage = health.Storage{UsedRatio: 0.6, Streams: []health.StreamStorage{{Stream: "WECOM_CALLBACKS", Bytes: 160, MaxBytes: 250}}}
		}, health.StatusStalled, []string{health.ReasonStorageFull},
			"STALLED: storage full (stream WECOM_CALLBACKS 60%, no room for a callback of the largest size)"},
		{"CallbackRoomLeft", func(r *health.Report) {
			r.Storage = health.Storage{UsedRatio: 0.6, Streams: []health.StreamStorage{{Stream: "WECOM_CALLBACKS", Bytes: 150, MaxBytes: 250}, {Stream: "WECOM_HITS", Bytes: 10, MaxBytes: 100}}}
			r.Storage.Streams[0].MaxBytes = 251
		}, health.StatusOK, nil, "OK"},
		{"NoAccountRoom", func(r *health.Report) {
			r.Storage = health.Storage{UsedRatio: 0.5, UsedBytes: 950, LimitBytes: 1000}
		}, health.StatusStalled, []string{health.ReasonStorageFull},
			"STALLED: storage full (account 50%, no room for a callback of the largest size)"},
		{"IntakeStalled", func(r *health.Report) { r.Intake.OldestUnhandledAgeSeconds = 61 },
			health.StatusStalled, []string{health.ReasonIntakeStalled}, "STALLED: oldest unhandled callback waits 1m1s (limit 1m0s)"},
		{"IntakeUnbound", func(r *health.Report) { r.Intake.MissingConsumers = []string{"receiver-tickets"} },
			health.StatusStalled, []string{health.ReasonIntakeUnbound},
			"STALLED: intake consumer receiver-tickets does not exist: its callbacks are stored and not handled"},
		{"StalledFirst", func(r *health.Report) {
			r.DeadLetters.Callback = 1
			r.Intake.OldestUnhandledAgeSeconds = 600
		}, health.StatusStalled, []string{health.ReasonIntakeStalled, health.ReasonDeadLetters}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := healthy()
			tt.change(&rep)
			v := health.Judge(rep, th)
			assert.Equal(t, tt.status, v.Status)
			var codes []string
			for _, r := range v.Reasons {
				codes = append(codes, r.Code)
			}
			assert.Equal(t, tt.codes, codes)
			if tt.line != "" {
				assert.Equal(t, tt.line, v.Line())
			}
		})
	}
	t.Run("ThresholdsApply", func(t *testing.T) {
		rep := healthy()
		th := th
		th.MaxFailures = 2
		th.MaxCallbackAge = time.Second
		v := health.Judge(rep, th)
		assert.Equal(t, health.StatusStalled, v.Status)
		require.Len(t, v.Reasons, 2)
		assert.Equal(t, health.ReasonIntakeStalled, v.Reasons[0].Code)
		assert.Equal(t, health.ReasonCorpFailing, v.Reasons[1].Code)
		assert.Equal(t, 2.0, v.Reasons[1].Value)
		assert.Equal(t, 2.0, v.Reasons[1].Limit)
	})
}

func TestMetrics_PreCreated(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	health.NewMetrics(reg, health.Target{Apps: []health.App{{Name: "archive", SuiteID: "s1"}, {Name: "zone"}},
		Durables: []string{"receiver", "receiver-tickets"}})
	mfs := metricstest.Families(t, reg)
	assert.True(t, math.IsInf(metricstest.Value(t, mfs, "wecom_receiver_suite_ticket_age_seconds", "suite", "s1"), 1),
		"no ticket read yet")
	assert.Equal(t, []string{"s1"}, metricstest.LabelValues(t, mfs, "wecom_receiver_suite_ticket_age_seconds", "suite"))
	for _, k := range []string{health.KindCallback, health.KindHit} {
		assert.Zero(t, metricstest.Value(t, mfs, "wecom_receiver_dead_letters", "kind", k))
	}
	for _, name := range []string{"wecom_receiver_intake_pending", "wecom_receiver_intake_oldest_unhandled_age_seconds",
		"wecom_receiver_jetstream_store_used_bytes", "wecom_receiver_jetstream_store_limit_bytes"} {
		assert.Zero(t, metricstest.Value(t, mfs, name), name)
	}
	for _, d := range []string{"receiver", "receiver-tickets"} {
		assert.Zero(t, metricstest.Value(t, mfs, "wecom_receiver_intake_consumer_missing", "consumer", d), d)
	}
	assert.ElementsMatch(t, []string{"WECOM_CALLBACKS", "WECOM_HITS", "WECOM_CORP_EVENTS", "WECOM_DEAD_LETTERS"},
		metricstest.LabelValues(t, mfs, "wecom_receiver_jetstream_stream_bytes", "stream"))
}

// CallbackRoom is what /readyz and the verdict both judge by.
func TestCallbackRoom(t *testing.T) {
	st := health.Storage{UsedBytes: 500, LimitBytes: 1000, Streams: []health.StreamStorage{
		{Stream: "WECOM_CALLBACKS", Bytes: 150, MaxBytes: 250},
		{Stream: "WECOM_HITS", Bytes: 100, MaxBytes: 100},
	}}
	require.NoError(t, health.CallbackRoom(st, 100), "a full WECOM_HITS does not stop callbacks")
	require.NoError(t, health.CallbackRoom(st, 0))

	err := health.CallbackRoom(st, 101)
	require.ErrorIs(t, err, health.ErrNoRoom)
	assert.Equal(t, "no room for a callback: stream WECOM_CALLBACKS has 100 of 250 bytes left", err.Error())

	st.UsedBytes = 950
	err = health.CallbackRoom(st, 60)
	require.ErrorIs(t, err, health.ErrNoRoom)
	assert.Equal(t, "no room for a callback: jetstream store has 50 of 1000 bytes left", err.Error())
}

// TestReport_Attention: the corps a verdict reason names and those failing
// below the threshold need a person; a corp that recovered (its last error
// kept) and one never failing do not.
func TestReport_Attention(t *testing.T) {
	rep := health.Report{Corps: []health.Corp{
		{App: "archive", CorpID: "ok"},
		{App: "archive", CorpID: "failing", ConsecutiveFailures: 5},
		{App: "archive", CorpID: "once", ConsecutiveFailures: 1},
		{App: "archive", CorpID: "recovered", LastError: &fetch.HealthError{API: "gettoken", Errcode: 42001}},
		{App: "other", CorpID: "failing"},
	}}
	rep.Verdict = health.Judge(rep, health.DefaultThresholds())
	var got []string
	for _, c := range rep.Attention() {
		got = append(got, c.App+"/"+c.CorpID)
	}
	assert.Equal(t, []string{"archive/failing", "archive/once"}, got)
}
