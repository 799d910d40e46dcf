package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
	"github.com/wecomhit/wecomhit/internal/wecomtest"
)

// corpRig is two receivers sharing one NATS server behind a round-robin
// balancer, with the corp registry on and no corp in the configuration,
// and the simulator calling the balancer.
type corpRig struct {
	url       string // NATS
	js        jetstream.JetStream
	sim       *wecomsim.Sim
	lb        *roundRobin
	front     *httptest.Server
	receivers []*app.Main
	logs      []*testlog.Buffer
	key       string // the registry's encryption key, base64
	seeded    bool   // simCorp is in the simulator and the configuration
}

// corpAPIToken is the rig's admin API token.
const corpAPIToken = "corps-admin-token-0123456789"

func startCorpRig(t *testing.T) *corpRig { return startCorpRigSeeded(t, false) }

// startCorpRigSeeded is startCorpRig with, if seeded, simCorp installed in
// the simulator and listed in the configuration (a seed).
func startCorpRigSeeded(t *testing.T, seeded bool) *corpRig {
	t.Helper()
	srv := natstest.RunServer(t)
	r := &corpRig{url: natstest.ClientURLs(srv), key: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{42}, 32)), seeded: seeded}
	var simCorps []wecomsim.Corp
	if seeded {
		simCorps = []wecomsim.Corp{{CorpID: simCorp, PermanentCode: "perm-code"}}
	}
	_, r.js = natstest.Connect(t, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lis := make([]net.Listener, 2)
	addrs := make([]string, 2)
	for i := range lis {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lis[i], addrs[i] = l, l.Addr().String()
	}
	r.lb = newRoundRobin(t, addrs...)
	r.front = httptest.NewServer(r.lb)
	t.Cleanup(r.front.Close)
	var err error
	r.sim, err = wecomsim.New(wecomsim.Options{
		Seed: 29, MessageRate: -1,
		Archive: wecomsim.Archive{
			SuiteID: simSuite, SuiteSecret: "suite-secret", Corps: simCorps,
			Token: testvectors.V1.Token, EncodingAESKey: testvectors.V1.EncodingAESKey,
			CallbackURL: r.front.URL + "/callback/archive",
		},
	}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, r.sim.Start(ctx, "127.0.0.1:0"))
	for i := range lis {
		r.start(t, lis[i])
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = r.sim.Close(ctx)
	})
	natstest.WaitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := r.receivers[0].Stores().Tickets.Get(ctx, simSuite)
		return err
	})
	return r
}

func (r *corpRig) config(t *testing.T, listen string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(r.yaml(listen)), t.TempDir(), envOf(map[string]string{}, "CORPS_KEY", r.key))
	require.NoError(t, err)
	return cfg
}

// yaml is the receivers' configuration; the key comes from $CORPS_KEY.
func (r *corpRig) yaml(listen string) string {
	seeds := ""
	if r.seeded {
		seeds = "    corps: [{corp_id: " + simCorp + ", permanent_code: perm-code}]\n"
	}
	return fmt.Sprintf(`
allow_sample_secrets: true
http: {listen: %q}
admin: {listen: "127.0.0.1:0", token: %q}
nats: {url: %q, connect_timeout: 5s}
fetch: {poll_interval: 0s, page_size: 300}
log: {level: info}
corps:
  encryption_keys:
    k1: ${CORPS_KEY}
  current_key: k1
apps:
  - name: archive
    mode: archive
    token: %s
    encoding_aes_key: %s
    api_base_url: %s
    suite_id: %s
    suite_secret: suite-secret
`, listen, corpAPIToken, r.url, testvectors.V1.Token, testvectors.V1.EncodingAESKey, r.sim.URL(), simSuite) + seeds
}

