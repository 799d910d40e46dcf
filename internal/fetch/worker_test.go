package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// TestFetch_KilledMidPage: a publish that dies half-way through a page
// leaves the cursor where it was; the next fetch re-reads that page and
// nothing is lost or doubled. Then the fetcher itself is stopped and
// replaced, several times, while hits keep coming.
func TestFetch_KilledMidPage(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	inner := e.publisher()

	_, err := e.sim.GenerateMessages(corpID, 1500)
	require.NoError(t, err)
	pub := &countingPublisher{inner: inner, failAt: 3}
	r := e.startReceiver(pub, fetch.WithPageSize(100))
	before := e.sim.Requests("get_hit_msg_list")
	tok, err := e.sim.IssueHitToken(corpID)
	require.NoError(t, err)
	cb := &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID, Token: tok, ReceivedAt: time.Now()}
	err = r.f.Handle(natstest.Context(t), cb)
	require.ErrorContains(t, err, "killed half-way through page 3")
	require.NoError(t, r.f.Handle(natstest.Context(t), cb), "the redelivered callback resumes from the unmoved cursor")
	calls := e.sim.Requests("get_hit_msg_list") - before
	pub.mu.Lock()
	pages := pub.pages
	pub.mu.Unlock()
	assert.Equal(t, pages, calls, "every fetched page was published")
	e.requireExactlyTruth()

	for i := range 3 {
		r.stop()
		_, err := e.sim.GenerateMessages(corpID, 500)
		require.NoError(t, err)
		pub = &countingPublisher{inner: inner, failAt: 2 + i}
		r = e.startReceiver(pub, fetch.WithPageSize(50))
		e.callback(r, 3)
	}
	e.requireExactlyTruth()
}

// TestFetch_DeadTokenDropped: a 45009 on a call made with a token means the
// token no longer counts; it is forgotten, so the retry goes out token-less
// under our own budget.
func TestFetch_DeadTokenDropped(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	pub := newPublisher(t, js)
	api := &deadTokenAPI{}
	f, err := fetch.New(js, []fetch.App{{Name: appName, API: api, Corps: []string{corpID}}}, pub, fetch.WithPollInterval(0))
	require.NoError(t, err)
	require.NoError(t, f.Setup(natstest.Context(t)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = f.Run(ctx) }()
	natstest.WaitFor(t, 5*time.Second, func() error {
		if !f.Running() {
			return errors.New("not running")
		}
		return nil
	})
	cb := &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID, Token: "tok-1", ReceivedAt: time.Now()}
	err = f.Handle(natstest.Context(t), cb)
	require.Error(t, err)
	assert.True(t, wecom.IsRateLimited(err), "surfaced as rate-limited: %v", err)
	require.NoError(t, f.Handle(natstest.Context(t), &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID}))
	api.mu.Lock()
	defer api.mu.Unlock()
	assert.Equal(t, []string{"tok-1", ""}, api.tokens, "the retry went out without the dead token")

	// An older callback's token arriving late does not displace a newer one.
	api.tokens, api.live = nil, true
	api.mu.Unlock()
	newer := &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID, Token: "tok-new", EventTime: time.Now().Unix()}
	older := &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID, Token: "tok-old", EventTime: time.Now().Add(-time.Minute).Unix()}
	require.NoError(t, f.Handle(natstest.Context(t), newer))
	require.NoError(t, f.Handle(natstest.Context(t), older))
	api.mu.Lock()
	assert.Equal(t, []string{"tok-new", "tok-new"}, api.tokens, "the late, older token was not used")
}

// TestFetch_SourceIsWhatStartedTheFetch: source names what started the
// fetch and used_hit_token whether a hit token was used, independently: a
// callback whose token came too late still fetches token-less, and a poll
// that finds a live token uses it.
func TestFetch_SourceIsWhatStartedTheFetch(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r := e.startReceiver(nil, fetch.WithPageSize(500))
	type origin struct {
		source string
		token  bool
	}
	// fetchNew generates messages, runs one fetch and returns the origins
	// of the events it published.
	fetchNew := func(run func()) map[origin]int {
		t.Helper()
		before, _ := e.events()
		_, err := e.sim.GenerateMessages(corpID, 100)
		require.NoError(t, err)
		run()
		e.requireExactlyTruth()
		after, _ := e.events()
		got := map[origin]int{}
		for k, ev := range after {
			if _, old := before[k]; !old {
				got[origin{ev.Source, ev.UsedHitToken}]++
			}
		}
		require.NotEmpty(t, got)
		return got
	}

	// A hit_keyword callback whose token is past its life: a callback
	// fetch, token-less.
	stale := fetchNew(func() {
		tok, err := e.sim.IssueHitToken(corpID)
		require.NoError(t, err)
		require.NoError(t, r.f.Handle(natstest.Context(t), &wecomhit.Callback{ID: tok, App: appName, Kind: wecomhit.KindHitKeyword,
			CorpID: corpID, SuiteID: suiteID, Token: tok, ReceivedAt: time.Now().Add(-time.Hour)}))
	})
	assert.Equal(t, []origin{{wecomhit.SourceCallback, false}}, keys(stale))

	// A fresh callback: a callback fetch with its token.
	fresh := fetchNew(func() { e.callback(r, 10) })
	assert.Equal(t, []origin{{wecomhit.SourceCallback, true}}, keys(fresh))

	// A poll while that token lives: a poll, with the token.
	poll := fetchNew(func() {
		natstest.WaitFor(t, 10*time.Second, func() error {
			want := len(e.truth())
			r.f.Poll()
			if got, _ := e.events(); len(got) < want {
				return fmt.Errorf("%d of %d", len(got), want)
			}
			return nil
		})
	})
	assert.Equal(t, []origin{{wecomhit.SourcePoll, true}}, keys(poll))
}
