package fetch_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// pageAPI answers the first call without a cursor with one page of two
// messages, sent sent; later calls get an empty page at the same cursor.
// fail makes every call fail.
type pageAPI struct {
	mu   sync.Mutex
	sent int64
	fail bool
}

func (a *pageAPI) GetHitMsgList(_ context.Context, _ string, req wecom.HitMsgListRequest) (*wecom.HitMsgList, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return nil, &wecom.APIError{API: "get_hit_msg_list", Code: -1, Msg: "system busy"}
	}
	if req.Cursor != "" {
		return &wecom.HitMsgList{NextCursor: req.Cursor}, nil
	}
	msg := func(id string, sent int64) wecomhit.HitMessage {
		return wecomhit.HitMessage{MsgID: id, HitRules: []wecomhit.HitRule{{RuleID: "r1"}},
			Detail: &wecomhit.MsgDetail{SendTime: sent, MsgType: 1}}
	}
	return &wecom.HitMsgList{NextCursor: "c1", MsgList: []wecomhit.HitMessage{
		msg("m1", a.sent-50), msg("m2", a.sent),
	}}, nil
}

// nopPublisher acks every page.
type nopPublisher struct{}

func (nopPublisher) Publish(_ context.Context, p *wecomhit.HitPage) (wecomhit.PageResult, error) {
	return wecomhit.PageResult{Published: len(p.Messages)}, nil
}

func (nopPublisher) Existing(context.Context, string, time.Time) (map[string]bool, error) {
	return map[string]bool{}, nil
}

func runFetcher(t *testing.T, js jetstream.JetStream, api fetch.HitLister, m *fetch.Metrics) *fetch.Fetcher {
	t.Helper()
	f, err := fetch.New(js, []fetch.App{{Name: appName, API: api, Corps: []string{corpID}}}, nopPublisher{},
		fetch.WithPollInterval(0), fetch.WithTokenlessPerMinute(1000), fetch.WithMetrics(m))
	require.NoError(t, err)
	require.NoError(t, f.Setup(natstest.Context(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	natstest.WaitFor(t, 5*time.Second, func() error {
		if !f.Running() {
			return errors.New("not running")
		}
		return nil
	})
	return f
}

func TestMetrics(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	api := &pageAPI{sent: time.Now().Add(-100 * time.Second).Unix()}
	f := runFetcher(t, js, api, fetch.NewMetrics(reg))

	value := func(name string, labels ...string) float64 {
		return metricstest.Value(t, metricstest.Families(t, reg), name, labels...)
	}
	ac := []string{"app", appName, "corp", corpID}
	// Pre-created before any fetch.
	for _, s := range []string{wecomhit.SourceCallback, wecomhit.SourcePoll, wecomhit.SourceBackfill} {
		assert.Zero(t, value("wecom_receiver_fetch_pages_total", append(ac, "source", s)...))
	}
	assert.Zero(t, value("wecom_receiver_fetch_errors_total", ac...))
	assert.Zero(t, value("wecom_receiver_cursor_lag_seconds", ac...), "no cursor yet")

	// No token stored yet: the poll's page is token-less, source poll.
	f.Poll()
	natstest.WaitFor(t, 5*time.Second, func() error {
		if n := value("wecom_receiver_fetch_pages_total", append(ac, "source", wecomhit.SourcePoll)...); n < 1 {
			return errors.New("no poll page yet")
		}
		// The page is counted before the cursor is stored and the lag set.
		if value("wecom_receiver_cursor_lag_seconds", ac...) == 0 {
			return errors.New("no lag yet")
		}
		return nil
	})
	assert.Equal(t, 1.0, value("wecom_receiver_fetch_page_duration_seconds", "app", appName))
	assert.InDelta(t, 100, value("wecom_receiver_cursor_lag_seconds", ac...), 10,
		"now minus the newest send time the cursor passed")

	cb := &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID, Token: "tok-1", ReceivedAt: time.Now()}
	require.NoError(t, f.Handle(natstest.Context(t), cb))
	assert.Equal(t, 1.0, value("wecom_receiver_fetch_pages_total", append(ac, "source", wecomhit.SourceCallback)...))
	assert.Equal(t, 2.0, value("wecom_receiver_fetch_page_duration_seconds", "app", appName))
	assert.InDelta(t, 100, value("wecom_receiver_cursor_lag_seconds", ac...), 10, "an empty page keeps the newest send time")

	api.mu.Lock()
	api.fail = true
	api.mu.Unlock()
	require.Error(t, f.Handle(natstest.Context(t), &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID, Token: "tok-2"}))
	assert.Equal(t, 1.0, value("wecom_receiver_fetch_errors_total", ac...))

	api.mu.Lock()
	api.fail = false
	api.mu.Unlock()
	_, err := f.Backfill(natstest.Context(t), appName, corpID, time.Now().Add(-time.Hour), nopPublisher{}, nil)
	require.NoError(t, err)
	assert.Equal(t, 1.0, value("wecom_receiver_fetch_pages_total", append(ac, "source", wecomhit.SourceBackfill)...))

	t.Run("LagFromStoredCursor", func(t *testing.T) {
		// A replica starting later reads the lag from the stored cursor
		// before it fetches anything.
		reg := prometheus.NewPedanticRegistry()
		runFetcher(t, js, &pageAPI{}, fetch.NewMetrics(reg))
		natstest.WaitFor(t, 5*time.Second, func() error {
			if v := metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_cursor_lag_seconds", ac...); v < 90 {
				return errors.New("lag not initialised")
			}
			return nil
		})
	})
}
