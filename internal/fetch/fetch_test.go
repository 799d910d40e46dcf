package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// TestFetch_GroundTruth: thousands of hits over many pages and callbacks
// reach the stream exactly as the simulator recorded them.
func TestFetch_GroundTruth(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r := e.startReceiver(nil, fetch.WithPageSize(200))
	for range 4 {
		_, err := e.sim.GenerateMessages(corpID, 1500)
		require.NoError(t, err)
		e.callback(r, 1)
	}
	n := e.requireExactlyTruth()
	assert.Zero(t, r.duplicates(), "no page was fetched twice")
	t.Logf("%d hits, %d get_hit_msg_list calls", n, e.sim.Requests("get_hit_msg_list"))
	assert.Greater(t, n, 2000)

	cur, err := r.f.Cursor(natstest.Context(t), appName, corpID)
	require.NoError(t, err)
	assert.NotEmpty(t, cur.Cursor)
	assert.Greater(t, cur.Pages, int64(8))
	assert.Equal(t, int64(n), cur.Events)

	// A callback with nothing new publishes nothing and keeps the cursor.
	e.callback(r, 1)
	e.requireExactlyTruth()
}

// TestFetch_Faults: system busy, 5xx, hangs, and hit tokens that expire
// early; the client retries, the fetcher carries on token-less, and the
// stream ends up exactly right.
func TestFetch_Faults(t *testing.T) {
	e := newEnv(t, wecomsim.Options{TokenlessLimit: 1000})
	r := e.startReceiver(nil, fetch.WithPageSize(100))
	require.NoError(t, e.sim.SetFaults(
		wecomsim.Fault{Kind: wecomsim.FaultErrcode, API: "get_hit_msg_list", Errcode: -1, Rate: 0.2},
		wecomsim.Fault{Kind: wecomsim.FaultHTTPError, API: "get_hit_msg_list", Status: 502, Rate: 0.1},
		wecomsim.Fault{Kind: wecomsim.FaultHang, API: "get_hit_msg_list", Count: 2, Delay: 10 * time.Second},
		wecomsim.Fault{Kind: wecomsim.FaultExpireHitToken, API: "get_hit_msg_list", Count: 3},
		wecomsim.Fault{Kind: wecomsim.FaultExpireAccessToken, API: "get_hit_msg_list", Count: 2},
	))
	for range 3 {
		_, err := e.sim.GenerateMessages(corpID, 800)
		require.NoError(t, err)
		e.callback(r, 10)
	}
	e.requireExactlyTruth()
	assert.Zero(t, r.duplicates(), "failures happen before a page is published, so none is published twice")
}

// TestFetch_PollWithoutCallbacks: every callback lost; the token-less poll
// alone brings every hit, within the token-less budget.
func TestFetch_PollWithoutCallbacks(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r := e.startReceiver(nil, fetch.WithPageSize(500), fetch.WithTokenlessPerMinute(8))
	_, err := e.sim.GenerateMessages(corpID, 2000)
	require.NoError(t, err)
	natstest.WaitFor(t, 30*time.Second, func() error {
		r.f.Poll()
		got, _ := e.events()
		if want := len(e.truth()); len(got) < want {
			return fmt.Errorf("%d of %d", len(got), want)
		}
		return nil
	})
	e.requireExactlyTruth()
	got, _ := e.events()
	for _, ev := range got {
		require.Equal(t, wecomhit.SourcePoll, ev.Source)
		require.False(t, ev.UsedHitToken)
	}
}

// TestFetch_PollInterval: with a PollInterval, Run polls on its own; zero
// (the default, as in the configuration) is no polling and a negative
// interval is refused.
func TestFetch_PollInterval(t *testing.T) {
	t.Run("ErrNegative", func(t *testing.T) {
		_, err := fetch.New(nil, nil, nopPublisher{}, fetch.WithPollInterval(-1))
		require.ErrorIs(t, err, fetch.ErrInvalidOption)
	})
	t.Run("OK", func(t *testing.T) {
		e := newEnv(t, wecomsim.Options{})
		e.startReceiver(nil, fetch.WithPageSize(500), fetch.WithPollInterval(20*time.Millisecond))
		_, err := e.sim.GenerateMessages(corpID, 50)
		require.NoError(t, err)
		natstest.WaitFor(t, 30*time.Second, func() error {
			got, _ := e.events()
			if want := len(e.truth()); len(got) < want {
				return fmt.Errorf("%d of %d", len(got), want)
			}
			return nil
		})
		e.requireExactlyTruth()
	})
}