// start opens a receiver on lis and stops it at the end of the test.
func (r *corpRig) start(t *testing.T, lis net.Listener) *app.Main {
	t.Helper()
	logs := &testlog.Buffer{}
	name := fmt.Sprintf("receiver-%d", len(r.receivers)+1)
	m := app.NewMain(r.config(t, lis.Addr().String()), zerolog.New(logs).With().Str("replica", name).Logger())
	m.UseListener(lis)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, m.Open(ctx), name)
	t.Cleanup(func() { r.stop(t, m) })
	// Its intake consumers are created in the background. The next
	// replica's Open updates the streams, and a stream update while a
	// consumer is created trips a data race inside nats-server's file
	// store under -race: let them be created first.
	for _, d := range app.IntakeDurables() {
		natstest.WaitFor(t, 10*time.Second, func() error {
			_, err := r.js.Consumer(ctx, intake.StreamName, d)
			return err
		})
	}
	r.receivers = append(r.receivers, m)
	r.logs = append(r.logs, logs)
	return m
}

func (r *corpRig) stop(t *testing.T, m *app.Main) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	assert.NoError(t, m.Close(ctx))
}

// authorize installs a corp through the simulator's HTTP control.
func (r *corpRig) authorize(t *testing.T) wecomsim.Installed {
	t.Helper()
	resp, err := http.Post(r.sim.URL()+"/_sim/corps", "application/json", strings.NewReader(`{"demo_rules": true}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var in wecomsim.Installed
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&in))
	return in
}

// serving waits until every receiver in ms serves (want) or no longer
// serves (!want) corp.
func serving(t *testing.T, corp string, want bool, ms ...*app.Main) {
	t.Helper()
	for i, m := range ms {
		natstest.WaitFor(t, 10*time.Second, func() error {
			if m.CorpView().Dir.Has("archive", corp) != want {
				return fmt.Errorf("receiver %d: serving %s is not %v", i+1, corp, want)
			}
			return nil
		})
	}
}

// hitCallback is a hit_keyword callback record of corp, as dispatch gets it.
func hitCallback(corp string) *wecomhit.Callback {
	return &wecomhit.Callback{
		ID: "test-" + corp, App: "archive", Kind: wecomhit.KindHitKeyword, CorpID: corp, ReceivedAt: time.Now(),
	}
}

// corpEvents reads the lifecycle events of corp in WECOM_HITS.
func corpEvents(t *testing.T, js jetstream.JetStream, corp string) []wecomhit.CorpLifecycleEvent {
	t.Helper()
	var out []wecomhit.CorpLifecycleEvent
	for _, data := range streamData(t, js, publish.CorpStreamName, publish.CorpSubject("wecom", corp, "*")) {
		var ev wecomhit.CorpLifecycleEvent
		require.NoError(t, json.Unmarshal(data, &ev))
		out = append(out, ev)
	}
	return out
}

// onlyCancelled waits until corp's lifecycle events are its cancelled
// event alone: remove returns once the event is published, and the
// receivers purge the corp's authorized event right after.
func onlyCancelled(t *testing.T, js jetstream.JetStream, corp string) []wecomhit.CorpLifecycleEvent {
	t.Helper()
	var evs []wecomhit.CorpLifecycleEvent
	natstest.WaitFor(t, 15*time.Second, func() error {
		evs = corpEvents(t, js, corp)
		if len(evs) != 1 || evs[0].Type != wecomhit.CorpCancelled {
			return fmt.Errorf("lifecycle events %+v", evs)
		}
		return nil
	})
	return evs
}

// onlyHitEvents reads WECOM_HITS without a subject filter, as a consumer
// that filters nothing does, and requires every message to be a hit event
// (issue 13); it returns how many there are.
func onlyHitEvents(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	all := streamData(t, js, publish.StreamName, "")
	for _, data := range all {
		var ev struct {
			Schema string `json:"schema"`
		}
		require.NoError(t, json.Unmarshal(data, &ev))
		assert.Equal(t, wecomhit.HitSchema, ev.Schema, "WECOM_HITS holds hit events only: %s", data)
	}
	return len(all)
}

// streamData reads every message of stream on filter ("" for all).
func streamData(t *testing.T, js jetstream.JetStream, stream, filter string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	var opts []jetstream.StreamInfoOpt
	if filter != "" {
		opts = append(opts, jetstream.WithSubjectFilter(filter))
	}
	info, err := s.Info(ctx, opts...)
	require.NoError(t, err)
	n := info.State.Msgs
	if filter != "" {
		n = 0
		for _, c := range info.State.Subjects {
			n += c
		}
	}
	if n == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := s.OrderedConsumer(ctx, cfg)
	require.NoError(t, err)
	var out [][]byte
	for uint64(len(out)) < n {
		batch, err := cons.Fetch(int(n)-len(out), jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		got := 0
		for m := range batch.Messages() {
			out = append(out, m.Data())
			got++
		}
		if got == 0 {
			break // deleted meanwhile (a purge, a KV delete)
		}
	}
	return out
}

// TestCorps_Lifecycle is issue 11's done-when over real NATS and the
// simulator over HTTP: a corp authorized at run time is served by both
// replicas without a restart; its create_auth applied again exchanges
// nothing; cancel_auth stops every replica calling WeCom for it and leaves
// none of its data; the lifecycle events are published; a restart serves
// the registry's corps; the permanent codes in KV do not open without the
// key.
func TestCorps_Lifecycle(t *testing.T) {
	r := startCorpRig(t)
	m1, m2 := r.receivers[0], r.receivers[1]
	ctx := context.Background()
	t.Cleanup(func() {
		if t.Failed() {
			for i, l := range r.logs {
				t.Logf("receiver-%d log:\n%s", i+1, l.String())
			}
		}
	})

	// A corp installs the suite: create_auth reaches one replica, is
	// exchanged and stored, and both start serving it.
	start := time.Now()
	a := r.authorize(t)
	serving(t, a.CorpID, true, m1, m2)
	t.Logf("measured: create_auth to both replicas serving: %v", time.Since(start))
	assert.Equal(t, 1, r.sim.Requests("get_permanent_code_v2"), "one exchange")

	t.Run("FirstHitWithoutRestart", func(t *testing.T) {
		_, err := r.sim.GenerateMessages(a.CorpID, 40)
		require.NoError(t, err)
		sent := time.Now()
		r.sim.Advance(6 * time.Second) // the hit callback goes out
		natstest.WaitFor(t, 15*time.Second, func() error {
			if n := len(streamData(t, r.js, publish.StreamName, "wecom.hit."+a.CorpID+".>")); n == 0 {
				return errors.New("no hit event yet")
			}
			return nil
		})
		t.Logf("measured: hit callback of the new corp to its first event: %v", time.Since(sent))
		// Its authorized event is published, but not among the hits.
		natstest.WaitFor(t, 10*time.Second, func() error {
			if evs := corpEvents(t, r.js, a.CorpID); len(evs) == 0 {
				return errors.New("no authorized event yet")
			}
			return nil
		})
		evs := corpEvents(t, r.js, a.CorpID)
		require.Len(t, evs, 1, "once although every replica announced it")
		assert.Equal(t, wecomhit.CorpAuthorized, evs[0].Type)
		assert.Equal(t, "create_auth", evs[0].Cause)
		assert.Equal(t, a.CorpName, evs[0].CorpName)
		assert.Positive(t, onlyHitEvents(t, r.js))
		// Each replica fetches for the corp on its own: dispatch waits
		// for the fetch, which fails if the replica cannot reach the corp.
		for i, m := range r.receivers {
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			assert.NoError(t, m.Dispatch(cctx, hitCallback(a.CorpID)), "receiver %d", i+1)
			cancel()
		}
	})

	t.Run("CreateAuthThreeTimes", func(t *testing.T) {
		// The stored create_auth, stored twice more as a replay would
		// (another record id, the same auth code).
		var orig wecomhit.Callback
		for _, cb := range records(t, r.js) {
			if cb.Kind == wecomhit.KindCreateAuth && cb.AuthCode == a.AuthCode {
				orig = cb
			}
		}
		require.NotEmpty(t, orig.ID, "the create_auth record")
		reg, err := corps.Bind(ctx, r.js, nil)
		require.NoError(t, err)
		before, err := reg.Get(ctx, "archive", a.CorpID)
		require.NoError(t, err)
		for i := range 2 {
			again := orig
			again.ID = fmt.Sprintf("%s/again/%d", orig.ID, i)
			require.NoError(t, m1.Intake().Store(ctx, &again))
		}
		natstest.WaitFor(t, 15*time.Second, func() error {
			return consumerDone(ctx, r.js, app.CorpsConsumer)
		})
		assert.Equal(t, 1, r.sim.Requests("get_permanent_code_v2"), "one exchange")
		assert.Zero(t, r.sim.Requests("get_permanent_code"), "no v1 fallback")
		all, err := reg.List(ctx, "archive")
		require.NoError(t, err)
		require.Len(t, all, 1, "one registry entry")
		assert.Equal(t, before.Revision, all[0].Revision, "the entry was not written again")
	})

	// Secrets to look for after the cancel: the permanent code and the
	// corp's access token.
	code, err := m1.CorpView().Mirror.PermanentCode(ctx, "archive", a.CorpID)
	require.NoError(t, err)
	secrets := []string{code.Reveal()}
	tokenKey := "archive.corp." + a.CorpID
	e, err := m1.Stores().Tokens.Get(ctx, tokenKey)
	require.NoError(t, err, "the corp's access token is cached")
	var tok struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal(e.Value(), &tok))
	require.NotEmpty(t, tok.Token)
	secrets = append(secrets, tok.Token)

	t.Run("CancelAuth", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodDelete, r.sim.URL()+"/_sim/corps/"+a.CorpID, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		cancelled := time.Now()
		serving(t, a.CorpID, false, m1, m2)
		t.Logf("measured: cancel_auth to both replicas stopped: %v", time.Since(cancelled))
		natstest.WaitFor(t, 15*time.Second, func() error {
			// The cancelled event in, the authorized one (which names
			// the corp) purged after it.
			if evs := corpEvents(t, r.js, a.CorpID); len(evs) != 1 || evs[0].Type != wecomhit.CorpCancelled {
				return fmt.Errorf("lifecycle events %+v", evs)
			}
			return consumerDone(ctx, r.js, app.CorpsConsumer)
		})

		// No replica calls WeCom for the corp any more: not a poll, not a
		// late hit callback.
		calls := r.sim.Stats().CorpRequests[a.CorpID]
		for i, m := range r.receivers {
			m.Fetcher().Poll()
			assert.NoError(t, m.Dispatch(ctx, hitCallback(a.CorpID)), "receiver %d drops it", i+1)
		}
		for _, m := range r.receivers {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			require.NoError(t, m.Fetcher().Drain(dctx))
			cancel()
		}
		assert.Equal(t, calls, r.sim.Stats().CorpRequests[a.CorpID], "calls for the cancelled corp")

		// A scan finds none of its data.
		// (records reads by sequence, which deletions leave holes in.)
		for _, data := range streamData(t, r.js, intake.StreamName, "") {
			var cb wecomhit.Callback
			require.NoError(t, json.Unmarshal(data, &cb))
			assert.NotEqual(t, a.CorpID, cb.CorpID, "callback record %s (%s) of the cancelled corp", cb.ID, cb.Kind)
		}
		assert.Zero(t, len(streamData(t, r.js, publish.StreamName, "wecom.hit."+a.CorpID+".>")), "hit events of the cancelled corp")
		onlyHitEvents(t, r.js)
		for _, b := range []string{"wecom_cursors", "wecom_fetch_leases", "wecom_hit_tokens", "wecom_corp_health", "wecom_tokens", "wecom_token_locks"} {
			kv, err := r.js.KeyValue(ctx, b)
			require.NoError(t, err)
			keys, err := kv.ListKeys(ctx)
			require.NoError(t, err)
			for k := range keys.Keys() {
				assert.NotContains(t, k, a.CorpID, "bucket %s", b)
			}
		}
		streams := r.js.StreamNames(ctx)
		for name := range streams.Name() {
			for _, data := range streamData(t, r.js, name, "") {
				for _, s := range secrets {
					assert.NotContains(t, string(data), s, "a secret of the cancelled corp in %s", name)
				}
			}
		}
		reg, err := corps.Bind(ctx, r.js, nil)
		require.NoError(t, err)
		c, err := reg.Get(ctx, "archive", a.CorpID)
		require.NoError(t, err)
		assert.Equal(t, corps.Cancelled, c.State)
		assert.Nil(t, c.Code)
		assert.Empty(t, c.CorpName)

		// The cancelled event, once although every replica announced
		// it, is all that is left of the corp in WECOM_CORP_EVENTS:
		// nothing there names it.
		evs := corpEvents(t, r.js, a.CorpID)
		require.Len(t, evs, 1)
		assert.Equal(t, wecomhit.CorpCancelled, evs[0].Type)
		assert.Equal(t, "cancel_auth", evs[0].Cause)
		assert.Contains(t, evs[0].Deleted, wecomhit.CorpDataHitEvents)
		assert.Contains(t, evs[0].Deleted, wecomhit.CorpDataCallbackRecords)
		assert.Contains(t, evs[0].Deleted, wecomhit.CorpDataAuthorizedEvents)
		assert.Empty(t, evs[0].CorpName)
		for _, data := range streamData(t, r.js, publish.CorpStreamName, "") {
			assert.NotContains(t, string(data), a.CorpName, "the cancelled corp's name")
		}
	})

	t.Run("RestartServesTheRegistry", func(t *testing.T) {
		b := r.authorize(t)
		serving(t, b.CorpID, true, m1, m2)
		r.stop(t, m1)
		r.stop(t, m2)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		m3 := r.start(t, lis)
		assert.Equal(t, []string{b.CorpID}, m3.CorpView().Dir.Corps("archive"))
		// Its tokens were cached by the old replicas: drop them, so the
		// new one must open the permanent code from the registry.
		require.NoError(t, m3.Clients()["archive"].ForgetCorp(ctx, b.CorpID))
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		wecomtest.CreateDemoRules(cctx, t, m3.Clients()["archive"], b.CorpID)
		require.NoError(t, m3.Dispatch(cctx, hitCallback(b.CorpID)))
	})

	t.Run("CodesSealedAtRest", func(t *testing.T) {
		kv, err := r.js.KeyValue(ctx, corps.Bucket)
		require.NoError(t, err)
		keys, err := kv.ListKeys(ctx)
		require.NoError(t, err)
		n := 0
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			require.NoError(t, err)
			for _, perm := range append(secrets, "perm-") {
				assert.NotContains(t, string(e.Value()), perm)
			}
			n++
		}
		assert.Equal(t, 2, n)
		reg, err := corps.Bind(ctx, r.js, nil)
		require.NoError(t, err)
		all, err := reg.List(ctx, "archive")
		require.NoError(t, err)
		for _, c := range all {
			if c.State != corps.Active {
				continue
			}
			_, err := reg.PermanentCode(c)
			require.ErrorIs(t, err, corps.ErrNoKeys)
			wrong, err := corps.NewKeyring(map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32)}, "k1")
			require.NoError(t, err)
			other, err := corps.Bind(ctx, r.js, wrong)
			require.NoError(t, err)
			_, err = other.PermanentCode(c)
			require.ErrorIs(t, err, corps.ErrDecrypt)
		}
	})
}

// consumerDone reports whether the durable intake consumer has nothing
// pending or unacked.
func consumerDone(ctx context.Context, js jetstream.JetStream, durable string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, intake.StreamName, durable)
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		return fmt.Errorf("%s: %d pending, %d unacked", durable, info.NumPending, info.NumAckPending)
	}
	return nil
}

// TestCorps_Operator: receiver corps list|get|remove and /api/corps show
// the registry without codes, and remove stops a corp and deletes its data
// like cancel_auth.
func TestCorps_Operator(t *testing.T) {
	r := startCorpRig(t)
	m := r.receivers[0]
	a, b := r.authorize(t), r.authorize(t)
	serving(t, a.CorpID, true, r.receivers...)
	serving(t, b.CorpID, true, r.receivers...)

	// The configuration an operator's commands read: the same, from a file.
	path := t.TempDir() + "/receiver.yaml"
	require.NoError(t, writeFile(path, r.yaml("127.0.0.1:0")))
	e := func(out, errOut *testlog.Buffer) cli.Env {
		return cli.Env{LookupEnv: envOf(map[string]string{}, "CORPS_KEY", r.key), Stdout: out, Stderr: errOut}
	}
	ctx := context.Background()

	t.Run("ListJSON", func(t *testing.T) {
		var out, errOut testlog.Buffer
		require.Equal(t, 0, run(ctx, []string{"corps", "list", "-config", path, "-o", "json"}, e(&out, &errOut)), errOut.String())
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, lines, 2)
		var got app.CorpEntry
		require.NoError(t, json.Unmarshal([]byte(lines[0]), &got))
		assert.Equal(t, a.CorpID, got.CorpID)
		assert.Equal(t, "active", got.State)
		assert.Equal(t, "create_auth", got.Source)
		assert.Equal(t, "k1", got.KeyID)
		assert.NotContains(t, out.String(), "permanent_code")
	})
	t.Run("GetTable", func(t *testing.T) {
		var out, errOut testlog.Buffer
		require.Equal(t, 0, run(ctx, []string{"corps", "get", "-config", path, "-app", "archive", "-corp", b.CorpID}, e(&out, &errOut)), errOut.String())
		rows := strings.Split(strings.TrimSpace(out.String()), "\n")
		require.Len(t, rows, 2)
		assert.Regexp(t, `^APP +CORP +NAME +STATE +SOURCE +AUTHORIZED +LAST_CHANGE +CHANGED +KEY$`, rows[0])
		assert.Contains(t, rows[1], b.CorpID)
	})
	t.Run("ErrUsage", func(t *testing.T) {
		for _, args := range [][]string{
			{"corps"}, {"corps", "nope"}, {"corps", "get", "-config", path, "-app", "archive"},
			{"corps", "get", "-config", path, "-app", "archive", "-corp", "wwNoSuch"},
			{"corps", "list", "-config", path, "-app", "nope"},
			{"corps", "remove", "-config", path, "-app", "archive", "-corp", "wwNoSuch"},
		} {
			var out, errOut testlog.Buffer
			assert.Equal(t, 2, run(ctx, args, e(&out, &errOut)), "%v: %s", args, errOut.String())
		}
	})
	t.Run("API", func(t *testing.T) {
		status, body := apiDo(t, m, http.MethodGet, "/api/corps", corpAPIToken, "")
		require.Equal(t, http.StatusOK, status, string(body))
		var list struct {
			Corps []app.CorpEntry `json:"corps"`
			Count int             `json:"count"`
		}
		require.NoError(t, json.Unmarshal(body, &list))
		assert.Equal(t, 2, list.Count)
		status, _ = apiDo(t, m, http.MethodGet, "/api/corps/archive/"+a.CorpID, corpAPIToken, "")
		assert.Equal(t, http.StatusOK, status)
		status, _ = apiDo(t, m, http.MethodGet, "/api/corps/archive/wwNoSuch", corpAPIToken, "")
		assert.Equal(t, http.StatusNotFound, status)
		status, _ = apiDo(t, m, http.MethodDelete, "/api/corps/archive/wwNoSuch", corpAPIToken, "")
		assert.Equal(t, http.StatusNotFound, status)
	})
	t.Run("Status", func(t *testing.T) {
		var out, errOut testlog.Buffer
		run(ctx, []string{"status", "-config", path, "-o", "json"}, e(&out, &errOut))
		var rep struct {
			Corps []struct {
				App    string `json:"app"`
				CorpID string `json:"corp_id"`
			} `json:"corps"`
		}
		require.NoError(t, json.Unmarshal([]byte(out.String()), &rep), out.String()+errOut.String())
		var ids []string
		for _, c := range rep.Corps {
			ids = append(ids, c.CorpID)
		}
		assert.ElementsMatch(t, []string{a.CorpID, b.CorpID}, ids, "status reports the registry's corps")
	})
	t.Run("RemoveCLI", func(t *testing.T) {
		var out, errOut testlog.Buffer
		require.Equal(t, 0, run(ctx, []string{"corps", "remove", "-config", path, "-app", "archive", "-corp", a.CorpID}, e(&out, &errOut)), errOut.String())
		serving(t, a.CorpID, false, r.receivers...)
		reg, err := corps.Bind(ctx, r.js, nil)
		require.NoError(t, err)
		_, err = reg.Get(ctx, "archive", a.CorpID)
		require.ErrorIs(t, err, corps.ErrNotFound, "the entry is erased")
		evs := onlyCancelled(t, r.js, a.CorpID)
		assert.Equal(t, "operator", evs[0].Cause)
	})
	t.Run("RemoveAPI", func(t *testing.T) {
		status, body := apiDo(t, m, http.MethodDelete, "/api/corps/archive/"+b.CorpID, corpAPIToken, "")
		require.Equal(t, http.StatusOK, status, string(body))
		serving(t, b.CorpID, false, r.receivers...)
		onlyCancelled(t, r.js, b.CorpID)
	})
	t.Run("Rekey", func(t *testing.T) {
		c := r.authorize(t)
		serving(t, c.CorpID, true, r.receivers...)
		// Step 1 of a rotation: a new current key, the old one kept.
		newKey := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
		rotated := strings.Replace(r.yaml("127.0.0.1:0"), "    k1: ${CORPS_KEY}\n  current_key: k1",
			"    k1: ${CORPS_KEY}\n    k2: ${CORPS_KEY2}\n  current_key: k2", 1)
		require.Contains(t, rotated, "current_key: k2")
		rpath := t.TempDir() + "/rotated.yaml"
		require.NoError(t, writeFile(rpath, rotated))
		var out, errOut testlog.Buffer
		re := cli.Env{LookupEnv: envOf(map[string]string{}, "CORPS_KEY", r.key, "CORPS_KEY2", newKey), Stdout: &out, Stderr: &errOut}
		require.Equal(t, 0, run(ctx, []string{"corps", "rekey", "-config", rpath}, re), errOut.String())
		assert.Contains(t, out.String(), "re-sealed 1 permanent codes under key k2")
		reg, err := corps.Bind(ctx, r.js, nil)
		require.NoError(t, err)
		got, err := reg.Get(ctx, "archive", c.CorpID)
		require.NoError(t, err)
		assert.Equal(t, "k2", got.KeyID())
		k2, err := corps.NewKeyringBase64(map[string]string{"k2": newKey}, "k2")
		require.NoError(t, err)
		only2, err := corps.Bind(ctx, r.js, k2)
		require.NoError(t, err)
		_, err = only2.PermanentCode(got)
		require.NoError(t, err, "opens with the new key alone")
	})
}

// TestCorps_ResetAndChangeAuth: reset_permanent_code exchanges again and
// the new code is the one used; change_auth re-reads the grant and keeps
// the corp served; an authorization callback without what it needs is a
// dead letter.
func TestCorps_ResetAndChangeAuth(t *testing.T) {
	r := startCorpRig(t)
	m := r.receivers[0]
	ctx := context.Background()
	a := r.authorize(t)
	serving(t, a.CorpID, true, r.receivers...)
	reg, err := corps.Bind(ctx, r.js, nil)
	require.NoError(t, err)
	get := func() corps.Corp {
		c, err := reg.Get(ctx, "archive", a.CorpID)
		require.NoError(t, err)
		return c
	}
	authorizedAt := get().AuthorizedAt

	t.Run("Reset", func(t *testing.T) {
		resp, err := http.Post(r.sim.URL()+"/_sim/corps/"+a.CorpID+"/reset", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		natstest.WaitFor(t, 15*time.Second, func() error {
			if c := get(); c.Source != corps.SourceReset {
				return fmt.Errorf("source %s", c.Source)
			}
			return nil
		})
		assert.Equal(t, 2, r.sim.Requests("get_permanent_code_v2"))
		assert.True(t, get().AuthorizedAt.Equal(authorizedAt), "a reset keeps the authorization time")
		// The old code no longer works at WeCom: a fresh token must come
		// from the new one.
		for _, rm := range r.receivers {
			require.NoError(t, rm.Clients()["archive"].ForgetCorp(ctx, a.CorpID))
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		require.NoError(t, m.Dispatch(cctx, hitCallback(a.CorpID)))
	})
	t.Run("ChangeAuth", func(t *testing.T) {
		before := r.sim.Requests("get_auth_info")
		require.NoError(t, m.Intake().Store(ctx, &wecomhit.Callback{
			ID: "change-1", App: "archive", Kind: wecomhit.KindChangeAuth, CorpID: a.CorpID,
			SuiteID: simSuite, EventTime: r.sim.Now().Unix(), ReceivedAt: time.Now(),
		}))
		natstest.WaitFor(t, 15*time.Second, func() error {
			if c := get(); c.LastChange != corps.CauseChangeAuth {
				return fmt.Errorf("last change %s", c.LastChange)
			}
			return nil
		})
		assert.Equal(t, before+1, r.sim.Requests("get_auth_info"))
		c := get()
		assert.Equal(t, corps.Active, c.State)
		assert.Equal(t, a.CorpName, c.CorpName)
		assert.True(t, m.CorpView().Dir.Has("archive", a.CorpID))
	})
	t.Run("ErrBadRecord", func(t *testing.T) {
		for kind, cb := range map[wecomhit.Kind]*wecomhit.Callback{
			wecomhit.KindCreateAuth:         {Kind: wecomhit.KindCreateAuth},
			wecomhit.KindCancelAuth:         {Kind: wecomhit.KindCancelAuth},
			wecomhit.KindChangeAuth:         {Kind: wecomhit.KindChangeAuth},
			wecomhit.KindResetPermanentCode: {Kind: wecomhit.KindResetPermanentCode, CorpID: a.CorpID},
		} {
			cb.App, cb.ID = "archive", "bad-"+string(kind)
			err := m.Dispatch(ctx, cb)
			require.ErrorIs(t, err, intake.ErrPermanent, "%s", kind)
		}
		assert.Equal(t, corps.Active, get().State, "nothing changed")
	})
}

// TestCorps_Seeds: corps in the file seed the registry and are served with
// their codes from it; restarting seeds nothing again; a hit of a corp the
// registry does not know yet is retried, not a dead letter.
func TestCorps_Seeds(t *testing.T) {
	r := startCorpRigSeeded(t, true)
	ctx := context.Background()
	serving(t, simCorp, true, r.receivers...)
	reg, err := corps.Bind(ctx, r.js, nil)
	require.NoError(t, err)
	c, err := reg.Get(ctx, "archive", simCorp)
	require.NoError(t, err)
	assert.Equal(t, corps.SourceConfig, c.Source)
	assert.Equal(t, "k1", c.KeyID())
	rev := c.Revision

	m := r.receivers[0]
	wecomtest.CreateDemoRules(ctx, t, m.Clients()["archive"], simCorp)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, m.Dispatch(cctx, hitCallback(simCorp)))

	err = m.Dispatch(ctx, hitCallback("wwNotYetAuthorized"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, intake.ErrPermanent, "retried: its create_auth may be on its way")
	// The ticket branch (wecom.TicketStore.HandleCallback): a ticket
	// callback that carries no ticket is a dead letter at once.
	err = m.Dispatch(ctx, &wecomhit.Callback{App: "archive", Kind: wecomhit.KindSuiteTicket, SuiteID: "wwArchiveSuite01"})
	assert.ErrorIs(t, err, intake.ErrPermanent)

	// A restart with the same file writes nothing. (The replicas stop
	// first: a stream update while another client creates a consumer
	// trips a data race inside nats-server's file store under -race.)
	for _, m := range r.receivers {
		r.stop(t, m)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r.start(t, lis)
	c, err = reg.Get(ctx, "archive", simCorp)
	require.NoError(t, err)
	assert.Equal(t, rev, c.Revision, "seeding again wrote nothing")
	natstest.WaitFor(t, 10*time.Second, func() error {
		if evs := corpEvents(t, r.js, simCorp); len(evs) != 1 {
			return fmt.Errorf("%d lifecycle events", len(evs))
		}
		return nil
	})
	evs := corpEvents(t, r.js, simCorp)
	assert.Equal(t, wecomhit.CorpAuthorized, evs[0].Type)
	assert.Equal(t, "config", evs[0].Cause)
}
