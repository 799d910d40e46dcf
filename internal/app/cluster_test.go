package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
	"github.com/wecomhit/wecomhit/internal/wecomtest"
)

// cluster is what docs/deploy.md describes, on 127.0.0.1: a three-node NATS
// cluster, two receivers with nats.replicas 3 and no embedded server, and a
// load balancer in front of them that the simulated WeCom calls back.
type cluster struct {
	nats      []*server.Server
	receivers []*app.Main
	lb        *roundRobin
	sim       *wecomsim.Sim
	js        jetstream.JetStream // the test's own client, for reading WECOM_HITS
}

// roundRobin is the load balancer: each request goes to the next receiver,
// so consecutive callbacks land on different replicas.
type roundRobin struct {
	backends []*httputil.ReverseProxy
	next     atomic.Uint64
	served   []atomic.Int64 // requests per backend
}

func newRoundRobin(t testing.TB, addrs ...string) *roundRobin {
	t.Helper()
	lb := &roundRobin{served: make([]atomic.Int64, len(addrs))}
	for _, a := range addrs {
		u, err := url.Parse("http://" + a)
		require.NoError(t, err)
		p := httputil.NewSingleHostReverseProxy(u)
		// A receiver that is down answers 502, as a real balancer would;
		// the standard logger would print every such request.
		p.ErrorLog = log.New(io.Discard, "", 0)
		lb.backends = append(lb.backends, p)
	}
	return lb
}

func (lb *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int((lb.next.Add(1) - 1) % uint64(len(lb.backends)))
	lb.served[i].Add(1)
	lb.backends[i].ServeHTTP(w, r)
}

// startCluster starts the NATS cluster, the receivers, the load balancer and
// the simulator, and creates the archive corp's rules through a receiver's
// client, as an operator would.
func startCluster(t testing.TB, receivers int) *cluster {
	t.Helper()
	c := &cluster{nats: natstest.RunCluster(t, 3)}
	urls := natstest.ClientURLs(c.nats...)
	_, c.js = natstest.ConnectURL(t, urls)

	// Everyone must know someone else's address before starting: bind the
	// receivers' ports and keep them (a reserved-then-closed port can be
	// taken by another process), put the load balancer in front of them,
	// start the simulator calling the balancer, then open the receivers with
	// the simulator's address. Callbacks sent meanwhile wait in the
	// receivers' listen backlogs.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listeners := make([]net.Listener, receivers)
	addrs := make([]string, receivers)
	for i := range receivers {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		listeners[i], addrs[i] = lis, lis.Addr().String()
	}
	c.lb = newRoundRobin(t, addrs...)
	front := httptest.NewServer(c.lb)
	t.Cleanup(front.Close)

	var err error
	c.sim, err = wecomsim.New(wecomsim.Options{
		Seed: 23, MessageRate: -1,
		Archive: wecomsim.Archive{
			SuiteID: simSuite, SuiteSecret: "suite-secret",
			Corps: []wecomsim.Corp{{CorpID: simCorp, PermanentCode: "perm-code"}},
			Token: testvectors.V1.Token, EncodingAESKey: testvectors.V1.EncodingAESKey,
			CallbackURL: front.URL + "/callback/archive",
		},
	}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, c.sim.Start(ctx, "127.0.0.1:0"))

	// lease_ttl is short so that leases are renewed every 1.2 s: renewals
	// run into the elections that follow a node's loss, as they would in
	// production with the 10 s default, only more often.
	for i := range receivers {
		cfg, err := config.Parse(fmt.Appendf(nil, `
allow_sample_secrets: true # the official vectors, against the simulator
http: {listen: %q}
admin: {listen: "127.0.0.1:0"}
nats: {url: %q, replicas: 3, connect_timeout: 10s}
fetch: {poll_interval: 0s, page_size: 300, lease_ttl: 6s}
log: {level: warn}
apps:
  - name: archive
    mode: archive
    token: %s
    encoding_aes_key: %s
    api_base_url: %s
    suite_id: %s
    suite_secret: suite-secret
    corps: [{corp_id: %s, permanent_code: perm-code}]
`, addrs[i], urls, testvectors.V1.Token, testvectors.V1.EncodingAESKey, c.sim.URL(), simSuite, simCorp),
			t.TempDir(), noEnv)
		require.NoError(t, err)
		// Warnings and errors are kept and shown if the test fails: they say
		// what a replica went through while a node was down.
		var logs testlog.Buffer
		name := fmt.Sprintf("receiver-%d", i+1)
		m := app.NewMain(cfg, zerolog.New(&logs).Level(zerolog.WarnLevel).With().Timestamp().Str("replica", name).Logger())
		m.UseListener(listeners[i])
		require.NoError(t, m.Open(ctx), name)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			assert.NoError(t, m.Close(ctx), name)
			if t.Failed() {
				t.Logf("%s log:\n%s", name, logs.String())
			}
		})
		c.receivers = append(c.receivers, m)
	}
	// Registered after the receivers' cleanups, so it runs before them: no
	// callback arrives at a receiver that is shutting down.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.sim.Close(ctx)
	})

	// The suite_ticket went through the load balancer to one replica, was
	// stored, and reached the token store that every replica shares.
	m := c.receivers[0]
	natstest.WaitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := m.Stores().Tickets.Get(ctx, simSuite)
		return err
	})
	wecomtest.CreateDemoRules(ctx, t, m.Clients()["archive"], simCorp)
	return c
}

