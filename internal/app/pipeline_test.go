package app_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
	"github.com/wecomhit/wecomhit/internal/wecom"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
	"github.com/wecomhit/wecomhit/internal/wecomtest"
)

const (
	simSuite = "wwArchiveSuite01"
	simCorp  = "wwCorpABC123"
	zoneCorp = "wwZoneCorp456"
	// testAdminToken is the admin API's bearer token in startSystem.
	testAdminToken = "test-admin-token-0123456789"
)

func writeFile(path, text string) error { return os.WriteFile(path, []byte(text), 0o600) }

// opsConfig writes a config for operator commands (one app, so -app may be
// left out) that reach the running test system's NATS over TCP and the
// simulator, plus extra YAML. Like an operator on the receiver's host, it
// names the embedded server's store dir and listener, and so the commands
// find the operator credentials there without flags.
func opsConfig(t *testing.T, s *system, extra string) string {
	t.Helper()
	natsURL := s.m.Broker().ClientURL()
	require.NotEmpty(t, natsURL, "the test receiver listens for local consumers")
	path := t.TempDir() + "/ops.yaml"
	require.NoError(t, writeFile(path, fmt.Sprintf(`
allow_sample_secrets: true # the official vectors, against the simulator
nats: {store_dir: %q, listen: %q}
%s
apps:
  - name: archive
    mode: archive
    token: %s
    encoding_aes_key: %s
    api_base_url: %s
    suite_id: %s
    suite_secret: suite-secret
    corps: [{corp_id: %s, permanent_code: perm-code}]
`, s.m.Cfg().NATS.StoreDir, strings.TrimPrefix(natsURL, "nats://"), extra, testvectors.V1.Token, testvectors.V1.EncodingAESKey, s.m.Cfg().Apps[0].APIBaseURL, simSuite, simCorp)))
	return path
}

// system is a receiver wired to a simulated WeCom that calls it back.
type system struct {
	m    *app.Main
	sim  *wecomsim.Sim
	cfg  *config.Config
	port int // the receiver's callback port, which the simulator calls
}

func startSystem(t testing.TB, pollInterval string) *system {
	t.Helper()
	return startSystemWith(t, systemOptions{pollInterval: pollInterval})
}

// startSystemNATS is startSystem with more nats: settings (", key: value"
// pairs for the flow mapping) and, unless "", the store in storeDir.
func startSystemNATS(t testing.TB, pollInterval, natsExtra, storeDir string) *system {
	t.Helper()
	return startSystemWith(t, systemOptions{pollInterval: pollInterval, natsExtra: natsExtra, storeDir: storeDir})
}

// systemOptions vary startSystem's setup.
type systemOptions struct {
	pollInterval string
	// natsExtra are more nats: settings, ", key: value" pairs for the flow
	// mapping; storeDir, unless "", is where the store goes.
	natsExtra, storeDir string
	// simCorps are archive corps the simulator has besides simCorp, which
	// the receiver's configuration does not name.
	simCorps []wecomsim.Corp
	// hitTokenTTL is the simulator's hit-token lifetime; 0 takes its default.
	hitTokenTTL time.Duration
}

