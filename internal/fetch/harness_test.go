package fetch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
	"github.com/wecomhit/wecomhit/internal/wecomtest"
)

const (
	suiteID = "wwArchiveSuite01"
	corpID  = "wwCorpABC123"
	appName = "archive"
	prefix  = "wecom"
)

// env is one simulated WeCom and one NATS server, shared by the receivers
// (fetchers) a test starts.
type env struct {
	t   *testing.T
	sim *wecomsim.Sim
	srv interface{ ClientURL() string }
	js  jetstream.JetStream
	app wecom.App
}

func newEnv(t *testing.T, simOpts wecomsim.Options) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	simOpts.Seed = 7
	simOpts.MessageRate = -1 // traffic only when the test asks
	simOpts.Archive = wecomsim.Archive{
		SuiteID: suiteID, SuiteSecret: "suite-secret",
		Corps: []wecomsim.Corp{{CorpID: corpID, PermanentCode: "perm-code"}},
	}
	sim, err := wecomsim.New(simOpts, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, sim.Start(context.Background(), "127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Close(ctx)
	})
	e := &env{t: t, sim: sim, srv: srv, js: js, app: wecom.App{
		Name: appName, Mode: wecom.ModeArchive, APIBaseURL: sim.URL(),
		SuiteID: suiteID, SuiteSecret: "suite-secret",
		Corps: []wecom.Corp{{CorpID: corpID, PermanentCode: "perm-code"}},
	}}
	ctx := natstest.Context(t)
	c := e.client(js)
	stores, err := wecom.OpenStores(ctx, js, wecom.StoreConfig{})
	require.NoError(t, err)
	require.NoError(t, stores.Tickets.Put(ctx, suiteID, sim.SuiteTicket(), time.Now(), sim.Now()))
	// Rules that the simulated traffic hits often: key behaviours and words.
	wecomtest.CreateDemoRules(ctx, t, c, corpID)
	return e
}

// client is a WeCom client on js, as a receiver replica has.
func (e *env) client(js jetstream.JetStream) *wecom.Client {
	e.t.Helper()
	stores, err := wecom.OpenStores(natstest.Context(e.t), js, wecom.StoreConfig{})
	require.NoError(e.t, err)
	c, err := wecom.New(e.app, stores, wecom.WithCallTimeout(2*time.Second), wecom.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	require.NoError(e.t, err)
	return c
}

// publisher is a publisher on a NATS connection of its own, its streams
// set up.
func (e *env) publisher() *publish.Publisher {
	e.t.Helper()
	_, js := natstest.ConnectURL(e.t, e.srv.ClientURL())
	return newPublisher(e.t, js)
}

func newPublisher(t testing.TB, js jetstream.JetStream) *publish.Publisher {
	t.Helper()
	p, err := publish.New(js, prefix)
	require.NoError(t, err)
	require.NoError(t, p.Setup(natstest.Context(t)))
	return p
}

// receiver is one fetcher with its own NATS connection, client and publisher.
type receiver struct {
	f      *fetch.Fetcher
	pub    *countingPublisher
	cancel context.CancelFunc
	done   chan struct{}
}

// duplicates is how many events this receiver published that the stream
// already had: a page fetched twice.
func (r *receiver) duplicates() int {
	r.pub.mu.Lock()
	defer r.pub.mu.Unlock()
	return r.pub.duplicates
}

func (e *env) startReceiver(pub fetch.Publisher, opts ...fetch.Option) *receiver {
	e.t.Helper()
	_, js := natstest.ConnectURL(e.t, e.srv.ClientURL())
	if pub == nil {
		pub = newPublisher(e.t, js)
	}
	cp, ok := pub.(*countingPublisher)
	if !ok {
		cp = &countingPublisher{inner: pub}
	}
	// No polls and a generous per-corp budget unless the test says.
	opts = append([]fetch.Option{fetch.WithPollInterval(0), fetch.WithTokenlessPerMinute(1000)}, opts...)
	f, err := fetch.New(js, []fetch.App{{Name: appName, API: e.client(js), Corps: []string{corpID}}}, cp, opts...)
	require.NoError(e.t, err)
	require.NoError(e.t, f.Setup(natstest.Context(e.t)))
	ctx, cancel := context.WithCancel(context.Background())
	r := &receiver{f: f, pub: cp, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = f.Run(ctx)
	}()
	natstest.WaitFor(e.t, 5*time.Second, func() error {
		if !f.Running() {
			return fmt.Errorf("not running")
		}
		return nil
	})
	e.t.Cleanup(r.stop)
	return r
}

func (r *receiver) stop() {
	r.cancel()
	<-r.done
}

// callback hands the fetcher a hit_keyword callback with a fresh token,
// retrying as intake would until it succeeds.
func (e *env) callback(r *receiver, attempts int) {
	e.t.Helper()
	tok, err := e.sim.IssueHitToken(corpID)
	require.NoError(e.t, err)
	cb := &wecomhit.Callback{ID: tok, App: appName, Kind: wecomhit.KindHitKeyword, CorpID: corpID,
		SuiteID: suiteID, Token: tok, ReceivedAt: time.Now()}
	var last error
	for range attempts {
		if last = r.f.Handle(natstest.Context(e.t), cb); last == nil {
			return
		}
	}
	require.NoError(e.t, last, "fetch did not succeed in %d attempts", attempts)
}

// hitKey identifies a hit.
type hitKey struct{ MsgID, RuleID string }

// truth is the simulator's ground truth for the corp.
func (e *env) truth() map[hitKey]wecomsim.Hit {
	out := map[hitKey]wecomsim.Hit{}
	for _, h := range e.sim.Hits() {
		if h.CorpID == corpID {
			out[hitKey{h.MsgID, h.RuleID}] = h
		}
	}
	return out
}

// events reads every event in WECOM_HITS, counting repeats.
func (e *env) events() (map[hitKey]wecomhit.HitEvent, map[hitKey]int) {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	s, err := e.js.Stream(ctx, publish.StreamName)
	require.NoError(e.t, err)
	info, err := s.Info(ctx)
	require.NoError(e.t, err)
	got, counts := map[hitKey]wecomhit.HitEvent{}, map[hitKey]int{}
	if info.State.Msgs == 0 {
		return got, counts
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{prefix + ".hit.>"}})
	require.NoError(e.t, err)
	batch, err := cons.FetchNoWait(int(info.State.Msgs))
	require.NoError(e.t, err)
	for m := range batch.Messages() {
		var ev wecomhit.HitEvent
		require.NoError(e.t, json.Unmarshal(m.Data(), &ev))
		k := hitKey{ev.MsgID, ev.RuleID}
		got[k] = ev
		counts[k]++
	}
	require.NoError(e.t, batch.Error())
	return got, counts
}

