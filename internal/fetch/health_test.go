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

// failAPI answers empty pages, or err when set.
type failAPI struct {
	mu  sync.Mutex
	err error
}

func (a *failAPI) set(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

func (a *failAPI) GetHitMsgList(context.Context, string, wecom.HitMsgListRequest) (*wecom.HitMsgList, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	return &wecom.HitMsgList{NextCursor: "c"}, nil
}

// stepClock is a clock a test moves by hand.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestHealth: every fetch outcome reaches the shared health entry, counts
// continue across replicas, Since marks the start of a run of one error,
// and a success resets the count but keeps the last error for people.
func TestHealth(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	clock := &stepClock{t: time.Now().UTC().Truncate(time.Second)}
	start := func(api fetch.HitLister, reg prometheus.Registerer) *fetch.Fetcher {
		t.Helper()
		f, err := fetch.New(js, []fetch.App{{Name: appName, API: api, Corps: []string{corpID}}}, nopPublisher{},
			fetch.WithPollInterval(0), fetch.WithTokenlessPerMinute(1000), fetch.WithClock(clock.Now), fetch.WithMetrics(fetch.NewMetrics(reg)))
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
	// Each fetch is a step later than the last, past the write interval,
	// so every outcome is written at once.
	fetchOnce := func(f *fetch.Fetcher) error {
		clock.Add(6 * time.Second)
		return f.Handle(natstest.Context(t), &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID})
	}
	health := func() fetch.Health {
		st, err := fetch.ReadState(natstest.Context(t), js, appName, corpID)
		require.NoError(t, err)
		return st.Health
	}
	ticketErr := &wecom.APIError{API: "get_suite_token", Code: 40085, Msg: "invalid suite ticket"}

	reg1 := prometheus.NewPedanticRegistry()
	api1 := &failAPI{}
	f1 := start(api1, reg1)
	gauge := func(name string) float64 {
		return metricstest.Value(t, metricstest.Families(t, reg1), name, "app", appName, "corp", corpID)
	}
	assert.Zero(t, gauge("wecom_receiver_corp_consecutive_failures"), "pre-created")
	assert.Zero(t, gauge("wecom_receiver_corp_last_success_timestamp_seconds"), "pre-created")
	assert.Equal(t, fetch.Health{}, health(), "nothing recorded before a fetch")

	require.NoError(t, fetchOnce(f1))
	ok1 := clock.Now()
	h := health()
	assert.Equal(t, fetch.Health{LastSuccess: ok1}, h)
	assert.False(t, h.Failing())
	assert.Equal(t, float64(ok1.Unix()), gauge("wecom_receiver_corp_last_success_timestamp_seconds"))

	api1.set(ticketErr)
	require.Error(t, fetchOnce(f1))
	firstFail := clock.Now()
	require.Error(t, fetchOnce(f1))
	require.Error(t, fetchOnce(f1))
	h = health()
	assert.Equal(t, 3, h.ConsecutiveFailures)
	assert.True(t, h.Failing())
	assert.Equal(t, ok1, h.LastSuccess)
	require.NotNil(t, h.LastError)
	assert.Equal(t, "get_suite_token", h.LastError.API)
	assert.Equal(t, 40085, h.LastError.Errcode)
	assert.Equal(t, firstFail, h.LastError.Since, "since the run of this error began")
	assert.Equal(t, clock.Now(), h.LastError.At)
	assert.Contains(t, h.LastError.Message, "40085")
	assert.Equal(t, 3.0, gauge("wecom_receiver_corp_consecutive_failures"))

	t.Run("OtherReplicaContinuesTheCount", func(t *testing.T) {
		api2 := &failAPI{err: ticketErr}
		f2 := start(api2, prometheus.NewPedanticRegistry())
		require.Error(t, fetchOnce(f2))
		h := health()
		assert.Equal(t, 4, h.ConsecutiveFailures)
		assert.Equal(t, firstFail, h.LastError.Since)
	})

	t.Run("AnotherErrorRestartsSince", func(t *testing.T) {
		api1.set(&wecom.StatusError{API: "get_hit_msg_list", StatusCode: 503})
		require.Error(t, fetchOnce(f1))
		h := health()
		assert.Equal(t, 5, h.ConsecutiveFailures)
		assert.Equal(t, "get_hit_msg_list", h.LastError.API)
		assert.Equal(t, 503, h.LastError.HTTPStatus)
		assert.Zero(t, h.LastError.Errcode)
		assert.Equal(t, clock.Now(), h.LastError.Since)
	})

	t.Run("SuccessResets", func(t *testing.T) {
		api1.set(nil)
		require.NoError(t, fetchOnce(f1))
		h := health()
		assert.Zero(t, h.ConsecutiveFailures)
		assert.Equal(t, clock.Now(), h.LastSuccess)
		require.NotNil(t, h.LastError, "the last error stays visible")
		assert.Equal(t, "get_hit_msg_list", h.LastError.API)
		assert.Zero(t, gauge("wecom_receiver_corp_consecutive_failures"))
	})

	t.Run("RepeatsWrittenAtMostEveryFewSeconds", func(t *testing.T) {
		// Same state again within the interval: the entry is not
		// rewritten for each fetch; the last outcome is written later.
		kv, err := js.KeyValue(natstest.Context(t), fetch.HealthBucket)
		require.NoError(t, err)
		lastSeq := func() uint64 {
			st, err := kv.Status(natstest.Context(t))
			require.NoError(t, err)
			return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
		}
		before := lastSeq()
		for range 5 {
			require.NoError(t, f1.Handle(natstest.Context(t), &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID}))
		}
		assert.Equal(t, before, lastSeq(), "no write for unchanged state within the interval")
		clock.Add(6 * time.Second)
		require.NoError(t, f1.Handle(natstest.Context(t), &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID}))
		assert.Equal(t, before+1, lastSeq(), "one write once the interval has passed")
		assert.Equal(t, clock.Now(), health().LastSuccess)
	})
}