// traffic sends n messages and moves the simulated clock past the hit
// callback coalescing interval, so the next round gets its own callback.
func (c *cluster) traffic(t testing.TB, n int) {
	t.Helper()
	_, err := c.sim.GenerateMessages(simCorp, n)
	require.NoError(t, err)
	c.sim.Advance(6 * time.Second)
}

// hitIDs is the simulator's ground truth as Nats-Msg-Ids.
func (c *cluster) hitIDs() map[string]bool {
	ids := map[string]bool{}
	for _, h := range c.sim.Hits() {
		ids[publish.MsgID(h.CorpID, h.MsgID, h.RuleID)] = true
	}
	return ids
}

// storedHits reads every event in WECOM_HITS and counts each Nats-Msg-Id,
// once the stream holds at least atLeast events (so that polling is cheap
// until then). Unlike eventIDs it returns errors instead of failing, for
// polling through a leader election, when reads fail for a few seconds.
func storedHits(js jetstream.JetStream, atLeast int) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, publish.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if n := int(info.State.Msgs); n < atLeast {
		return nil, fmt.Errorf("%d of %d hits published", n, atLeast)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{InactiveThreshold: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	// Ordered consumers are ephemeral; delete this one now rather than
	// leave one per attempt for the server to expire.
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			_ = s.DeleteConsumer(context.Background(), ci.Name)
		}
	}()
	batch, err := cons.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(4*time.Second))
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for msg := range batch.Messages() {
		var ev wecomhit.HitEvent
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			return nil, fmt.Errorf("event %d: %w", len(counts), err)
		}
		counts[msg.Headers().Get(jetstream.MsgIDHeader)]++
	}
	if err := batch.Error(); err != nil {
		return nil, err
	}
	if n := sum(counts); n != int(info.State.Msgs) {
		return nil, fmt.Errorf("read %d of %d events", n, info.State.Msgs)
	}
	return counts, nil
}

