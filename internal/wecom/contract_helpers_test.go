package wecom_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
	"github.com/wecomhit/wecomhit/internal/wxml"
)

// Credentials the simulator and the clients share.
const (
	ctSuiteID   = "wwContractSuite"
	ctSuiteSec  = "contract-suite-secret"
	ctCorpA     = "wwContractCorpA"
	ctCorpB     = "wwContractCorpB"
	ctPermA     = "perm-a"
	ctPermB     = "perm-b"
	ctZoneCorp  = "wwContractZone"
	ctZoneSec   = "contract-zone-secret"
	ctProgram   = "prog-contract"
	ctCBToken   = "QDG6eK"
	ctCBAESKey  = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	ctDeadline  = 10 * time.Second
	ctCallLimit = 3 * time.Second
)

// abilities maps every operation to an ability id of the zone program, on
// both sides. They are not the "invoke_<op>" default (which config.Load
// fills in, not wecom.New), so the mapping itself is exercised.
func abilities() map[string]string {
	m := map[string]string{}
	for _, op := range []string{"get_hit_msg_list", "create_rule", "get_rule_list", "get_rule_detail",
		"update_rule", "delete_rule", "search_msg"} {
		m[op] = "ab-" + op
	}
	return m
}

// transportCase is one way a client reaches the chat-data operations.
type transportCase struct {
	name string
	zone bool
	// wrap is the zone's wrap_ability_io, on both sides.
	wrap bool
}

// transports are the cases every contract runs for: the archive HTTPS
// paths, and sync_call_program with and without {"input"}/{"output"}.
var transports = []transportCase{
	{name: "Archive"},
	{name: "Zone", zone: true},
	{name: "ZoneWrapped", zone: true, wrap: true},
}

// tokenAPIs are the token calls of the transport, for request counting.
func (tc transportCase) tokenAPIs() []string {
	if tc.zone {
		return []string{"gettoken"}
	}
	return []string{"get_suite_token", "get_corp_token"}
}

// env is one simulator with a NATS server whose KV buckets the clients of
// one test share.
type env struct {
	t    testing.TB
	tc   transportCase
	sim  *wecomsim.Sim
	nats *server.Server
	// corp is the corp the tests call: the first archive corp, or the zone
	// corp.
	corp string
	// notifies receives program_notify NotifyIds when the zone callback is
	// on (withNotify).
	notifies *notifyReceiver
}

type envOption func(*wecomsim.Options)

// withNotify points the zone's program_notify callback at a receiver that
// decrypts it and keeps the NotifyIds.
func withNotify(r *notifyReceiver) envOption {
	return func(o *wecomsim.Options) {
		o.Zone.CallbackURL = r.srv.URL
		o.Zone.Token, o.Zone.EncodingAESKey = ctCBToken, ctCBAESKey
	}
}

