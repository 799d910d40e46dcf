package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// fakeClock is a real clock the test moves by hand: the simulator and the
// receiver read it, while waits and timers stay real.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// runHours moves clock by step until hours have passed. After each step it
// waits for the simulator to catch up with the clock and for the receiver
// to publish every hit the simulator recorded up to the step before (the
// last ones may still be coalescing); then it checks the whole ground truth
// against the stream, and that no callback was rejected or retried.
func runHours(t *testing.T, clock *fakeClock, sim *wecomsim.Sim, m *app.Main, hours time.Duration, step time.Duration) {
	t.Helper()
	js := m.Broker().JetStream()
	groundTruth := func() map[string]bool {
		ids := map[string]bool{}
		for _, h := range sim.Hits() {
			ids[publish.MsgID(h.CorpID, h.MsgID, h.RuleID)] = true
		}
		return ids
	}
	covered := func(want map[string]bool) error {
		counts, _ := hittest.Stored(t, js)
		for id := range want {
			if counts[id] == 0 {
				return fmt.Errorf("%d events, hit %s not yet published", len(counts), id)
			}
		}
		return nil
	}
	tick := func() {
		clock.Add(step)
		natstest.WaitFor(t, 10*time.Second, func() error {
			if now := sim.Now(); !now.Equal(clock.Now()) {
				return fmt.Errorf("simulator at %s, clock at %s", now, clock.Now())
			}
			return nil
		})
	}
	end := clock.Now().Add(hours)
	prev := groundTruth()
	for clock.Now().Before(end) {
		tick()
		natstest.WaitFor(t, 20*time.Second, func() error { return covered(prev) })
		prev = groundTruth()
	}
	tick() // the last coalesced callbacks go out
	want := groundTruth()
	require.Greater(t, len(want), 50, "hits flowed")
	natstest.WaitFor(t, 20*time.Second, func() error { return covered(want) })

	counts, events := hittest.Stored(t, js)
	require.Equal(t, len(want), len(counts), "no event the simulator did not record")
	now := clock.Now()
	for id, ev := range events {
		require.NotNil(t, ev.Message, id)
		sent := time.Unix(ev.Message.SendTime, 0)
		require.False(t, sent.After(now), "send_time %s after the real clock %s", sent, now)
	}
	st := sim.CallbackStats()
	for kind, c := range st {
		require.Zero(t, c.Failed, kind)
		require.Equal(t, c.Attempts, c.Delivered, "%s: every delivery accepted at once", kind)
	}
	require.Positive(t, st[wecomsim.CallbackHitKeyword].Delivered)
	require.Greater(t, st[wecomsim.CallbackSuiteTicket].Delivered, int(hours/(10*time.Minute))-2, "tickets rotated on the real clock")
	fams, err := m.Registry().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != "wecom_receiver_callbacks_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() != "accepted" {
					require.Zero(t, mt.GetCounter().GetValue(), "callbacks %s", l.GetValue())
				}
			}
		}
	}
}

// TestDemo_ThreeHours runs the demo's wiring for three hours of its real
// clock at ×60 (180 hours of conversation) with a fake clock in simulator
// and receiver: no callback is rejected, every hit is published once, no
// send_time lies in the receiver's future. A lower message rate than the
// demo's keeps the event count small; the time model does not depend on it.
func TestDemo_ThreeHours(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := openDemo(ctx, demoOptions{speed: 60, rate: 0.05, seed: 3, clock: clock.Now}, zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(d.Close)
	runHours(t, clock, d.sim, d.m, 3*time.Hour, 5*time.Minute)
}

// TestByHand_ThreeHours runs the README's by-hand recipe:
// configs/receiver.local-sim.yaml against a simulator set up as
// `wecomsim -speed 60` sets it up by default, for three hours of a fake
// real clock. Only the addresses and the store directory differ, so the
// test binds free ports.
func TestByHand_ThreeHours(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Second)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	// cmd/wecomsim's defaults, which match the local-sim configuration
	// (cmd/wecomsim checks); a lower message rate keeps the event count small.
	sim, err := wecomsim.New(wecomsim.Options{
		Seed: 1, Speed: 60, MessageRate: 0.05, Clock: clock.Now,
		Archive: wecomsim.Archive{
			SuiteID: "wwArchiveSuite01", SuiteSecret: "demo-suite-secret",
			Corps: []wecomsim.Corp{{CorpID: "wwCorpABC123", PermanentCode: "demo-permanent-code"}},
			Token: "QDG6eK", EncodingAESKey: "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
			CallbackURL: "http://" + lis.Addr().String() + "/callback/archive",
		},
	}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, sim.SeedDemoRules())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, sim.Start(ctx, "127.0.0.1:0"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Close(ctx)
	})

	cfg, err := config.LoadEnv("../../configs/receiver.local-sim.yaml", noEnv)
	require.NoError(t, err)
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.NATS.StoreDir = t.TempDir()
	require.Equal(t, "http://127.0.0.1:8090", cfg.Apps[0].APIBaseURL, "wecomsim's default address")
	cfg.Apps[0].APIBaseURL = sim.URL()
	require.NoError(t, cfg.Validate())
	m := app.NewMain(cfg, zerolog.Nop())
	m.UseListener(lis)
	m.UseClock(clock.Now)
	require.NoError(t, m.Open(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	runHours(t, clock, sim, m, 3*time.Hour, 5*time.Minute)
}

// TestOpenDemo_Fails: a demo that cannot start (here its context has
// ended, which fails the receiver's Open) stops what it started, the
// simulator and the listener, and removes its directory.
func TestOpenDemo_Fails(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := openDemo(ctx, demoOptions{speed: 60, rate: 1, seed: 1}, zerolog.Nop())
	// The simulator started; the receiver's Open failed.
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "broker")
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, left, "the temporary directory is gone")
}