func sum(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// requireExactHits waits until WECOM_HITS holds as many distinct events as
// the simulator has hits, then requires exactly that set, each event once.
func (c *cluster) requireExactHits(t testing.TB, timeout time.Duration) {
	t.Helper()
	want := c.hitIDs()
	var counts map[string]int
	natstest.WaitFor(t, timeout, func() error {
		var err error
		if counts, err = storedHits(c.js, len(want)); err != nil {
			return err
		}
		if len(counts) < len(want) {
			return fmt.Errorf("%d of %d distinct hits published", len(counts), len(want))
		}
		return nil
	})
	var missing, extra, repeated []string
	for id := range want {
		if counts[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range counts {
		if !want[id] {
			extra = append(extra, id)
		}
		if n > 1 {
			repeated = append(repeated, fmt.Sprintf("%s×%d", id, n))
		}
	}
	assert.Empty(t, missing, "hits WeCom reported that are not in WECOM_HITS")
	assert.Empty(t, extra, "events WeCom did not report")
	assert.Empty(t, repeated, "events stored more than once")
	require.Equal(t, len(want), sum(counts), "WECOM_HITS holds each hit exactly once")
}

// TestCluster_TwoReceivers: two receivers share a three-node cluster behind
// a load balancer; WeCom's callbacks land on both, and WECOM_HITS holds
// exactly the simulator's hits, once each.
func TestCluster_TwoReceivers(t *testing.T) {
	c := startCluster(t, 2)
	for range 4 {
		c.traffic(t, 400)
	}
	require.Greater(t, len(c.hitIDs()), 300)
	c.requireExactHits(t, 60*time.Second)

	for i := range c.lb.served {
		assert.Positive(t, c.lb.served[i].Load(), "receiver-%d took callbacks", i+1)
	}
	s, err := c.js.Stream(t.Context(), publish.StreamName)
	require.NoError(t, err)
	info := s.CachedInfo()
	assert.Equal(t, 3, info.Config.Replicas)
	t.Logf("%d events, %d bytes per event", info.State.Msgs, info.State.Bytes/max(info.State.Msgs, 1))
}

// TestCluster_NodeLoss: the NATS node leading WECOM_HITS is shut down while
// callbacks and fetches are under way. The two survivors keep a majority;
// the receivers reconnect to them and nothing is lost or stored twice.
func TestCluster_NodeLoss(t *testing.T) {
	c := startCluster(t, 2)
	c.traffic(t, 400)
	c.traffic(t, 400)

	// The worst node to lose: the one every hit write goes through. Its
	// streams and consumers elect new leaders among the other two.
	var victim *server.Server
	natstest.WaitFor(t, 10*time.Second, func() error {
		for _, s := range c.nats {
			if s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, publish.StreamName) {
				victim = s
				return nil
			}
		}
		return fmt.Errorf("no leader for %s", publish.StreamName)
	})
	t.Logf("shutting down %s (meta leader: %v)", victim.Name(), victim.JetStreamIsLeader())
	killed := time.Now()
	victim.Shutdown()
	victim.WaitForShutdown()

	for range 4 {
		c.traffic(t, 400)
	}
	// Usually a few seconds. A page whose PubAcks were owed by the lost
	// leader fails after the broker's 5 s async-ack bound and is fetched
	// again; the deadline leaves room for that on a loaded machine.
	c.requireExactHits(t, 45*time.Second)
	took := time.Since(killed)
	t.Logf("every hit stored %s after the shutdown; hit callbacks: %+v",
		took.Round(100*time.Millisecond), c.sim.CallbackStats()[wecomsim.CallbackHitKeyword])
	if took > 30*time.Second {
		t.Logf("slow recovery: a fetch waited long for PubAcks from the shut-down stream leader")
	}
}

// TestClusterConfig_CheckConfig: the shipped cluster configuration passes
// check-config once the environment variables docs/deploy.md lists are set,
// and names each one that is missing.
func TestClusterConfig_CheckConfig(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "receiver.cluster.yaml")
	vars := map[string]string{
		"NATS_RECEIVER_PASSWORD":       "9f86d081884c7d659a2feaa0c55ad015",
		"WECOM_ARCHIVE_SUITE_ID":       "wwArchiveSuite01",
		"WECOM_ARCHIVE_CORP_ID":        "wwCorpABC123",
		"WECOM_ARCHIVE_TOKEN":          exampleEnv["WECOM_ARCHIVE_TOKEN"],
		"WECOM_ARCHIVE_AES_KEY":        exampleEnv["WECOM_ARCHIVE_AES_KEY"],
		"WECOM_ARCHIVE_SUITE_SECRET":   "suite-secret",
		"WECOM_ARCHIVE_PERMANENT_CODE": "perm-code",
	}
	lookup := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			v, ok := vars[k]
			return v, ok
		}
	}

	t.Run("OK", func(t *testing.T) {
		var stdout, stderr testlog.Buffer
		code := run(t.Context(), []string{"check-config", "-config", path},
			cli.Env{LookupEnv: lookup(vars), Stdout: &stdout, Stderr: &stderr})
		require.Equal(t, 0, code, stderr.String())
		assert.Contains(t, stdout.String(), "OK (1 app: archive; nats: external, 3 URLs)")

		cfg, err := config.LoadEnv(path, lookup(vars))
		require.NoError(t, err)
		assert.Equal(t, 3, cfg.NATS.Replicas)
		assert.Equal(t, "0.0.0.0:8080", cfg.HTTP.Listen)
		assert.Equal(t, 20*time.Second, cfg.HTTP.ShutdownTimeout)
		for _, u := range cfg.NATS.URLs() {
			p, err := url.Parse(u)
			require.NoError(t, err)
			pw, _ := p.User.Password()
			assert.Equal(t, vars["NATS_RECEIVER_PASSWORD"], pw, "each URL carries the password from the environment")
		}
	})

	// Secrets and per-installation ids come from the environment without a
	// default to fall back on: an unset one stops the receiver at start-up.
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		t.Run("ErrMissing_"+k, func(t *testing.T) {
			partial := map[string]string{}
			for kk, v := range vars {
				if kk != k {
					partial[kk] = v
				}
			}
			var stdout, stderr testlog.Buffer
			code := run(t.Context(), []string{"check-config", "-config", path},
				cli.Env{LookupEnv: lookup(partial), Stdout: &stdout, Stderr: &stderr})
			require.Equal(t, 1, code)
			assert.Contains(t, stderr.String(), k)
			for _, v := range partial {
				assert.NotContains(t, stderr.String(), v, "no value is echoed")
			}
		})
	}
}

