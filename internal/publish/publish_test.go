package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

const prefix = "wecom"

// schema compiles docs/hit-event.schema.json, the published contract.
func schema(t testing.TB) *hittest.Contract { return hittest.New(t) }

type names map[string]string

func (n names) RuleName(corpID, ruleID string) (string, bool) {
	v, ok := n[corpID+"/"+ruleID]
	return v, ok
}

func setup(t *testing.T) (*nats.Conn, jetstream.JetStream, *publish.Publisher) {
	t.Helper()
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	p, err := publish.New(js, prefix, publish.WithRuleNames(names{"wwCorp/r1": "联系方式"}), publish.WithWindow(3))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, p.Setup(ctx))
	require.NoError(t, p.Setup(ctx), "idempotent")
	require.NoError(t, p.Ready(ctx))
	return nc, js, p
}

func page() []wecomhit.HitMessage {
	return []wecomhit.HitMessage{
		{MsgID: "m1", HitRules: []wecomhit.HitRule{
			{RuleID: "r1", SemanticsList: []int{2, 99}},
			{RuleID: "r2", HasHitKeyword: true},
			{RuleID: "r1", SemanticsList: []int{2}}, // a repeat: dropped
		}, Detail: &wecomhit.MsgDetail{
			Sender:       wecomhit.Party{Type: 1, ID: "woEmp"},
			ReceiverList: []wecomhit.Party{{Type: 2, ID: "wmCust"}, {Type: 7, ID: "x"}},
			SendTime:     1717000000, MsgType: 1,
			ServiceEncryptInfo: &wecomhit.ServiceEncryptInfo{EncryptedSecretKey: "k", PublicKeyVer: 2},
		}},
		{MsgID: "m2", HitRules: []wecomhit.HitRule{{RuleID: "rule.with*odd> chars", SemanticsList: []int{1}}},
			Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 2, ID: "wmCust"}, ChatID: "wrGroup", MsgType: 13, SendTime: 1717000001}},
		{MsgID: "m3", HitRules: []wecomhit.HitRule{{RuleID: "r1", SemanticsList: []int{10}}}}, // no detail
	}
}

// collect subscribes like an ordinary consumer and gathers n messages.
// hitPage is the page Publish takes: msgs, fetched as o says.
func hitPage(o publish.Origin, msgs []wecomhit.HitMessage) *wecomhit.HitPage {
	return &wecomhit.HitPage{App: o.App, CorpID: o.CorpID, Source: o.Source,
		UsedHitToken: o.UsedHitToken, FetchedAt: o.FetchedAt, Messages: msgs}
}

