package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/admin"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/rulecache"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
	"github.com/wecomhit/wecomhit/internal/wecomtest"
)

const (
	suiteID = "wwAdminSuite01"
	corpA   = "wwAdminCorpA"
	corpB   = "wwAdminCorpB"
	prefix  = "wecom"
)

// apiEnv is the API served over HTTP on real parts: NATS, the simulator
// reached by a real WeCom client, a rule cache, a dead-letter stream.
// "archive" serves corpA; "two" serves corpA and corpB, so its corp
// must be named.
type apiEnv struct {
	srv   *httptest.Server
	sim   *wecomsim.Sim
	rules *rulecache.Cache
	dlq   *deadletter.Stream
	dead  *deadLetters
	corps *corpList
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns)
	ctx := natstest.Context(t)
	sim, err := wecomsim.New(wecomsim.Options{Seed: 7, MessageRate: -1, Archive: wecomsim.Archive{
		SuiteID: suiteID, SuiteSecret: "suite-secret",
		Corps: []wecomsim.Corp{{CorpID: corpA, PermanentCode: "perm-a"}, {CorpID: corpB, PermanentCode: "perm-b"}},
	}}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, sim.Start(ctx, "127.0.0.1:0"))
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Close(cctx)
	})
	stores, err := wecom.OpenStores(ctx, js, wecom.StoreConfig{})
	require.NoError(t, err)
	require.NoError(t, stores.Tickets.Put(ctx, suiteID, sim.SuiteTicket(), time.Now(), sim.Now()))
	c, err := wecom.New(wecom.App{
		Name: "archive", Mode: wecom.ModeArchive, APIBaseURL: sim.URL(), SuiteID: suiteID, SuiteSecret: "suite-secret",
		Corps: []wecom.Corp{{CorpID: corpA, PermanentCode: "perm-a"}, {CorpID: corpB, PermanentCode: "perm-b"}},
	}, stores, wecom.WithCallTimeout(2*time.Second), wecom.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	require.NoError(t, err)
	wecomtest.CreateDemoRules(ctx, t, c, corpA)

	dlq, err := deadletter.New(js, prefix)
	require.NoError(t, err)
	require.NoError(t, dlq.Setup(ctx))
	rules, err := rulecache.New(nil)
	require.NoError(t, err)
	e := &apiEnv{sim: sim, dlq: dlq, dead: &deadLetters{s: dlq}, corps: &corpList{}, rules: rules}
	t.Cleanup(e.rules.Close)
	var draining atomic.Bool
	h, err := admin.New(&readiness{}, prometheus.NewRegistry(), admin.WithAPI(testToken, admin.API{
		Status: admin.StatusFunc(func(context.Context) (health.Report, error) {
			return health.Report{Corps: []health.Corp{{App: "archive", CorpID: corpA}}}, nil
		}),
		Apps: admin.AppsFunc(func(app string) (*wecom.Client, bool) {
			return c, app == "archive" || app == "two"
		}),
		Directory:   corps.NewDirectory(map[string][]string{"archive": {corpA}, "two": {corpA, corpB}}, nil),
		RuleNames:   e.rules,
		DeadLetters: e.dead,
		Corps:       e.corps,
		Draining:    draining.Load,
	}))
	require.NoError(t, err)
	e.srv = serve(t, h)
	return e
}

func (e *apiEnv) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	return do(t, e.srv, method, path, testToken, body)
}