// TestClusterConfig_NATS: the three nats-server files parse (nats-server's
// own parser, as `nats-server -t` would) and describe one cluster: distinct
// names, the same cluster name, routes to all three, JetStream on, and the
// WECOM account the receiver logs into.
func TestClusterConfig_NATS(t *testing.T) {
	for k, v := range map[string]string{
		"NATS_RECEIVER_PASSWORD": "receiver-pw",
		"NATS_CONSUMER_PASSWORD": "consumer-pw",
		"NATS_OPERATOR_PASSWORD": "operator-pw",
		"NATS_SYS_PASSWORD":      "sys-pw",
	} {
		t.Setenv(k, v)
	}
	names := map[string]bool{}
	for _, f := range []string{"n1.conf", "n2.conf", "n3.conf"} {
		t.Run(f, func(t *testing.T) {
			path := filepath.Join("..", "..", "configs", "nats-cluster", f)
			_, err := os.Stat(path)
			require.NoError(t, err)
			o, err := server.ProcessConfigFile(path)
			require.NoError(t, err)
			assert.NotEmpty(t, o.ServerName)
			assert.False(t, names[o.ServerName], "server_name is unique")
			names[o.ServerName] = true
			assert.True(t, o.JetStream)
			assert.NotEmpty(t, o.StoreDir)
			assert.Positive(t, o.JetStreamMaxStore)
			assert.Equal(t, "wecom", o.Cluster.Name)
			assert.Equal(t, 6222, o.Cluster.Port)
			assert.Len(t, o.Routes, 3, "routes name every node, itself included")
			assert.Equal(t, "SYS", o.SystemAccount)
			var wecomAcc *server.Account
			for _, a := range o.Accounts {
				if a.Name == "WECOM" {
					wecomAcc = a
				}
			}
			require.NotNil(t, wecomAcc, "account WECOM")
			users := map[string]string{}
			for _, u := range o.Users {
				if u.Account != nil {
					users[u.Username] = u.Account.Name
				}
			}
			assert.Equal(t, "WECOM", users["receiver"])
			assert.Equal(t, "WECOM", users["operator"])
			assert.Equal(t, app.ConsumerAccount, users["consumer"])
			assert.Equal(t, "SYS", users["sys"])
			// The cluster's roles are the embedded server's, for the prefix
			// the cluster's receiver config uses.
			perms := map[string]*server.Permissions{}
			for _, u := range o.Users {
				perms[u.Username] = u.Permissions
			}
			assert.Nil(t, perms["receiver"], "the receiver has the whole account")
			assertSamePermissions(t, app.ConsumerPermissions("wecom"), perms["consumer"], "consumer")
			assertSamePermissions(t, app.OperatorPermissions("wecom"), perms["operator"], "operator")
			assert.True(t, strings.HasPrefix(o.Host, "0.0.0.0") || o.Host == "", "clients from other hosts")
			assertSameAccount(t, path, app.ConsumerAccountOf("wecom"))
		})
	}
	t.Run("Run", testClusterConfigAccounts)
}