func collect(t *testing.T, nc *nats.Conn, subject string) func(n int) []*nats.Msg {
	t.Helper()
	var (
		mu   sync.Mutex
		msgs []*nats.Msg
	)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		msgs = append(msgs, m)
		mu.Unlock()
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func(n int) []*nats.Msg {
		natstest.WaitFor(t, 5*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(msgs) < n {
				return fmt.Errorf("got %d of %d", len(msgs), n)
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		return append([]*nats.Msg(nil), msgs...)
	}
}

func TestPublisher_Publish(t *testing.T) {
	nc, _, p := setup(t)
	got := collect(t, nc, prefix+".hit.>")
	fetched := time.Date(2026, 11, 21, 5, 40, 0, 123456789, time.UTC)
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: fetched}

	res, err := p.Publish(context.Background(), hitPage(o, page()))
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Published: 4}, res)

	msgs := got(4)
	sch := schema(t)
	bySubject := map[string]wecomhit.HitEvent{}
	for _, m := range msgs {
		require.NoError(t, sch.Check(m.Data), "event must keep the contract of docs/events.md: %s", m.Data)
		var ev wecomhit.HitEvent
		require.NoError(t, json.Unmarshal(m.Data, &ev))
		assert.Equal(t, publish.MsgID(ev.CorpID, ev.MsgID, ev.RuleID), m.Header.Get("Nats-Msg-Id"))
		assert.Equal(t, "application/json", m.Header.Get("Content-Type"))
		assert.Equal(t, ev.CorpID, m.Header.Get(publish.HeaderCorpID))
		assert.Equal(t, ev.MsgID, m.Header.Get(publish.HeaderMsgID))
		assert.Equal(t, ev.RuleID, m.Header.Get(publish.HeaderRuleID))
		bySubject[m.Subject+" "+ev.MsgID] = ev
	}
	keys := make([]string, 0, len(bySubject))
	for k := range bySubject {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	assert.Equal(t, []string{
		"wecom.hit.wwCorp.r1 m1", "wecom.hit.wwCorp.r1 m3", "wecom.hit.wwCorp.r2 m1",
		"wecom.hit.wwCorp.rule_with_odd__chars m2",
	}, keys)

	e := bySubject["wecom.hit.wwCorp.r1 m1"]
	assert.Equal(t, "联系方式", e.RuleName)
	assert.Equal(t, []wecomhit.Semantic{{Code: 2, Name: "mobile"}, {Code: 99, Name: "unknown"}}, e.Semantics)
	require.Len(t, e.Rules, 2)
	assert.Equal(t, "r2", e.Rules[1].RuleID)
	assert.True(t, e.Rules[1].HasHitKeyword)
	require.NotNil(t, e.Message)
	assert.Equal(t, "text", e.Message.MsgTypeName)
	assert.Equal(t, wecomhit.NamedParty{Type: 1, TypeName: "employee", ID: "woEmp"}, e.Message.Sender)
	assert.Equal(t, []wecomhit.NamedParty{{Type: 2, TypeName: "external_contact", ID: "wmCust"}, {Type: 7, TypeName: "unknown", ID: "x"}}, e.Message.Receivers)
	assert.Equal(t, &wecomhit.EncryptInfo{EncryptedSecretKey: "k", PublicKeyVer: 2}, e.Message.ServiceEncryptInfo)
	assert.Equal(t, fetched.Truncate(time.Millisecond), e.FetchedAt)
	assert.Equal(t, "callback", e.Source)

	odd := bySubject["wecom.hit.wwCorp.rule_with_odd__chars m2"]
	assert.Equal(t, "rule.with*odd> chars", odd.RuleID, "the payload keeps the exact id")
	assert.Equal(t, "red_packet", odd.Message.MsgTypeName)
	assert.Equal(t, "wrGroup", odd.Message.ChatID)
	assert.Nil(t, bySubject["wecom.hit.wwCorp.r1 m3"].Message)

	// The same page again (a re-fetch after a crash): all duplicates.
	res, err = p.Publish(context.Background(), hitPage(o, page()))
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Duplicates: 4}, res)

	// Events the page's Skip lists (a backfill's) are not sent at all.
	skip := hitPage(o, page())
	skip.Skip = map[string]bool{
		publish.MsgID("wwCorp", "m1", "r1"): true,
		publish.MsgID("wwCorp", "m1", "r2"): true,
	}
	res, err = p.Publish(context.Background(), skip)
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Skipped: 2, Duplicates: 2}, res)
}