// TestAPI_Rules drives the rules endpoints against the simulator, over
// HTTP both ways.
func TestAPI_Rules(t *testing.T) {
	e := newAPIEnv(t)
	listed := func(t *testing.T) []string {
		status, body := e.do(t, "GET", "/api/apps/archive/rules", "")
		require.Equal(t, http.StatusOK, status, body)
		var out struct {
			Rules []struct {
				RuleID string `json:"rule_id"`
			} `json:"rules"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		ids := []string{}
		for _, r := range out.Rules {
			ids = append(ids, r.RuleID)
		}
		return ids
	}
	before := listed(t)
	require.Len(t, before, len(wecomsim.DemoRules()))

	var id string
	t.Run("Create", func(t *testing.T) {
		status, body := e.do(t, "POST", "/api/apps/archive/rules",
			`{"name":"接口规则","keyword":{"word_list":["加微信"]},"semantics":{"semantics_list":[2,3]}}`)
		require.Equal(t, http.StatusCreated, status, body)
		var out struct {
			RuleID string `json:"rule_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		require.NotEmpty(t, out.RuleID)
		id = out.RuleID
		name, ok := e.rules.RuleName(corpA, id)
		assert.True(t, ok, "the new rule's name is known at once")
		assert.Equal(t, "接口规则", name)
	})
	t.Run("ListAndGet", func(t *testing.T) {
		assert.ElementsMatch(t, append(slices.Clone(before), id), listed(t))
		status, body := e.do(t, "GET", "/api/apps/archive/rules/"+id, "")
		require.Equal(t, http.StatusOK, status, body)
		assert.Contains(t, body, `"接口规则"`)
		assert.Contains(t, body, `"加微信"`)
	})
	t.Run("UpdateClearsAndKeeps", func(t *testing.T) {
		status, body := e.do(t, "PATCH", "/api/apps/archive/rules/"+id, `{"name":"改名","words":[]}`)
		require.Equal(t, http.StatusOK, status, body)
		assert.JSONEq(t, `{"rule_id":"`+id+`"}`, body)
		_, body = e.do(t, "GET", "/api/apps/archive/rules/"+id, "")
		var d struct {
			Name    string `json:"name"`
			Keyword *struct {
				WordList []string `json:"word_list"`
			} `json:"keyword"`
			Semantics *struct {
				SemanticsList []int `json:"semantics_list"`
			} `json:"semantics"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &d), body)
		assert.Equal(t, "改名", d.Name)
		if d.Keyword != nil {
			assert.Empty(t, d.Keyword.WordList, "[] cleared the words")
		}
		require.NotNil(t, d.Semantics)
		assert.Equal(t, []int{2, 3}, d.Semantics.SemanticsList, "absent semantics unchanged")
		name, _ := e.rules.RuleName(corpA, id)
		assert.Equal(t, "改名", name, "the new name is known at once")
	})
	t.Run("ErrValidationSendsNothing", func(t *testing.T) {
		before := e.sim.Requests("create_rule") + e.sim.Requests("update_rule")
		status, body := e.do(t, "POST", "/api/apps/archive/rules", `{"name":"这个规则的名字实在是太长了超过了二十个字的限制","semantics":{"semantics_list":[2]}}`)
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Contains(t, body, `"field":"name"`)
		status, body = e.do(t, "PATCH", "/api/apps/archive/rules/"+id, `{"words":null}`)
		assert.Equal(t, http.StatusBadRequest, status, body)
		status, _ = e.do(t, "POST", "/api/apps/archive/rules", `{"name":"x","colour":"red"}`)
		assert.Equal(t, http.StatusBadRequest, status, "unknown fields are refused")
		status, body = e.do(t, "POST", "/api/apps/archive/rules", `{"name":"x"} {"name":"y"}`)
		assert.Equal(t, http.StatusBadRequest, status)
		assert.JSONEq(t, `{"error":"body: one JSON value expected"}`, body)
		assert.Equal(t, before, e.sim.Requests("create_rule")+e.sim.Requests("update_rule"))
	})
	t.Run("Delete", func(t *testing.T) {
		status, body := e.do(t, "DELETE", "/api/apps/archive/rules/"+id, "")
		assert.Equal(t, http.StatusNoContent, status)
		assert.Empty(t, body)
		status, body = e.do(t, "GET", "/api/apps/archive/rules/"+id, "")
		assert.Equal(t, http.StatusBadGateway, status)
		assert.JSONEq(t, `{"error":"WeCom refused the call","api":"get_rule_detail","errcode":40058}`, body)
	})
	t.Run("ErrUnknownAppAndCorp", func(t *testing.T) {
		before := e.sim.Requests("get_rule_list")
		for _, tt := range []struct {
			path   string
			status int
			body   string
		}{
			{"/api/apps/nope/rules", http.StatusNotFound, `{"error":"no app \"nope\""}`},
			{"/api/apps/archive/rules?corp=wwOther", http.StatusNotFound, `{"error":"app archive has no corp \"wwOther\""}`},
			{"/api/apps/two/rules", http.StatusBadRequest, `{"error":"app two has 2 corps: give ?corp="}`},
		} {
			status, body := e.do(t, "GET", tt.path, "")
			assert.Equal(t, tt.status, status, tt.path)
			assert.JSONEq(t, tt.body, body, tt.path)
		}
		assert.Equal(t, before, e.sim.Requests("get_rule_list"), "nothing reached WeCom")
		status, body := e.do(t, "GET", "/api/apps/two/rules?corp="+corpB, "")
		assert.Equal(t, http.StatusOK, status, body)
		assert.JSONEq(t, `{"rules":[]}`, body, "corpB has no rules: [], not null")
	})
}

// TestAPI_Search answers the msgids of every page of search_msg.
func TestAPI_Search(t *testing.T) {
	e := newAPIEnv(t)
	msgs, err := e.sim.GenerateMessages(corpA, 200)
	require.NoError(t, err)
	word := ""
	for _, msg := range msgs {
		if r := []rune(msg.Text); len(r) >= 4 {
			word = string(r[:2])
			break
		}
	}
	require.NotEmpty(t, word)
	status, body := e.do(t, "POST", "/api/apps/archive/search", `{"query_word":"`+word+`","limit":5}`)
	require.Equal(t, http.StatusOK, status, body)
	var out struct {
		MsgIDs []string `json:"msgids"`
		Count  int      `json:"count"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &out))
	assert.Positive(t, out.Count)
	assert.Len(t, out.MsgIDs, out.Count)
	before := e.sim.Requests("search_msg")
	status, _ = e.do(t, "POST", "/api/apps/archive/search", `{"query_word":"x"}`)
	assert.Equal(t, http.StatusBadRequest, status, "query_word needs 2 characters")
	assert.Equal(t, before, e.sim.Requests("search_msg"))
}

// TestAPI_Status answers the status reader's report as JSON, and its
// failure as 503.
func TestAPI_Status(t *testing.T) {
	e := newAPIEnv(t)
	status, body := e.do(t, "GET", "/api/status", "")
	require.Equal(t, http.StatusOK, status, body)
	var rep health.Report
	require.NoError(t, json.Unmarshal([]byte(body), &rep))
	require.Len(t, rep.Corps, 1)
	assert.Equal(t, corpA, rep.Corps[0].CorpID)

	h, err := admin.New(&readiness{}, prometheus.NewRegistry(), admin.WithAPI(testToken, admin.API{
		Status: admin.StatusFunc(func(context.Context) (health.Report, error) {
			return health.Report{}, errors.New("nats: timeout")
		}),
		Apps: admin.AppsFunc(func(string) (*wecom.Client, bool) { return nil, false }), Directory: corps.NewDirectory(nil, nil),
		RuleNames: nopNames{}, DeadLetters: &deadLetters{}, Corps: &corpList{}, Draining: func() bool { return false },
	}))
	require.NoError(t, err)
	status, body = do(t, serve(t, h), "GET", "/api/status", testToken, "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.JSONEq(t, `{"error":"nats: timeout"}`, body)
}

// deadLetters lists a real dead-letter stream, each entry as its
// sequence, app and kind, and records the replays asked of it.
type deadLetters struct {
	s       *deadletter.Stream
	mu      sync.Mutex
	replays []string
}

func (d *deadLetters) List(ctx context.Context, f deadletter.Filter) ([]any, error) {
	entries, err := d.s.List(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(entries))
	for i, e := range entries {
		out[i] = map[string]any{"seq": e.Seq, "app": e.App, "kind": e.Kind}
	}
	return out, nil
}

func (d *deadLetters) ReplaySeqs(_ context.Context, seqs []uint64) ([]any, error) {
	d.record(fmt.Sprint("seqs ", seqs))
	out := []any{}
	for _, s := range seqs {
		out = append(out, map[string]any{"seq": s, "result": "replayed"})
	}
	return out, nil
}

func (d *deadLetters) ReplayMatching(_ context.Context, f deadletter.Filter) ([]any, error) {
	d.record(fmt.Sprintf("matching %+v", f))
	return nil, nil
}

func (d *deadLetters) record(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.replays = append(d.replays, s)
}

func (d *deadLetters) asked() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.replays)
}