// assertSameAccount compares what the .conf file at path has WECOM export
// and acc import with acc, ignoring order.
func assertSameAccount(t *testing.T, path string, acc *broker.Account) {
	t.Helper()
	m, err := conf.ParseFile(path)
	require.NoError(t, err)
	accounts, _ := m["accounts"].(map[string]any)
	list := func(account, key string) []map[string]any {
		a, _ := accounts[account].(map[string]any)
		var out []map[string]any
		items, _ := a[key].([]any)
		for _, it := range items {
			out = append(out, it.(map[string]any))
		}
		return out
	}
	var wantExp, gotExp, wantImp, gotImp []string
	for _, sv := range acc.Services {
		rt := "singleton"
		if sv.Streamed {
			rt = "stream"
		}
		as := sv.As
		if as == "" {
			as = sv.Subject
		}
		wantExp = append(wantExp, "service "+sv.Subject+" "+rt+" ["+acc.Name+"]")
		wantImp = append(wantImp, "service WECOM "+sv.Subject+" as "+as)
	}
	for _, subj := range acc.Streams {
		wantExp = append(wantExp, "stream "+subj+" ["+acc.Name+"]")
		wantImp = append(wantImp, "stream WECOM "+subj)
	}
	for _, e := range list("WECOM", "exports") {
		var to []string
		for _, a := range e["accounts"].([]any) {
			to = append(to, a.(string))
		}
		if subj, ok := e["service"].(string); ok {
			rt, _ := e["response_type"].(string)
			if rt == "" {
				rt = "singleton"
			}
			gotExp = append(gotExp, fmt.Sprintf("service %s %s [%s]", subj, rt, strings.Join(to, " ")))
		} else {
			gotExp = append(gotExp, fmt.Sprintf("stream %s [%s]", e["stream"], strings.Join(to, " ")))
		}
	}
	for _, i := range list(acc.Name, "imports") {
		if sv, ok := i["service"].(map[string]any); ok {
			as, _ := i["to"].(string)
			if as == "" {
				as = sv["subject"].(string)
			}
			gotImp = append(gotImp, fmt.Sprintf("service %s %s as %s", sv["account"], sv["subject"], as))
		} else {
			st := i["stream"].(map[string]any)
			gotImp = append(gotImp, fmt.Sprintf("stream %s %s", st["account"], st["subject"]))
		}
	}
	slices.Sort(wantExp)
	slices.Sort(gotExp)
	slices.Sort(wantImp)
	slices.Sort(gotImp)
	assert.Equal(t, wantExp, gotExp, "WECOM exports")
	assert.Equal(t, wantImp, gotImp, "%s imports", acc.Name)
}