func TestPublisher_DeadLetters(t *testing.T) {
	nc, js, p := setup(t)
	got := collect(t, nc, prefix+".dlq.>")
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourcePoll, FetchedAt: time.Now()}
	bad := []wecomhit.HitMessage{
		{MsgID: "", HitRules: []wecomhit.HitRule{{RuleID: "r1"}}},
		{MsgID: "m-no-rules"},
		{MsgID: "m\r\nX-Evil: 1", HitRules: []wecomhit.HitRule{{RuleID: "r1"}}},
		{MsgID: "m-empty-rule", HitRules: []wecomhit.HitRule{{RuleID: ""}}},
		{MsgID: "m-long-rule", HitRules: []wecomhit.HitRule{{RuleID: strings.Repeat("r", 300)}}},
		{MsgID: "m-ok", HitRules: []wecomhit.HitRule{{RuleID: "r1", HasHitKeyword: true}}},
	}
	res, err := p.Publish(context.Background(), hitPage(o, bad))
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Published: 1, DeadLettered: 5}, res)

	msgs := got(5)
	reasons := map[string]bool{}
	for _, m := range msgs {
		assert.Equal(t, "wecom.dlq.hit.wwCorp", m.Subject)
		var dl wecomhit.DeadLetter
		require.NoError(t, json.Unmarshal(m.Data, &dl))
		assert.Equal(t, wecomhit.DeadLetterSchema, dl.Schema)
		assert.Equal(t, wecomhit.DeadLetterHit, dl.Kind)
		assert.Equal(t, "archive", dl.App)
		assert.Equal(t, "wwCorp", dl.CorpID)
		assert.NotEmpty(t, dl.Error)
		var rec wecomhit.HitMessage
		require.NoError(t, json.Unmarshal(dl.Record, &rec), "the record is the hit message")
		reasons[dl.Reason] = true
	}
	assert.Equal(t, map[string]bool{
		"normalize:empty_msgid": true, "normalize:no_hit_rules": true, "normalize:msgid_control_chars": true,
		"normalize:empty_rule_id": true, "normalize:rule_id_too_long": true,
	}, reasons, "each names its own stable reason")

	// Re-fetching the same bad records stores nothing new.
	res, err = p.Publish(context.Background(), hitPage(o, bad))
	require.NoError(t, err)
	assert.Equal(t, publish.Result{Duplicates: 1, DeadLettered: 5}, res)
	msgCount := func(name string) uint64 {
		s, err := js.Stream(context.Background(), name)
		require.NoError(t, err)
		info, err := s.Info(context.Background())
		require.NoError(t, err)
		return info.State.Msgs
	}
	assert.Equal(t, uint64(1), msgCount(publish.StreamName), "the hit stream holds events only")
	assert.Equal(t, uint64(5), msgCount(deadletter.StreamName), "5 dead letters, each once")
}

// TestPublisher_SetupMovesDeadLetters: a WECOM_HITS stream set up by an
// earlier version, which also took <prefix>.dlq.> and <prefix>.corp.>,
// gives those subjects up to the dead-letter and corp event streams; the
// corp event it stored stays readable there until it ages out.
func TestPublisher_SetupMovesDeadLetters(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: publish.StreamName, Subjects: []string{prefix + ".hit.>", prefix + ".corp.>", prefix + ".dlq.>"},
	})
	require.NoError(t, err)
	old := publish.CorpSubject(prefix, "wwOld", wecomhit.CorpCancelled)
	_, err = js.Publish(ctx, old, []byte(`{"schema":"wecom.corp.v1"}`))
	require.NoError(t, err)
	p, err := publish.New(js, prefix)
	require.NoError(t, err)
	require.NoError(t, p.Setup(ctx))
	require.NoError(t, p.SetupCorp(ctx))
	s, err := js.Stream(ctx, publish.StreamName)
	require.NoError(t, err)
	assert.Equal(t, []string{prefix + ".hit.>"}, s.CachedInfo().Config.Subjects)
	m, err := s.GetLastMsgForSubject(ctx, old)
	require.NoError(t, err, "the old corp event is still there")
	assert.Equal(t, old, m.Subject)
	d, err := js.Stream(ctx, deadletter.StreamName)
	require.NoError(t, err)
	assert.Equal(t, []string{prefix + ".dlq.>"}, d.CachedInfo().Config.Subjects)
	c, err := js.Stream(ctx, publish.CorpStreamName)
	require.NoError(t, err)
	assert.Equal(t, []string{prefix + ".corp.>"}, c.CachedInfo().Config.Subjects)
	require.NoError(t, p.PublishCorp(ctx, wecomhit.CorpLifecycleEvent{Type: wecomhit.CorpAuthorized, App: "archive", CorpID: "wwNew"}, time.Now()))
	_, err = c.GetLastMsgForSubject(ctx, publish.CorpSubject(prefix, "wwNew", wecomhit.CorpAuthorized))
	require.NoError(t, err, "new corp events go to the corp event stream")
}

