package wecom

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// Distinctive secret values, so the redaction tests can search for them.
const (
	testCorp       = "wwcorp01"
	testSecret     = "SECRET-corp-5f1c"
	testSuiteID    = "wwsuite01"
	testSuiteSec   = "SECRET-suite-8d2e"
	testPermCode   = "PERMCODE-77aa"
	testTicket     = "TICKET-3b9f"
	testSuiteToken = "SUITETOKEN-c0de"
	testProgram    = "prog01"
)

// request is what the fake recorded of one request.
type request struct {
	Path  string
	Query url.Values
	Body  []byte
}

// fakeWeCom is a small, explicit stand-in for WeCom's HTTP surface: each
// test installs the handlers it needs; token endpoints answer by default.
type fakeWeCom struct {
	srv *httptest.Server

	mu       sync.Mutex
	reqs     []request
	handlers map[string]http.HandlerFunc
	tokenN   int
}

func newFake(t testing.TB) *fakeWeCom {
	t.Helper()
	f := &fakeWeCom{handlers: make(map[string]http.HandlerFunc)}
	f.handle("/cgi-bin/gettoken", func(w http.ResponseWriter, r *http.Request) {
		// No errcode on success, as WeCom sometimes does.
		reply(w, map[string]any{"access_token": f.nextToken(), "expires_in": 7200})
	})
	f.handle("/cgi-bin/service/get_suite_token", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"suite_access_token": testSuiteToken, "expires_in": 7200})
	})
	f.handle("/cgi-bin/service/get_corp_token", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"access_token": f.nextToken(), "expires_in": 7200})
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, request{Path: r.URL.Path, Query: r.URL.Query(), Body: body})
		h := f.handlers[r.URL.Path]
		f.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeWeCom) nextToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenN++
	return "ACCESSTOKEN-" + string(rune('0'+f.tokenN))
}

func (f *fakeWeCom) handle(path string, h http.HandlerFunc) {
	f.mu.Lock()
	f.handlers[path] = h
	f.mu.Unlock()
}

// count is the number of requests to path; "" counts all.
func (f *fakeWeCom) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.reqs {
		if path == "" || r.Path == path {
			n++
		}
	}
	return n
}

// requests returns the requests to path.
func (f *fakeWeCom) requests(path string) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.reqs {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func replyCode(w http.ResponseWriter, code int) {
	reply(w, map[string]any{"errcode": code, "errmsg": "injected"})
}

// hangUp closes the connection without an answer, as a reset would.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

var allAbilities = map[string]string{
	opGetHitMsgList: "invoke_get_hit_msg_list", opCreateRule: "invoke_create_rule",
	opGetRuleList: "invoke_get_rule_list", opGetRuleDetail: "invoke_get_rule_detail",
	opUpdateRule: "invoke_update_rule", opDeleteRule: "invoke_delete_rule",
	opSearchMsg: "invoke_search_msg",
}

func zoneApp(base string, wrap bool) App {
	return App{
		Name: "zoneapp", Mode: ModeZone, CorpID: testCorp, CorpSecret: testSecret,
		ProgramID: testProgram, Abilities: allAbilities, WrapAbilityIO: wrap, APIBaseURL: base,
	}
}

func archiveApp(base string) App {
	return App{
		Name: "archapp", Mode: ModeArchive, SuiteID: testSuiteID, SuiteSecret: testSuiteSec,
		Corps: []Corp{{CorpID: testCorp, PermanentCode: testPermCode}}, APIBaseURL: base,
	}
}

// fakeClock starts at a fixed time, records sleeps and returns from them
// at once, advancing itself.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1717000000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// mustStores opens the buckets on a fresh embedded server (or on js).
func mustStores(t testing.TB) *Stores {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	s, err := OpenStores(context.Background(), js, StoreConfig{})
	require.NoError(t, err)
	return s
}

// mustClient builds a client with a fake clock; archive apps get stores
// with a stored ticket.
func mustClient(t testing.TB, app App, stores *Stores, opts ...Option) (*Client, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if app.Mode == ModeArchive && stores == nil {
		stores = mustStores(t)
	}
	if stores != nil && app.Mode == ModeArchive {
		require.NoError(t, stores.Tickets.Put(context.Background(), app.SuiteID, testTicket, clk.Now(), clk.Now()))
	}
	c, err := New(app, stores, append([]Option{WithClock(clk)}, opts...)...)
	require.NoError(t, err)
	return c, clk
}
