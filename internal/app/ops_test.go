package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

func nonEmptyLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestRun_Tail: from a start time, as JSON lines and as text, exactly the
// published events.
func TestRun_Tail(t *testing.T) {
	s := startSystem(t, "0s")
	_, err := s.sim.GenerateMessages(simCorp, 300)
	require.NoError(t, err)
	want := s.hitIDs(simCorp)
	natstest.WaitFor(t, 20*time.Second, func() error {
		if got, _ := hittest.Stored(t, s.m.Broker().JetStream()); len(got) < len(want) {
			return fmt.Errorf("%d of %d", len(got), len(want))
		}
		return nil
	})
	cfgPath := opsConfig(t, s, "")

	var stdout, stderr testlog.Buffer
	code := run(context.Background(), []string{"tail", "-config", cfgPath, "-since", "1h", "-o", "json", "-n", strconv.Itoa(len(want))},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	got := map[string]bool{}
	for _, l := range nonEmptyLines(stdout.String()) {
		var ev wecomhit.HitEvent
		require.NoError(t, json.Unmarshal([]byte(l), &ev))
		got[ev.CorpID+":"+ev.MsgID+":"+ev.RuleID] = true
	}
	assert.Equal(t, want, got)

	stdout = testlog.Buffer{}
	code = run(context.Background(), []string{"tail", "-config", cfgPath, "-since", "1h", "-subject", "wecom.hit." + simCorp + ".>", "-n", "3"},
		cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	lines := nonEmptyLines(stdout.String())
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], simCorp)

	// New only: nothing old; a fresh hit shows up.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stdout = testlog.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"tail", "-config", cfgPath, "-o", "json", "-n", "1"}, cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	}()
	// Keep making hits until tail prints one: no need to know when it
	// subscribed, and whatever it prints must be new.
	natstest.WaitFor(t, 15*time.Second, func() error {
		if strings.TrimSpace(stdout.String()) != "" {
			return nil
		}
		_, err := s.sim.GenerateMessages(simCorp, 50)
		require.NoError(t, err)
		s.sim.Advance(6 * time.Second)
		return fmt.Errorf("nothing printed yet")
	})
	require.Equal(t, 0, <-done, stderr.String())
	var ev wecomhit.HitEvent
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stdout.String())), &ev))
	assert.False(t, want[ev.CorpID+":"+ev.MsgID+":"+ev.RuleID], "an old event was printed in new-only mode")
}

// TestRun_Status reads the deployment's state from NATS.
func TestRun_Status(t *testing.T) {
	s := startSystem(t, "0s")
	_, err := s.sim.GenerateMessages(simCorp, 300)
	require.NoError(t, err)
	want := s.hitIDs(simCorp)
	natstest.WaitFor(t, 20*time.Second, func() error {
		if got, _ := hittest.Stored(t, s.m.Broker().JetStream()); len(got) < len(want) {
			return fmt.Errorf("%d of %d", len(got), len(want))
		}
		return nil
	})
	cfgPath := opsConfig(t, s, "")
	var stdout, stderr testlog.Buffer
	code := run(context.Background(), []string{"status", "-config", cfgPath, "-o", "json"}, cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	var rep health.Report
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &rep))
	require.Len(t, rep.Corps, 1)
	c := rep.Corps[0]
	assert.Equal(t, "archive", c.App)
	assert.Equal(t, simCorp, c.CorpID)
	assert.NotEmpty(t, c.Cursor)
	assert.Equal(t, int64(len(want)), c.Events)
	require.NotNil(t, c.CursorMoved)
	require.NotNil(t, c.LastHit)
	require.NotNil(t, c.LagSeconds)
	require.NotNil(t, c.HitTokenExpires, "the hit_keyword callback's token is stored")
	assert.True(t, c.HitTokenExpires.After(time.Now()))
	assert.Zero(t, rep.Intake.Waiting)
	assert.Equal(t, health.StatusOK, rep.Verdict.Status)
	assert.Empty(t, rep.Verdict.Reasons)
	assert.Zero(t, c.ConsecutiveFailures)
	assert.NotNil(t, c.LastSuccess)

	stdout = testlog.Buffer{}
	code = run(context.Background(), []string{"status", "-config", cfgPath}, cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	assert.True(t, strings.HasPrefix(out, "OK\n"), "the verdict comes first: %s", out)
	assert.Contains(t, out, "callbacks:    0 waiting")
	assert.Regexp(t, `archive\s+`+simCorp+`\s+0\s+\S+ ago\s+-\s+\S+ ago\s+\S+ ago\s+\S+\s+`+strconv.Itoa(len(want))+`\s+valid for`, out)
}