// TestFetch_TwoReceivers: two replicas on one NATS server take callbacks at
// once; each hit is published once and the cursor only ever moves forward.
func TestFetch_TwoReceivers(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r1 := e.startReceiver(nil, fetch.WithPageSize(100))
	r2 := e.startReceiver(nil, fetch.WithPageSize(100))

	kv, err := e.js.KeyValue(natstest.Context(t), fetch.CursorBucket)
	require.NoError(t, err)
	w, err := kv.Watch(natstest.Context(t), appName+"."+corpID, jetstream.UpdatesOnly())
	require.NoError(t, err)
	defer w.Stop()
	var (
		mu      sync.Mutex
		history []wecomhit.Cursor
	)
	go func() {
		for entry := range w.Updates() {
			if entry == nil {
				continue
			}
			var c wecomhit.Cursor
			if jsonErr := jsonUnmarshal(entry.Value(), &c); jsonErr == nil {
				mu.Lock()
				history = append(history, c)
				mu.Unlock()
			}
		}
	}()

	for round := range 4 {
		_, err := e.sim.GenerateMessages(corpID, 600)
		require.NoError(t, err)
		var wg sync.WaitGroup
		for _, r := range []*receiver{r1, r2, r1, r2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.callback(r, 3)
			}()
		}
		wg.Wait()
		t.Logf("round %d done", round)
	}
	e.requireExactlyTruth()
	assert.Zero(t, r1.duplicates()+r2.duplicates(), "the lease keeps the replicas from fetching the same page")

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, history)
	seen := map[string]bool{}
	for i, c := range history {
		assert.False(t, seen[c.Cursor], "cursor %d repeats an earlier one: it moved backwards", i)
		seen[c.Cursor] = true
		if i > 0 {
			assert.Equal(t, history[i-1].Pages+1, c.Pages, "each move builds on the previous one")
		}
	}
}

// TestFetch_HandleIgnoresOtherKinds and rejects unknown apps and corps.
func TestFetch_Handle(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r := e.startReceiver(nil)
	ctx := natstest.Context(t)
	assert.NoError(t, r.f.Handle(ctx, &wecomhit.Callback{App: appName, Kind: wecomhit.KindMsgAuditNotify}))
	err := r.f.Handle(ctx, &wecomhit.Callback{App: "other", Kind: wecomhit.KindHitKeyword, CorpID: corpID})
	assert.Error(t, err)
	err = r.f.Handle(ctx, &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: "wwNotOurs"})
	assert.Error(t, err)
	assert.Zero(t, e.sim.Requests("get_hit_msg_list"))

	r.stop()
	err = r.f.Handle(ctx, &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID, Token: "t"})
	assert.True(t, err != nil && !errors.Is(err, context.Canceled), "a stopped fetcher refuses work: %v", err)
}

// TestFetch_LeaseRenewed: a fetch that outlasts its lease TTL keeps the
// lease by renewing it, so the other replica never fetches alongside, and
// releases it at the end.
func TestFetch_LeaseRenewed(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	slow := &countingPublisher{delay: 400 * time.Millisecond, inner: e.publisher()}
	r1 := e.startReceiver(slow, fetch.WithPageSize(100), fetch.WithLeaseTTL(time.Second))
	r2 := e.startReceiver(nil, fetch.WithPageSize(100), fetch.WithLeaseTTL(time.Second))
	_, err := e.sim.GenerateMessages(corpID, 1200) // about 7 pages: well past the TTL
	require.NoError(t, err)

	done := make(chan struct{})
	go func() {
		defer close(done)
		e.callback(r1, 1)
	}()
	natstest.WaitFor(t, 5*time.Second, func() error {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		if slow.pages == 0 {
			return errors.New("r1 has not started")
		}
		return nil
	})
	// r2's poll finds the lease held all along, renewals included.
	for range 8 {
		r2.f.Poll()
		time.Sleep(250 * time.Millisecond) // spread the polls over the fetch
	}
	<-done
	assert.Zero(t, r2.duplicates())
	e.requireExactlyTruth()
	slow.mu.Lock()
	assert.GreaterOrEqual(t, slow.pages, 5)
	assert.Equal(t, slow.pages, e.sim.Requests("get_hit_msg_list"), "every call was r1's: r2 never fetched")
	slow.mu.Unlock()

	kv, err := e.js.KeyValue(natstest.Context(t), fetch.LeaseBucket)
	require.NoError(t, err)
	_, err = kv.Get(natstest.Context(t), appName+"."+corpID)
	assert.ErrorIs(t, err, jetstream.ErrKeyNotFound, "released at the end")
}

// deadTokenAPI answers 45009 to calls with a token, as WeCom does once it has
// retired the token early and counts the call as token-less, and an empty
// page to calls without one.
type deadTokenAPI struct {
	mu     sync.Mutex
	tokens []string
	live   bool // accept tokens instead
}

func (a *deadTokenAPI) GetHitMsgList(_ context.Context, _ string, req wecom.HitMsgListRequest) (*wecom.HitMsgList, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens = append(a.tokens, req.Token)
	if req.Token != "" && !a.live {
		return nil, &wecom.APIError{API: "get_hit_msg_list", Code: 45009, Msg: "api freq out of limit"}
	}
	return &wecom.HitMsgList{}, nil
}

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestFetch_HandleBurstOneToken: many callbacks carrying one token (a burst,
// or a replay of dead letters) at once all succeed: storing a token that is
// already stored is no compare-and-set to lose.
func TestFetch_HandleBurstOneToken(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r := e.startReceiver(nil)
	tok, err := e.sim.IssueHitToken(corpID)
	require.NoError(t, err)
	now := time.Now()
	errs := make(chan error, 64)
	for range cap(errs) {
		go func() {
			errs <- r.f.Handle(natstest.Context(t), &wecomhit.Callback{App: appName, Kind: wecomhit.KindHitKeyword,
				CorpID: corpID, SuiteID: suiteID, Token: tok, ReceivedAt: now})
		}()
	}
	for range cap(errs) {
		assert.NoError(t, <-errs)
	}
}