// requireExactlyTruth checks that the stream holds each ground-truth hit
// exactly once, with the simulator's fields, and nothing else.
func (e *env) requireExactlyTruth() int {
	e.t.Helper()
	truth := e.truth()
	require.NotEmpty(e.t, truth)
	var got map[hitKey]wecomhit.HitEvent
	var counts map[hitKey]int
	natstest.WaitFor(e.t, 10*time.Second, func() error {
		got, counts = e.events()
		if len(got) != len(truth) {
			return fmt.Errorf("%d distinct events, want %d", len(got), len(truth))
		}
		return nil
	})
	var missing, extra, repeated []string
	for k := range truth {
		if _, ok := got[k]; !ok {
			missing = append(missing, k.MsgID+"/"+k.RuleID)
		}
	}
	for k, n := range counts {
		if _, ok := truth[k]; !ok {
			extra = append(extra, k.MsgID+"/"+k.RuleID)
		}
		if n != 1 {
			repeated = append(repeated, fmt.Sprintf("%s/%s×%d", k.MsgID, k.RuleID, n))
		}
	}
	sort.Strings(missing)
	require.Empty(e.t, missing, "hits never published")
	require.Empty(e.t, extra, "events WeCom never reported")
	require.Empty(e.t, repeated, "events published more than once")
	for k, h := range truth {
		ev := got[k]
		require.Equal(e.t, h.HasHitKeyword, ev.HasHitKeyword, k)
		require.Len(e.t, ev.Semantics, len(h.SemanticsList), k)
		for i, code := range h.SemanticsList {
			require.Equal(e.t, code, ev.Semantics[i].Code)
			require.Equal(e.t, wecomhit.SemanticName(code), ev.Semantics[i].Name)
		}
		require.NotNil(e.t, ev.Message, k)
		require.Equal(e.t, h.Message.SendTime, ev.Message.SendTime)
		require.Equal(e.t, h.Message.MsgType, ev.Message.MsgType)
		require.Equal(e.t, wecomhit.MsgTypeName(h.Message.MsgType), ev.Message.MsgTypeName)
		require.Equal(e.t, h.Message.Sender.ID, ev.Message.Sender.ID)
		require.Equal(e.t, h.Message.ChatID, ev.Message.ChatID)
		require.Len(e.t, ev.Message.Receivers, len(h.Message.Receivers))
		require.Equal(e.t, corpID, ev.CorpID)
		require.Equal(e.t, appName, ev.App)
	}
	return len(truth)
}

// countingPublisher wraps a Publisher to count pages and duplicates, and
// to fail on demand.
type countingPublisher struct {
	inner      fetch.Publisher
	mu         sync.Mutex
	pages      int
	duplicates int
	// delay, when set, slows every page, as a slow NATS would.
	delay time.Duration
	// failAt, when positive, makes the failAt-th page publish only half its
	// messages and then fail, as a process killed mid-page would.
	failAt int
}

func (p *countingPublisher) Publish(ctx context.Context, page *wecomhit.HitPage) (wecomhit.PageResult, error) {
	p.mu.Lock()
	p.pages++
	n := p.pages
	fail := p.failAt > 0 && n == p.failAt
	p.mu.Unlock()
	if fail {
		half := *page
		half.Messages = page.Messages[:len(page.Messages)/2]
		if _, err := p.inner.Publish(ctx, &half); err != nil {
			return wecomhit.PageResult{}, err
		}
		return wecomhit.PageResult{}, fmt.Errorf("killed half-way through page %d", n)
	}
	if p.delay > 0 {
		select {
		case <-time.After(p.delay):
		case <-ctx.Done():
			return wecomhit.PageResult{}, ctx.Err()
		}
	}
	res, err := p.inner.Publish(ctx, page)
	p.mu.Lock()
	p.duplicates += res.Duplicates
	p.mu.Unlock()
	return res, err
}