// TestAPI_DeadLetters: the query's filters reach the stream; bad queries
// and bodies are refused before anything is read or replayed.
func TestAPI_DeadLetters(t *testing.T) {
	e := newAPIEnv(t)
	ctx := natstest.Context(t)
	for i, dl := range []wecomhit.DeadLetter{
		{Kind: wecomhit.DeadLetterCallback, Reason: wecomhit.ReasonUnknownCorp, App: "archive", CorpID: corpA, CallbackKind: wecomhit.KindHitKeyword},
		{Kind: wecomhit.DeadLetterHit, Reason: wecomhit.ReasonBadRecord, App: "archive", CorpID: corpA, Source: "poll"},
		{Kind: wecomhit.DeadLetterCallback, Reason: wecomhit.ReasonUnknownCorp, App: "two", CorpID: corpB, CallbackKind: wecomhit.KindHitKeyword},
	} {
		dl.Error, dl.DeadAt, dl.Record = "test", time.Now(), json.RawMessage(`{"id":"cb"}`)
		require.NoError(t, e.dlq.Write(ctx, &dl, fmt.Sprint("dl-", i)))
	}
	list := func(t *testing.T, query string) []uint64 {
		t.Helper()
		status, body := e.do(t, "GET", "/api/dlq"+query, "")
		require.Equal(t, http.StatusOK, status, body)
		var out struct {
			DeadLetters []struct {
				Seq uint64 `json:"seq"`
			} `json:"dead_letters"`
			Count int `json:"count"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &out))
		require.Len(t, out.DeadLetters, out.Count)
		seqs := []uint64{}
		for _, d := range out.DeadLetters {
			seqs = append(seqs, d.Seq)
		}
		return seqs
	}
	assert.Equal(t, []uint64{1, 2, 3}, list(t, ""), "oldest first")
	assert.Equal(t, []uint64{1, 3}, list(t, "?kind=callback"))
	assert.Equal(t, []uint64{2}, list(t, "?kind=hit"))
	assert.Equal(t, []uint64{3}, list(t, "?app=two&corp="+corpB))
	assert.Equal(t, []uint64{1}, list(t, "?reason=unknown_corp&limit=1"))
	assert.Equal(t, []uint64{}, list(t, "?app=nope"), "none: [], not null")

	for _, tt := range []struct{ method, path, body, want string }{
		{"GET", "/api/dlq?kind=event", "", `{"error":"kind \"event\": want hit or callback"}`},
		{"GET", "/api/dlq?limit=0", "", `{"error":"limit \"0\": want a positive integer"}`},
		{"GET", "/api/dlq?limit=x", "", `{"error":"limit \"x\": want a positive integer"}`},
		{"POST", "/api/dlq/replay", `{}`, `{"error":"give \"seqs\" or \"all\": true, not both"}`},
		{"POST", "/api/dlq/replay", `{"all":true,"seqs":[1]}`, `{"error":"give \"seqs\" or \"all\": true, not both"}`},
		{"POST", "/api/dlq/replay", `{"seqs":[1],"reason":"unknown_corp"}`, `{"error":"filters go with \"all\"; \"seqs\" names the dead letters"}`},
		{"POST", "/api/dlq/replay", `{"seqs":[0]}`, `{"error":"seqs: want positive integers"}`},
	} {
		status, body := e.do(t, tt.method, tt.path, tt.body)
		assert.Equal(t, http.StatusBadRequest, status, tt.path+" "+tt.body)
		assert.JSONEq(t, tt.want, body, tt.path+" "+tt.body)
	}
	status, body := e.do(t, "POST", "/api/dlq/replay", `{"every":true}`)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, `unknown field`)
	assert.Empty(t, e.dead.asked(), "nothing replayed")

	status, body = e.do(t, "POST", "/api/dlq/replay", `{"seqs":[3,1]}`)
	require.Equal(t, http.StatusOK, status, body)
	assert.JSONEq(t, `{"results":[{"seq":3,"result":"replayed"},{"seq":1,"result":"replayed"}],"count":2}`, body)
	status, body = e.do(t, "POST", "/api/dlq/replay", `{"all":true,"app":"two","corp":"`+corpB+`","reason":"unknown_corp"}`)
	require.Equal(t, http.StatusOK, status, body)
	assert.JSONEq(t, `{"results":[],"count":0}`, body)
	assert.Equal(t, []string{"seqs [3 1]",
		"matching {Kind:callback App:two CorpID:" + corpB + " Reason:unknown_corp Limit:0}"}, e.dead.asked(),
		"all replays callbacks only")
}

// corpRow is a corp as the test's Corps shows it.
type corpRow struct {
	App    string `json:"app"`
	CorpID string `json:"corp_id"`
}

// corpList is a Corps over a list the test sets.
type corpList struct {
	mu          sync.Mutex
	rows        []corpRow
	registryOff bool
	err         error
}

func (c *corpList) List(_ context.Context, app string) ([]any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	var out []any
	for _, r := range c.rows {
		if app == "" || r.App == app {
			out = append(out, r)
		}
	}
	return out, nil
}

func (c *corpList) Get(ctx context.Context, app, corp string) (any, error) {
	rows, err := c.List(ctx, app)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		if r.(corpRow).CorpID == corp {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w: %s/%s", corps.ErrNotFound, app, corp)
}

func (c *corpList) Remove(_ context.Context, app, corp string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.registryOff {
		return admin.ErrRegistryOff
	}
	i := slices.Index(c.rows, corpRow{app, corp})
	if i < 0 {
		return fmt.Errorf("%w: %s/%s", corps.ErrNotFound, app, corp)
	}
	c.rows = slices.Delete(c.rows, i, i+1)
	return nil
}

// TestAPI_Corps: list, get and remove, with their statuses.
func TestAPI_Corps(t *testing.T) {
	e := newAPIEnv(t)
	status, body := e.do(t, "GET", "/api/corps", "")
	require.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"corps":[],"count":0}`, body, "none: [], not null")

	e.corps.rows = []corpRow{{"archive", corpA}, {"two", corpA}, {"two", corpB}}
	for _, tt := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/api/corps", 200, `{"corps":[{"app":"archive","corp_id":"` + corpA + `"},{"app":"two","corp_id":"` + corpA + `"},{"app":"two","corp_id":"` + corpB + `"}],"count":3}`},
		{"GET", "/api/corps?app=archive", 200, `{"corps":[{"app":"archive","corp_id":"` + corpA + `"}],"count":1}`},
		{"GET", "/api/corps?app=nope", 404, `{"error":"no app \"nope\""}`},
		{"GET", "/api/corps/two/" + corpB, 200, `{"app":"two","corp_id":"` + corpB + `"}`},
		{"GET", "/api/corps/archive/" + corpB, 404, `{"error":"app archive has no corp \"` + corpB + `\""}`},
		{"DELETE", "/api/corps/archive/wwNoSuch", 404, `{"error":"app archive has no registry corp \"wwNoSuch\""}`},
		{"DELETE", "/api/corps/two/" + corpB, 200, `{"removed":"two/` + corpB + `"}`},
		{"GET", "/api/corps/two/" + corpB, 404, `{"error":"app two has no corp \"` + corpB + `\""}`},
	} {
		status, body := e.do(t, tt.method, tt.path, "")
		assert.Equal(t, tt.status, status, tt.method+" "+tt.path)
		assert.JSONEq(t, tt.body, body, tt.method+" "+tt.path)
	}

	e.corps.registryOff = true
	status, body = e.do(t, "DELETE", "/api/corps/two/"+corpA, "")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.JSONEq(t, `{"error":"the corp registry is off (no corps.encryption_keys): remove the corp from the configuration"}`, body)

	e.corps.err = errors.New("nats: timeout")
	for _, p := range []string{"/api/corps", "/api/corps/two/" + corpA} {
		status, body = e.do(t, "GET", p, "")
		assert.Equal(t, http.StatusServiceUnavailable, status, p)
		assert.JSONEq(t, `{"error":"nats: timeout"}`, body, p)
	}
}
