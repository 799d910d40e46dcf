package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/secret"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// manyCorps is a simulator with n quiet corps besides corpID, each with a
// keyword rule, and a fetcher over all of them whose WeCom calls are
// logged, and held on demand.
type manyCorps struct {
	t     *testing.T
	sim   *wecomsim.Sim
	js    jetstream.JetStream
	corps []string // sorted: the order Poll queues them in
	api   *callLog
	reg   *prometheus.Registry
	f     *fetch.Fetcher
}

func newManyCorps(t *testing.T, n int, opts ...fetch.Option) *manyCorps {
	t.Helper()
	_, js := natstest.Connect(t, natstest.RunServer(t))
	seeded := append([]wecomsim.Corp{{CorpID: corpID, PermanentCode: "perm-code"}}, wecomsim.GenerateCorps(n)...)
	sim, err := wecomsim.New(wecomsim.Options{Seed: 7, MessageRate: -1, Archive: wecomsim.Archive{
		SuiteID: suiteID, SuiteSecret: "suite-secret", Corps: seeded,
	}}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, sim.Start(context.Background(), "127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Close(ctx)
	})
	app := wecom.App{Name: appName, Mode: wecom.ModeArchive, APIBaseURL: sim.URL(), SuiteID: suiteID, SuiteSecret: "suite-secret"}
	m := &manyCorps{t: t, sim: sim, js: js, reg: prometheus.NewRegistry()}
	for _, c := range seeded {
		app.Corps = append(app.Corps, wecom.Corp{CorpID: c.CorpID, PermanentCode: secret.Secret(c.PermanentCode)})
		_, err := sim.AddRule(c.CorpID, "kw", []string{"微信"}, nil)
		require.NoError(t, err)
	}
	ctx := natstest.Context(t)
	stores, err := wecom.OpenStores(ctx, js, wecom.StoreConfig{})
	require.NoError(t, err)
	require.NoError(t, stores.Tickets.Put(ctx, suiteID, sim.SuiteTicket(), time.Now(), sim.Now()))
	client, err := wecom.New(app, stores, wecom.WithCallTimeout(5*time.Second))
	require.NoError(t, err)
	m.api = &callLog{inner: client}
	for _, c := range app.Corps {
		m.corps = append(m.corps, c.CorpID)
	}
	m.f, err = fetch.New(js, []fetch.App{{Name: appName, API: m.api, Corps: m.corps}}, newPublisher(t, js),
		append([]fetch.Option{fetch.WithPollInterval(0), fetch.WithTokenlessPerMinute(1000),
			fetch.WithMetrics(fetch.NewMetrics(m.reg))}, opts...)...)
	require.NoError(t, err)
	require.NoError(t, m.f.Setup(ctx))
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.f.Run(runCtx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	natstest.Eventually(t, 5*time.Second, "fetcher running", m.f.Running)
	slices.Sort(m.corps) // as the directory lists them
	return m
}

// message sends one message in corp that hits its rule.
func (m *manyCorps) message(corp string) {
	m.t.Helper()
	_, err := m.sim.SendMessage(corp, wecomsim.Message{MsgType: wecomsim.MsgText, Text: "加我微信"})
	require.NoError(m.t, err)
}

// callback hands the fetcher corp's hit callback, with a fresh token, in
// the background; the channel gets Handle's answer.
func (m *manyCorps) callback(corp string) <-chan error {
	m.t.Helper()
	tok, err := m.sim.IssueHitToken(corp)
	require.NoError(m.t, err)
	out := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out <- m.f.Handle(ctx, &wecomhit.Callback{ID: tok, App: appName, Kind: wecomhit.KindHitKeyword,
			CorpID: corp, SuiteID: suiteID, Token: tok, ReceivedAt: time.Now()})
	}()
	return out
}

// queued reads how many corps wait in a queue of the scheduler, as the
// dispatcher last saw it.
func (m *manyCorps) queued(queue string) int {
	mfs, err := m.reg.Gather()
	require.NoError(m.t, err)
	for _, mf := range mfs {
		if mf.GetName() != "wecom_receiver_fetch_queued" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "queue" && l.GetValue() == queue {
					return int(s.GetGauge().GetValue())
				}
			}
		}
	}
	return -1
}

// call is one get_hit_msg_list.
type call struct {
	corp      string
	withToken bool
	at        time.Time
}

// callLog is a HitLister that logs every call and, when hold is set,
// holds the next call until release.
type callLog struct {
	inner   fetch.HitLister
	mu      sync.Mutex
	calls   []call
	hold    chan struct{} // the next call waits for it to close
	holding bool          // a call is waiting on hold
}

func (l *callLog) GetHitMsgList(ctx context.Context, corp string, req wecom.HitMsgListRequest) (*wecom.HitMsgList, error) {
	l.mu.Lock()
	l.calls = append(l.calls, call{corp: corp, withToken: req.Token != "", at: time.Now()})
	hold := l.hold
	l.hold = nil
	l.holding = hold != nil
	l.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return l.inner.GetHitMsgList(ctx, corp, req)
}

// holdNext makes the next call wait until the returned func is called.
func (l *callLog) holdNext() (release func()) {
	ch := make(chan struct{})
	l.mu.Lock()
	l.hold = ch
	l.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

func (l *callLog) log() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]call(nil), l.calls...)
}

func (l *callLog) held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holding && l.hold == nil
}

func (l *callLog) of(corp string) []call {
	var out []call
	for _, c := range l.log() {
		if c.corp == corp {
			out = append(out, c)
		}
	}
	return out
}