func startSystemWith(t testing.TB, o systemOptions) *system {
	t.Helper()
	pollInterval, natsExtra, storeDir := o.pollInterval, o.natsExtra, o.storeDir
	// Bind the receiver's port first and keep it: the simulator must know
	// it, and a reserved-then-closed port can be taken by another process.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := lis.Addr().(*net.TCPAddr).Port
	sim, err := wecomsim.New(wecomsim.Options{
		Seed: 11, MessageRate: -1, HitTokenTTL: o.hitTokenTTL,
		Archive: wecomsim.Archive{
			SuiteID: simSuite, SuiteSecret: "suite-secret",
			Corps: append([]wecomsim.Corp{{CorpID: simCorp, PermanentCode: "perm-code"}}, o.simCorps...),
			Token: testvectors.V1.Token, EncodingAESKey: testvectors.V1.EncodingAESKey,
			CallbackURL: "http://127.0.0.1:" + strconv.Itoa(port) + "/callback/archive",
		},
		Zone: wecomsim.Zone{
			CorpID: zoneCorp, CorpSecret: "zone-secret", ProgramID: "prog-1",
			Token: testvectors.V2.Token, EncodingAESKey: testvectors.V2.EncodingAESKey,
			CallbackURL: "http://127.0.0.1:" + strconv.Itoa(port) + "/callback/zone",
		},
	}, zerolog.Nop())
	require.NoError(t, err)

	yaml := fmt.Sprintf(`
allow_sample_secrets: true # the official vectors, against the simulator
http: {listen: "127.0.0.1:%d"}
admin: {listen: "127.0.0.1:0", token: `+testAdminToken+`}
nats: {store_dir: nats, listen: "127.0.0.1:0"%s}
fetch: {poll_interval: %s, page_size: 500, tokenless_per_minute: 100}
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
  - name: zone
    mode: zone
    token: %s
    encoding_aes_key: %s
    api_base_url: http://127.0.0.1:1
    corp_id: %s
    corp_secret: zone-secret
    program_id: prog-1
`, port, natsExtra, pollInterval, testvectors.V1.Token, testvectors.V1.EncodingAESKey, "http://127.0.0.1:1", simSuite, simCorp,
		testvectors.V2.Token, testvectors.V2.EncodingAESKey, zoneCorp)
	cfg, err := config.Parse([]byte(yaml), t.TempDir(), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	// The zone corp's rules are seeded directly; the archive corp's are
	// created below through the client, over HTTP.
	for _, r := range wecomsim.DemoRules() {
		_, err := sim.AddRule(zoneCorp, r.Name, r.Words, r.Semantics)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The simulator starts first, on a port of its own choosing. Its first
	// suite_ticket waits in the receiver's listen backlog until Open serves.
	require.NoError(t, sim.Start(ctx, "127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Close(ctx)
	})
	if storeDir != "" {
		cfg.NATS.StoreDir = storeDir
	}
	cfg.Apps[0].APIBaseURL = sim.URL()
	cfg.Apps[1].APIBaseURL = sim.URL()
	m := app.NewMain(cfg, zerolog.Nop())
	m.UseListener(lis)
	require.NoError(t, m.Open(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	// The suite_ticket callback must have reached the token source.
	natstest.WaitFor(t, 10*time.Second, func() error {
		if _, err := m.Stores().Tickets.Get(context.Background(), simSuite); err != nil {
			return err
		}
		return nil
	})
	c := m.Clients()["archive"]
	wecomtest.CreateDemoRules(ctx, t, c, simCorp)
	return &system{m: m, sim: sim, cfg: cfg, port: port}
}

// restart stops the receiver and starts a new one on the same callback port
// and NATS store, with the configuration as change leaves it: a restart
// with a new configuration.
func (s *system) restart(t testing.TB, change func(*config.Config)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, s.m.Close(ctx))
	cfg := *s.cfg
	cfg.Apps = slices.Clone(s.cfg.Apps)
	change(&cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.port))
	require.NoError(t, err)
	m := app.NewMain(&cfg, zerolog.Nop())
	m.UseListener(lis)
	require.NoError(t, m.Open(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	s.m, s.cfg = m, &cfg
}

// hitIDs is the ground truth as Nats-Msg-Ids, of one corp or (none) all.
func (s *system) hitIDs(corps ...string) map[string]bool {
	ids := map[string]bool{}
	for _, h := range s.sim.Hits() {
		if len(corps) == 0 || slices.Contains(corps, h.CorpID) {
			ids[publish.MsgID(h.CorpID, h.MsgID, h.RuleID)] = true
		}
	}
	return ids
}

// TestPipeline_EndToEnd: WeCom's callbacks, signed and encrypted, reach the
// receiver over HTTP; it fetches with their tokens and publishes; the stream
// holds exactly the simulator's hits, once each, with rule names.
func TestPipeline_EndToEnd(t *testing.T) {
	s := startSystem(t, "0s")
	js := s.m.Broker().JetStream()
	for range 3 {
		_, err := s.sim.GenerateMessages(simCorp, 700)
		require.NoError(t, err)
		s.sim.Advance(6 * time.Second) // past the callback coalescing interval
	}
	want := s.hitIDs()
	require.Greater(t, len(want), 500)
	var counts map[string]int
	var events map[string]wecomhit.HitEvent
	natstest.WaitFor(t, 30*time.Second, func() error {
		counts, events = hittest.Stored(t, js)
		if len(counts) < len(want) {
			return fmt.Errorf("%d of %d hits published", len(counts), len(want))
		}
		return nil
	})
	for id := range want {
		require.Equal(t, 1, counts[id], "hit %s", id)
	}
	require.Len(t, counts, len(want), "no event WeCom did not report")
	// The first seconds after start included: the rules were created behind
	// the receiver's back, and the first pages waited for their names.
	names := ruleNames(t, s)
	for id, ev := range events {
		require.Equal(t, wecomhit.SourceCallback, ev.Source)
		require.Equal(t, names[ev.RuleID], ev.RuleName, "event %s carries its rule's name", id)
		require.True(t, ev.UsedHitToken, "fetched with the callbacks' tokens")
	}
	require.Positive(t, s.sim.CallbackStats()[wecomsim.CallbackHitKeyword].Delivered)
	require.Equal(t, len(want), requireContract(t, js))
}

// TestPipeline_Zone: a zone program's program_notify reaches the receiver,
// which fetches through sync_call_program with the notify id; the stream
// holds exactly the zone corp's hits.
func TestPipeline_Zone(t *testing.T) {
	s := startSystem(t, "0s")
	js := s.m.Broker().JetStream()
	for range 2 {
		_, err := s.sim.GenerateMessages(zoneCorp, 500)
		require.NoError(t, err)
		s.sim.Advance(6 * time.Second)
	}
	want := s.hitIDs(zoneCorp)
	require.NotEmpty(t, want)
	var counts map[string]int
	var events map[string]wecomhit.HitEvent
	natstest.WaitFor(t, 30*time.Second, func() error {
		counts, events = hittest.Stored(t, js)
		if len(counts) < len(want) {
			return fmt.Errorf("%d of %d hits published", len(counts), len(want))
		}
		return nil
	})
	require.Len(t, counts, len(want))
	for id := range want {
		require.Equal(t, 1, counts[id], id)
		require.Equal(t, "zone", events[id].App)
		require.Equal(t, wecomhit.SourceCallback, events[id].Source, "started by program_notify")
		require.True(t, events[id].UsedHitToken, "fetched with the notify id")
	}
	require.Equal(t, len(counts), requireContract(t, js))
	require.Positive(t, s.sim.Requests("sync_call_program"))
	require.Positive(t, s.sim.CallbackStats()[wecomsim.CallbackProgramNotify].Delivered)
}

// TestPipeline_DroppedCallbacksPoll: every hit callback is lost; the
// token-less poll still brings every hit.
func TestPipeline_DroppedCallbacksPoll(t *testing.T) {
	s := startSystem(t, "1m")
	require.NoError(t, s.sim.SetFaults(wecomsim.Fault{Kind: wecomsim.FaultDropCallback, API: wecomsim.CallbackHitKeyword}))
	_, err := s.sim.GenerateMessages(simCorp, 600)
	require.NoError(t, err)
	s.sim.Advance(6 * time.Second)
	want := s.hitIDs()
	js := s.m.Broker().JetStream()
	natstest.WaitFor(t, 30*time.Second, func() error {
		s.m.Fetcher().Poll() // what the 1m ticker would do, without waiting a minute
		counts, _ := hittest.Stored(t, js)
		if len(counts) < len(want) {
			return fmt.Errorf("%d of %d", len(counts), len(want))
		}
		return nil
	})
	counts, events := hittest.Stored(t, js)
	require.Len(t, counts, len(want))
	for id := range want {
		require.Equal(t, 1, counts[id])
		require.Equal(t, wecomhit.SourcePoll, events[id].Source)
		require.False(t, events[id].UsedHitToken, "no callback, no token")
	}
	require.Equal(t, len(want), requireContract(t, js))
	require.Zero(t, s.sim.CallbackStats()[wecomsim.CallbackHitKeyword].Delivered)
}

// BenchmarkPipeline measures, per iteration of 1000 simulated messages,
// the receiver's hit pipeline from WeCom's hit callback to the last acked
// event: hits/s over the timed windows only, and the latency to the first
// event a plain subscriber sees.
//
// The timed window starts when the simulator sends the coalesced hit
// callback and ends when the subscriber has seen every hit of the batch,
// signalled, not polled. Generating and matching the messages (the
// simulator's own cost, reported as sim-gen-ms/op) and counting the
// expected hits happen with the timer stopped. The simulator's answers to
// get_hit_msg_list stay inside the window: they are WeCom's side of the
// exchange, measured alone by BenchmarkSimHitPages.
func BenchmarkPipeline(b *testing.B) {
	s := startSystem(b, "0s")
	var (
		mu     sync.Mutex
		first  time.Time
		seen   int
		target int
		done   chan struct{}
	)
	// A consumer of its own, as in production: see countEvents.
	countEvents(b, s.m.Broker().ClientURL(), filepath.Join(s.m.Cfg().NATS.RolesDir(), "operator.nk"), "wecom.hit.>", func() {
		mu.Lock()
		defer mu.Unlock()
		if seen == 0 {
			first = time.Now()
		}
		seen++
		if seen == target { // once: a target already reached was closed when set
			close(done)
		}
	})

	// Let any callback the setup scheduled go out, so the first batch's
	// messages wait for the coalescing interval like every later one.
	s.sim.Advance(6 * time.Second)
	// Stats counts the hits; Hits would copy every hit so far, garbage
	// that grows with the iterations and is collected inside the windows.
	hitsBefore := s.sim.Stats().Hits
	pagesBefore := s.sim.Requests("get_hit_msg_list")
	var (
		hits    int
		latency time.Duration
		busy    time.Duration
		simGen  time.Duration
		// cpu is the process's CPU time inside the windows: the
		// receiver, its embedded NATS server, the simulator's answers and
		// the subscriber. Per hit it varies less than hits/s with other
		// load on a shared machine.
		cpu      time.Duration
		cpuKnown bool
	)
	for b.Loop() {
		b.StopTimer()
		// Count from before the batch exists: the last fetch may still be
		// asking for a page (the batch before filled one exactly) and pick
		// up some of this batch, which must count here, not there.
		mu.Lock()
		seen, target, done = 0, -1, make(chan struct{})
		wait := done
		mu.Unlock()
		genStart := time.Now()
		// Within the coalescing interval of the last callback: recorded
		// and matched, the callback not yet sent.
		_, err := s.sim.GenerateMessages(simCorp, 1000)
		require.NoError(b, err)
		simGen += time.Since(genStart)
		all := s.sim.Stats().Hits
		want := all - hitsBefore
		hitsBefore = all
		mu.Lock()
		target = want
		if seen >= target {
			close(done)
		}
		mu.Unlock()
		b.StartTimer()

		cpu0, _ := processCPU()
		start := time.Now()
		s.sim.Advance(6 * time.Second) // the coalesced hit callback goes out
		select {
		case <-wait:
		case <-time.After(60 * time.Second):
			b.Fatalf("timed out: fewer than %d events", want)
		}
		busy += time.Since(start)
		cpu1, ok := processCPU()
		cpu += cpu1 - cpu0
		cpuKnown = ok
		mu.Lock()
		latency += first.Sub(start)
		mu.Unlock()
		hits += want
	}
	b.ReportMetric(float64(hits)/busy.Seconds(), "hits/s")
	b.ReportMetric(float64(latency.Milliseconds())/float64(b.N), "ms-to-first-event")
	b.ReportMetric(float64(hits)/float64(b.N), "hits/op")
	b.ReportMetric(float64(simGen.Milliseconds())/float64(b.N), "sim-gen-ms/op")
	// get_hit_msg_list calls, the last of each fetch finding no more.
	b.ReportMetric(float64(s.sim.Requests("get_hit_msg_list")-pagesBefore)/float64(b.N), "pages/op")
	if cpuKnown && hits > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(hits), "cpu-us/hit")
	}
}

// BenchmarkSimHitPages measures the simulator's side of the pipeline
// alone: get_hit_msg_list pages of 500 hits fetched over HTTP by the
// receiver's own client, nothing published. Subtract it from
// BenchmarkPipeline's per-hit time to see the receiver's share.
func BenchmarkSimHitPages(b *testing.B) {
	s := startSystem(b, "1h")
	// Hits that no callback announces: the callback is dropped, and the
	// hour-long poll interval leaves them to this benchmark.
	require.NoError(b, s.sim.SetFaults(wecomsim.Fault{Kind: wecomsim.FaultDropCallback, API: wecomsim.CallbackHitKeyword}))
	_, err := s.sim.GenerateMessages(simCorp, 2000)
	require.NoError(b, err)
	tok, err := s.sim.IssueHitToken(simCorp)
	require.NoError(b, err)
	c := s.m.Clients()["archive"]
	ctx := context.Background()
	hits := 0
	for b.Loop() {
		cursor := ""
		for {
			page, err := c.GetHitMsgList(ctx, simCorp, wecom.HitMsgListRequest{Token: tok, Cursor: cursor, Limit: 500, NeedDetail: true})
			require.NoError(b, err)
			hits += len(page.MsgList)
			if !bool(page.HasMore) {
				break
			}
			cursor = page.NextCursor
		}
	}
	require.Positive(b, hits)
	b.ReportMetric(float64(hits)/b.Elapsed().Seconds(), "hits/s")
	b.ReportMetric(float64(hits)/float64(b.N), "hits/op")
}

// ruleNames lists the archive corp's rules over the API: id → name.
func ruleNames(t testing.TB, s *system) map[string]string {
	t.Helper()
	names := map[string]string{}
	for r, err := range s.m.Clients()["archive"].ListRules(context.Background(), simCorp, 100) {
		require.NoError(t, err)
		names[r.RuleID] = r.Name
	}
	require.NotEmpty(t, names)
	return names
}

// TestRun_Backfill runs the backfill command against a running receiver's
// NATS: hits that no callback or poll brought are published, with progress.
func TestRun_Backfill(t *testing.T) {
	s := startSystem(t, "0s")
	require.NoError(t, s.sim.SetFaults(wecomsim.Fault{Kind: wecomsim.FaultDropCallback, API: wecomsim.CallbackHitKeyword}))
	_, err := s.sim.GenerateMessages(simCorp, 800)
	require.NoError(t, err)
	want := s.hitIDs()
	js := s.m.Broker().JetStream()
	counts, _ := hittest.Stored(t, js)
	require.Empty(t, counts, "no callback arrived, no poll ran: nothing yet")

	// The backfill connects over TCP, as an operator's would.
	cfgPath := opsConfig(t, s, "fetch: {page_size: 200}")

	var stdout, stderr testlog.Buffer
	code := run(context.Background(), []string{"backfill", "-config", cfgPath, "-since", "1h"}, // the one app is inferred
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	// Progress on stderr, plain lines when not a terminal; the result on
	// stdout.
	require.Contains(t, stderr.String(), "backfill archive/"+simCorp+" since ")
	require.Contains(t, stderr.String(), "page 1: ")
	out := stdout.String()
	require.True(t, strings.HasPrefix(out, "done: "), out)
	require.Contains(t, out, fmt.Sprintf("%d events published, 0 already stored", len(want)))

	counts, events := hittest.Stored(t, js)
	require.Len(t, counts, len(want))
	names := ruleNames(t, s)
	for id := range want {
		require.Equal(t, 1, counts[id])
		require.Equal(t, wecomhit.SourceBackfill, events[id].Source)
		require.Equal(t, names[events[id].RuleID], events[id].RuleName, "every backfilled event carries its rule's name")
		require.False(t, events[id].UsedHitToken)
	}
	require.Equal(t, len(want), requireContract(t, js))

	// Again: everything is already there.
	stdout = testlog.Buffer{}
	code = run(context.Background(), []string{"backfill", "-config", cfgPath, "-app", "archive", "-corp", simCorp, "-since", "1h"},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	require.Contains(t, stdout.String(), fmt.Sprintf("0 events published, %d already stored", len(want)))
}