// newEnv starts a simulator with a manual clock and no background traffic,
// with both an archive suite of two corps and a zone, on loopback, and a
// NATS server; both stop at cleanup.
func newEnv(t testing.TB, tc transportCase, opts ...envOption) *env {
	t.Helper()
	o := wecomsim.Options{
		Seed:        1,
		MessageRate: -1,
		Archive: wecomsim.Archive{SuiteID: ctSuiteID, SuiteSecret: ctSuiteSec, Corps: []wecomsim.Corp{
			{CorpID: ctCorpA, PermanentCode: ctPermA}, {CorpID: ctCorpB, PermanentCode: ctPermB},
		}},
		Zone: wecomsim.Zone{CorpID: ctZoneCorp, CorpSecret: ctZoneSec, ProgramID: ctProgram,
			Abilities: abilities(), WrapIO: tc.wrap},
		CallbackRetryInterval: 5 * time.Millisecond,
		CallbackTimeout:       2 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	sim, err := wecomsim.New(o, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, sim.Start(natstest.Context(t), "127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, sim.Close(ctx))
	})
	e := &env{t: t, tc: tc, sim: sim, nats: natstest.RunServer(t), corp: ctCorpA}
	if tc.zone {
		e.corp = ctZoneCorp
	}
	return e
}

// app is the client configuration matching the simulator.
func (e *env) app() wecom.App {
	if e.tc.zone {
		return wecom.App{
			Name: "zone", Mode: wecom.ModeZone, CorpID: ctZoneCorp, CorpSecret: ctZoneSec,
			ProgramID: ctProgram, Abilities: abilities(), WrapAbilityIO: e.tc.wrap, APIBaseURL: e.sim.URL(),
		}
	}
	return wecom.App{
		Name: "archive", Mode: wecom.ModeArchive, SuiteID: ctSuiteID, SuiteSecret: ctSuiteSec,
		Corps:      []wecom.Corp{{CorpID: ctCorpA, PermanentCode: ctPermA}, {CorpID: ctCorpB, PermanentCode: ctPermB}},
		APIBaseURL: e.sim.URL(),
	}
}

// fastOptions keep retries, token waits and lock polls short; a test
// appends its own to override them.
func fastOptions() []wecom.Option {
	return []wecom.Option{
		wecom.WithCallTimeout(ctCallLimit),
		wecom.WithBackoff(time.Millisecond, 5*time.Millisecond),
		wecom.WithLockPoll(5 * time.Millisecond),
		wecom.WithTokenWait(ctDeadline),
	}
}

// client connects to the env's NATS server on a connection of its own,
// opens the stores (archive: with the simulator's suite_ticket in them)
// and returns a client for the env's app.
func (e *env) client(opts ...wecom.Option) *wecom.Client {
	e.t.Helper()
	_, js := natstest.Connect(e.t, e.nats)
	return e.clientOn(js, opts...)
}

func (e *env) clientOn(js jetstream.JetStream, opts ...wecom.Option) *wecom.Client {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	stores, err := wecom.OpenStores(ctx, js, wecom.StoreConfig{})
	require.NoError(e.t, err)
	if !e.tc.zone {
		require.NoError(e.t, stores.Tickets.Put(ctx, ctSuiteID, e.sim.SuiteTicket(), time.Now(), e.sim.Now()))
	}
	// A transport of its own, its idle connections closed before the
	// simulator (cleanups run last-registered first): a connection the
	// transport dialled but never used would otherwise hold up the
	// simulator's Close for 5 s (see wecomsim's TestSim_CloseWithUnusedConnection).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	e.t.Cleanup(tr.CloseIdleConnections)
	opts = append([]wecom.Option{wecom.WithHTTPClient(&http.Client{Transport: tr})}, opts...)
	c, err := wecom.New(e.app(), stores, append(fastOptions(), opts...)...)
	require.NoError(e.t, err)
	return c
}

// cachedTokens returns every token the clients keep in the shared token
// bucket, for checking that none leaks into an error.
func (e *env) cachedTokens() []string {
	e.t.Helper()
	ctx := natstest.Context(e.t)
	_, js := natstest.Connect(e.t, e.nats)
	kv, err := js.KeyValue(ctx, wecom.TokenBucket)
	require.NoError(e.t, err)
	keys, err := kv.Keys(ctx)
	require.NoError(e.t, err)
	var out []string
	for _, k := range keys {
		v, err := kv.Get(ctx, k)
		require.NoError(e.t, err)
		var ct struct {
			Token string `json:"token"`
		}
		require.NoError(e.t, json.Unmarshal(v.Value(), &ct))
		out = append(out, ct.Token)
	}
	return out
}

// requests snapshots the simulator's request counts per API.
func (e *env) requests() map[string]int {
	return maps.Clone(e.sim.Stats().Requests)
}

// collect drains a paging iterator, stopping at its first error.
func collect[T any](seq func(func(T, error) bool)) ([]T, error) {
	var out []T
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// notifyReceiver is the zone app's callback URL: it verifies and decrypts
// program_notify like the receiver does and keeps the NotifyIds.
type notifyReceiver struct {
	c   *crypto.Crypter
	srv *httptest.Server

	mu  sync.Mutex
	ids []string
}

var encryptRE = regexp.MustCompile(`<Encrypt><!\[CDATA\[([^\]]*)\]\]></Encrypt>`)

func newNotifyReceiver(t testing.TB) *notifyReceiver {
	t.Helper()
	c, err := crypto.New(ctCBToken, ctCBAESKey, ctZoneCorp)
	require.NoError(t, err)
	r := &notifyReceiver{c: c}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *notifyReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	q := req.URL.Query()
	m := encryptRE.FindSubmatch(body)
	if m == nil {
		http.Error(w, "no Encrypt", http.StatusBadRequest)
		return
	}
	plain, err := r.c.Open(q.Get("msg_signature"), q.Get("timestamp"), q.Get("nonce"), string(m[1]))
	if err != nil {
		http.Error(w, "bad signature or ciphertext", http.StatusBadRequest)
		return
	}
	fields := map[string]string{}
	_ = wxml.Parse(plain, func(name, value string, _ bool) error {
		fields[name] = value
		return nil
	})
	if fields["Event"] == "program_notify" && fields["NotifyId"] != "" {
		r.mu.Lock()
		r.ids = append(r.ids, fields["NotifyId"])
		r.mu.Unlock()
	}
	_, _ = io.WriteString(w, "success")
}

// last returns the newest NotifyId, "" before the first.
func (r *notifyReceiver) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) == 0 {
		return ""
	}
	return r.ids[len(r.ids)-1]
}