// TestScheduler_CallbacksFirst: with every corp queued for a poll and the
// one worker busy, a callback for the corp polled last is fetched next,
// before every waiting poll, with its token.
func TestScheduler_CallbacksFirst(t *testing.T) {
	m := newManyCorps(t, 12, fetch.WithWorkers(1))
	release := m.api.holdNext()
	defer release()
	m.f.Poll()
	natstest.Eventually(t, 10*time.Second, "the first poll under way", m.api.held)
	natstest.Eventually(t, 10*time.Second, "polls queued", func() bool { return m.queued("poll") >= 11 })

	last := m.corps[len(m.corps)-1]
	m.message(last)
	done := m.callback(last)
	natstest.Eventually(t, 10*time.Second, "the callback queued", func() bool { return m.queued("callback") == 1 })
	release()
	require.NoError(t, <-done)

	calls := m.api.log()
	require.GreaterOrEqual(t, len(calls), 2)
	assert.Equal(t, m.corps[0], calls[0].corp, "the poll that was under way")
	assert.Equal(t, last, calls[1].corp, "the callback went ahead of %d waiting polls", len(m.corps)-1)
	assert.True(t, calls[1].withToken)
}

// TestScheduler_Fairness: a hot corp with many pages to fetch gets one
// page at a time, so a cold corp's callback that arrives meanwhile is
// fetched after the hot corp's page under way, not after its backlog.
func TestScheduler_Fairness(t *testing.T) {
	m := newManyCorps(t, 3, fetch.WithWorkers(1), fetch.WithPageSize(10))
	hot, cold := corpID, m.corps[1]
	require.NotEqual(t, hot, cold)
	for range 300 { // 30 pages
		m.message(hot)
	}
	m.message(cold)
	hotDone := m.callback(hot)
	natstest.Eventually(t, 10*time.Second, "the hot corp's first pages", func() bool { return len(m.api.of(hot)) >= 3 })

	release := m.api.holdNext() // the hot corp's next page, in the one worker
	defer release()
	natstest.Eventually(t, 10*time.Second, "a hot page held", m.api.held)
	before := len(m.api.of(hot))
	coldDone := m.callback(cold)
	natstest.Eventually(t, 10*time.Second, "the cold callback queued", func() bool { return m.queued("callback") == 1 })
	release()
	require.NoError(t, <-coldDone)

	calls := m.api.log()
	var next string
	for i, n := 0, 0; i < len(calls)-1; i++ {
		if calls[i].corp == hot {
			if n++; n == before { // the held page
				next = calls[i+1].corp
				break
			}
		}
	}
	assert.Equal(t, cold, next, "the cold corp's page came right after the hot page under way")
	require.NoError(t, <-hotDone)
	assert.GreaterOrEqual(t, len(m.api.of(hot)), 30, "the hot corp's backlog was fetched in full")
	assert.Less(t, before, 30, "the cold corp did not wait for the backlog")
}

// TestScheduler_Budget: with the global token-less budget spent, waiting
// polls make no call, and a callback with a token still goes.
func TestScheduler_Budget(t *testing.T) {
	m := newManyCorps(t, 9, fetch.WithWorkers(4), fetch.WithTokenlessBudget(1))
	m.f.Poll()
	natstest.Eventually(t, 10*time.Second, "one poll made, the others waiting for the budget", func() bool {
		return len(m.api.log()) == 1 && m.queued("poll") == len(m.corps)-1
	})
	cold := m.corps[len(m.corps)-1]
	m.message(cold)
	require.NoError(t, <-m.callback(cold))
	calls := m.api.log()
	require.Len(t, calls, 2, "the budget allows one token-less call a minute: the polls still wait")
	assert.False(t, calls[0].withToken)
	assert.Equal(t, cold, calls[1].corp)
	assert.True(t, calls[1].withToken, "a callback's call with a token needs no budget")
}

// TestScheduler_Spread: Run's poller polls every corp once per interval,
// one at a time spread over the interval rather than all at once, and a
// poll that finds nothing writes no lease.
func TestScheduler_Spread(t *testing.T) {
	const interval = 2 * time.Second
	m := newManyCorps(t, 7, fetch.WithPollInterval(interval))
	natstest.Eventually(t, 3*interval, "a round of polls", func() bool { return len(m.api.log()) >= len(m.corps) })
	round := m.api.log()[:len(m.corps)]
	seen := map[string]bool{}
	for _, c := range round {
		assert.False(t, seen[c.corp], "%s polled twice in a round", c.corp)
		seen[c.corp] = true
		assert.False(t, c.withToken)
	}
	assert.Len(t, seen, len(m.corps))
	span := round[len(round)-1].at.Sub(round[0].at)
	assert.GreaterOrEqual(t, span, interval/2, "polls spread over the interval, not at once")

	kv, err := m.js.KeyValue(natstest.Context(t), fetch.LeaseBucket)
	require.NoError(t, err)
	st, err := kv.Status(natstest.Context(t))
	require.NoError(t, err)
	assert.Zero(t, st.Values(), "no lease was written for polls that found nothing")

	// A poll that finds a message publishes it, under a lease.
	m.message(corpID)
	natstest.WaitFor(t, 3*interval, func() error {
		st, err := kv.Status(natstest.Context(t))
		if err != nil {
			return err
		}
		if st.Values() == 0 {
			return errors.New("no lease yet")
		}
		return nil
	})
	natstest.WaitFor(t, 3*interval, func() error {
		st, err := m.js.Stream(natstest.Context(t), publish.StreamName)
		if err != nil {
			return err
		}
		info, err := st.Info(natstest.Context(t))
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 {
			return fmt.Errorf("%d events", info.State.Msgs)
		}
		return nil
	})
}