// TestPublisher_PublishFailsWithoutAcks: when JetStream stops acking half-way,
// Publish returns an error rather than reporting the page done, and publishing
// the page again once NATS is back stores every event exactly once.
func TestPublisher_PublishFailsWithoutAcks(t *testing.T) {
	store := t.TempDir()
	srv := natstest.RunServer(t, natstest.WithStoreDir(store))
	port := natstest.Port(t, srv)
	_, js := natstest.Connect(t, srv)
	p, err := publish.New(js, prefix, publish.WithWindow(2))
	require.NoError(t, err)
	require.NoError(t, p.Setup(context.Background()))
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}

	first := page()[:1]
	res, err := p.Publish(context.Background(), hitPage(o, first))
	require.NoError(t, err)
	require.Equal(t, 2, res.Published)

	srv.Shutdown()
	srv.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = p.Publish(ctx, hitPage(o, page()))
	require.Error(t, err, "no acks: the page is not done")

	natstest.RunServer(t, natstest.WithStoreDir(store), natstest.WithPort(port))
	natstest.WaitFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return p.Ready(ctx)
	})
	res, err = p.Publish(context.Background(), hitPage(o, page()))
	require.NoError(t, err)
	assert.Equal(t, 4, res.Published+res.Duplicates)
	s, err := js.Stream(context.Background(), publish.StreamName)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(4), info.State.Msgs, "each event once")
}

func TestToken(t *testing.T) {
	for in, want := range map[string]string{
		"":          "_",
		"wwCorp":    "wwCorp",
		"a.b":       "a_b",
		"a*b>c":     "a_b_c",
		"a b\tc\n":  "a_b_c_",
		"规则\u3000一": "规则_一",
		"ok-id_123": "ok-id_123",
		"\x00\x7f":  "__",
	} {
		assert.Equal(t, want, publish.Token(in), "%q", in)
	}
	assert.Equal(t, "wecom.hit.a_b._", publish.HitSubject("wecom", "a.b", ""))
}

func TestNormalize_NoNames(t *testing.T) {
	evs, err := publish.Normalize(publish.Origin{App: "a", CorpID: "c", Source: "poll"}, &page()[0], nil)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, "", evs[0].RuleName)
	assert.Equal(t, wecomhit.HitSchema, evs[0].Schema)
}

func BenchmarkPublish(b *testing.B) {
	_, js := natstest.Connect(b, natstest.RunServer(b))
	p, err := publish.New(js, prefix)
	require.NoError(b, err)
	require.NoError(b, p.Setup(context.Background()))
	msgs := make([]wecomhit.HitMessage, 1000)
	o := publish.Origin{App: "a", CorpID: "c", Source: "callback", FetchedAt: time.Now()}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		for i := range msgs {
			msgs[i] = wecomhit.HitMessage{MsgID: fmt.Sprintf("m%d-%d", n, i), HitRules: []wecomhit.HitRule{{RuleID: "r1", SemanticsList: []int{2}}},
				Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "wo"}, ReceiverList: []wecomhit.Party{{Type: 2, ID: "wm"}}, MsgType: 1, SendTime: 1}}
		}
		if _, err := p.Publish(context.Background(), hitPage(o, msgs)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(msgs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// resolver learns names only when Resolve is called, as rulecache does
// for rules it has not seen.
type resolver struct {
	mu    sync.Mutex
	known map[string]string
	calls [][]string
}

func (r *resolver) RuleName(corpID, ruleID string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.known[corpID+"/"+ruleID]
	return v, ok
}

func (r *resolver) Resolve(_ context.Context, corpID string, ruleIDs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, ruleIDs)
	for _, id := range ruleIDs {
		r.known[corpID+"/"+id] = "name of " + id
	}
}

// TestPublisher_ResolvesNames: a RuleNameResolver is asked once per page
// for the page's rule ids, before the events are built, so even rules it
// has never seen are named.
func TestPublisher_ResolvesNames(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	r := &resolver{known: map[string]string{}}
	p, err := publish.New(js, prefix, publish.WithRuleNames(r))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, p.Setup(ctx))
	got := collect(t, nc, prefix+".hit.>")
	_, err = p.Publish(ctx, hitPage(publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback}, page()))
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"r1", "r2", "rule.with*odd> chars"}}, r.calls, "one call, each rule once, in page order")
	for _, m := range got(4) {
		var ev wecomhit.HitEvent
		require.NoError(t, json.Unmarshal(m.Data, &ev))
		assert.Equal(t, "name of "+ev.RuleID, ev.RuleName)
	}
}