// TestRun_Demo runs the demo as a new user would, bounded, and checks that
// hits flowed and the summary agrees with the simulator.
func TestRun_Demo(t *testing.T) {
	var stdout, stderr testlog.Buffer
	code := runMain(context.Background(), []string{"-for", "4s", "-seed", "5", "-speed", "60", "-rate", "60"}, &stdout, &stderr)
	require.Equal(t, cli.ExitOK, code, stderr.String())
	lines := nonEmptyLines(stdout.String())
	require.NotEmpty(t, lines, "hits appear within seconds: %s", stderr.String())
	for _, l := range lines {
		assert.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  wwCorpABC123  .+  \S+ \S+:\S+ →`, l)
	}
	m := regexp.MustCompile(`demo: (\d+) hits published in \S+; the simulator recorded (\d+) hits`).FindStringSubmatch(stderr.String())
	require.NotNil(t, m, stderr.String())
	published, _ := strconv.Atoi(m[1])
	recorded, _ := strconv.Atoi(m[2])
	assert.Equal(t, len(lines), published)
	assert.Positive(t, recorded)
	assert.LessOrEqual(t, published, recorded, "never more events than hits")
	assert.NotContains(t, stderr.String(), `"level":"error"`, "a quiet shutdown")
}

// nonEmptyLines are s's lines, blank ones left out.
func nonEmptyLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// noEnv is an environment with no variables set.
func noEnv(string) (string, bool) { return "", false }

// runMain runs the demo as main does, with the process's environment
// replaced: no variables, stdout and stderr as given.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.ExitCode(stderr, "demo", run(ctx, args, cli.Env{LookupEnv: noEnv, Stdout: stdout, Stderr: stderr}))
}

// TestRun_Convention: the demo follows the convention of every command
// (internal/cli): -h lists every flag with its default and the
// environment it reads, on stdout, and exits 0; an unknown flag exits 2;
// a failure (here a cancelled context, before the receiver could start)
// exits 1; -o json prints each event's JSON on a line.
func TestRun_Convention(t *testing.T) {
	t.Run("Help", func(t *testing.T) {
		var stdout, stderr testlog.Buffer
		require.Equal(t, cli.ExitOK, runMain(context.Background(), []string{"-h"}, &stdout, &stderr))
		assert.Empty(t, stderr.String())
		out := stdout.String()
		assert.Contains(t, out, "demo [flags]")
		assert.Contains(t, out, "NO_COLOR", "-h names the environment it reads")
		newFlagSet(&flags{}, io.Discard).VisitAll(func(f *flag.Flag) {
			if cli.Hidden(f) {
				assert.NotContains(t, out, "-"+f.Name+" ", "deprecated -%s is hidden", f.Name)
				return
			}
			assert.Contains(t, out, "\n  -"+f.Name, "-h lists -%s", f.Name)
			assert.Contains(t, out, cli.DefaultText(f), "-h shows -%s's default", f.Name)
		})
	})
	t.Run("ErrUsage", func(t *testing.T) {
		var stdout, stderr testlog.Buffer
		require.Equal(t, cli.ExitUsage, runMain(context.Background(), []string{"-no-such-flag"}, &stdout, &stderr))
		assert.Empty(t, stdout.String())
		assert.Contains(t, stderr.String(), "-no-such-flag")
		assert.Contains(t, stderr.String(), `Run "demo -h"`)
		require.Equal(t, cli.ExitUsage, runMain(context.Background(), []string{"extra"}, &stdout, &stderr))
	})
	t.Run("Failure", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr testlog.Buffer
		require.Equal(t, cli.ExitFailure, runMain(ctx, nil, &stdout, &stderr))
		assert.Contains(t, stderr.String(), "demo: ")
	})
	t.Run("JSON", func(t *testing.T) {
		var stdout, stderr testlog.Buffer
		code := runMain(context.Background(), []string{"-for", "3s", "-seed", "5", "-speed", "60", "-rate", "120", "-o", "json"}, &stdout, &stderr)
		require.Equal(t, cli.ExitOK, code, stderr.String())
		lines := nonEmptyLines(stdout.String())
		require.NotEmpty(t, lines, "hits appear within seconds: %s", stderr.String())
		for _, l := range lines {
			var ev wecomhit.HitEvent
			assert.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		}
	})
}