// testClusterConfigAccounts runs n1.conf's accounts on one standalone
// server: a consumer reads WECOM_HITS through the API prefix, and the
// answers to its requests do not reach the receivers' streams.
func testClusterConfigAccounts(t *testing.T) {
	o, err := server.ProcessConfigFile(filepath.Join("..", "..", "configs", "nats-cluster", "n1.conf"))
	require.NoError(t, err)
	o.Cluster, o.Routes, o.RoutesStr = server.ClusterOpts{}, nil, ""
	o.Host, o.Port, o.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
	o.StoreDir, o.JetStreamMaxStore, o.JetStreamUniqueTag, o.Tags = t.TempDir(), 256<<20, "", nil
	o.NoLog, o.NoSigs = true, true
	srv, err := server.NewServer(o)
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	rc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("receiver", "receiver-pw"))
	require.NoError(t, err)
	defer rc.Close()
	rjs, err := jetstream.New(rc)
	require.NoError(t, err)
	_, err = rjs.CreateStream(ctx, jetstream.StreamConfig{Name: publish.StreamName, Subjects: []string{"wecom.hit.>"}})
	require.NoError(t, err)
	callbacks, err := rjs.CreateStream(ctx, jetstream.StreamConfig{Name: intake.StreamName, Subjects: []string{"wecom.callback.>"}})
	require.NoError(t, err)
	cc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("consumer", "consumer-pw"))
	require.NoError(t, err)
	defer cc.Close()
	live, err := cc.SubscribeSync("wecom.hit.>")
	require.NoError(t, err)
	require.NoError(t, cc.Flush())
	_, err = rjs.Publish(ctx, "wecom.hit.c.m.r", []byte(`{}`))
	require.NoError(t, err)
	_, err = live.NextMsg(5 * time.Second)
	require.NoError(t, err, "a plain subscription gets hit events")
	cjs, err := jetstream.NewWithAPIPrefix(cc, app.ConsumerAPIPrefix)
	require.NoError(t, err)
	cons, err := cjs.CreateOrUpdateConsumer(ctx, publish.StreamName, jetstream.ConsumerConfig{Durable: "team", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	n := 0
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(ctx))
		n++
	}
	require.NoError(t, batch.Error())
	assert.Equal(t, 1, n)

	// Corp lifecycle events the same way, from their own stream.
	_, err = rjs.CreateStream(ctx, jetstream.StreamConfig{Name: publish.CorpStreamName, Subjects: []string{"wecom.corp.>"}})
	require.NoError(t, err)
	_, err = rjs.Publish(ctx, "wecom.corp.c.cancelled", []byte(`{}`))
	require.NoError(t, err)
	ccons, err := cjs.CreateOrUpdateConsumer(ctx, publish.CorpStreamName, jetstream.ConsumerConfig{Durable: "team", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	cm, err := ccons.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(t, err)
	assert.Equal(t, "wecom.corp.c.cancelled", cm.Subject())
	require.NoError(t, cm.DoubleAck(ctx))

	require.NoError(t, cc.PublishRequest(app.ConsumerAPIPrefix+".STREAM.INFO."+publish.StreamName, "wecom.callback.archive.hit_keyword", nil))
	_, err = cjs.Stream(ctx, publish.StreamName) // answered after the one above
	require.NoError(t, err)
	info, err := callbacks.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.State.Msgs, "no answer stored in %s", intake.StreamName)
}

// assertSamePermissions compares two users' permissions, ignoring order.
func assertSamePermissions(t *testing.T, want, got *server.Permissions, user string) {
	t.Helper()
	require.NotNil(t, got, user)
	norm := func(p *server.SubjectPermission) [2][]string {
		if p == nil {
			return [2][]string{}
		}
		return [2][]string{slices.Sorted(slices.Values(p.Allow)), slices.Sorted(slices.Values(p.Deny))}
	}
	assert.Equal(t, norm(want.Publish), norm(got.Publish), "%s: publish", user)
	assert.Equal(t, norm(want.Subscribe), norm(got.Subscribe), "%s: subscribe", user)
	assert.Equal(t, want.Response, got.Response, "%s: responses", user)
}
