package app_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

// cliCase is how TestCLI_Convention runs a command for exits 0 and 1.
// CONFIG in args is the path of a config that reaches the test system,
// MISSING a file that does not exist.
type cliCase struct {
	ok    []string // exits 0
	json  bool     // ok has -o json: stdout is JSON lines, at least one
	until string   // stop ok's run (cancel its context) once stderr has this
	fail  []string // exits 1
	// noFailure says why the command has no exit 1.
	noFailure string
	// noResult: the command prints no result (serve logs, on stderr).
	noResult bool
}

// cliCases covers every command of the table; TestCLI_Convention fails on
// a command that has none, so a new command gets one.
func cliCases(t *testing.T) map[string]cliCase {
	return map[string]cliCase{
		"serve":        {ok: []string{"serve", "-config", serveConfig(t)}, until: "receiver started", noResult: true, fail: []string{"serve", "-config", "MISSING"}},
		"check-config": {ok: []string{"check-config", "-config", "../../configs/receiver.local-sim.yaml", "-o", "json"}, json: true, fail: []string{"check-config", "-config", "MISSING"}},
		"backfill":     {ok: []string{"backfill", "-config", "CONFIG", "-since", "1d", "-o", "json"}, json: true, fail: []string{"backfill", "-config", "MISSING", "-since", "1h"}},
		"rules":        {ok: []string{"rules", "list", "-config", "CONFIG", "-o", "json"}, json: true, fail: []string{"rules", "list", "-config", "MISSING"}},
		"search":       {ok: []string{"search", "-config", "CONFIG", "-o", "json", "-from", "1d", "MARKER"}, json: true, fail: []string{"search", "x1", "-config", "MISSING"}},
		"tail":         {ok: []string{"tail", "-config", "CONFIG", "-since", "1d", "-n", "3", "-o", "json"}, json: true, fail: []string{"tail", "-config", "MISSING"}},
		"status":       {ok: []string{"status", "-config", "CONFIG", "-o", "json"}, json: true, fail: []string{"status", "-config", "MISSING"}},
		"creds":        {ok: []string{"creds", "consumer", "-config", "CONFIG"}, fail: []string{"creds", "consumer", "-config", "MISSING"}},
		// No dead letters here: the table's header is the result (dlq_test
		// parses -o json of real ones).
		"dlq": {ok: []string{"dlq", "list", "-config", "CONFIG"}, fail: []string{"dlq", "list", "-config", "MISSING"}},
		// The registry is off in CONFIG: the file's corps (corps_test
		// covers the registry).
		"corps":   {ok: []string{"corps", "list", "-config", "CONFIG", "-o", "json"}, json: true, fail: []string{"corps", "list", "-config", "MISSING"}},
		"version": {ok: []string{"version", "-o", "json"}, json: true, noFailure: "it only reads the build info"},
		"help":    {ok: []string{"help", "status"}, noFailure: "it only prints"},
	}
}

// serveConfig is configs/receiver.example.yaml on free ports with a
// private store (as TestRun_ServeAndSignal), read with exampleEnv.
func serveConfig(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "receiver.yaml")
	example, err := os.ReadFile("../../configs/receiver.example.yaml")
	require.NoError(t, err)
	text := strings.NewReplacer("127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:9090", "127.0.0.1:0", "127.0.0.1:4222", "", "../data/nats", "nats",
		"https://qyapi.weixin.qq.com", "http://127.0.0.1:9").Replace(string(example))
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// TestCLI_Convention runs every command of the command table (and each
// subcommand) through the convention: -h and "help" list every flag with
// its default and exit 0; an unknown flag exits 2; a missing config (or
// another failure) exits 1; a working run exits 0, and with -o json its
// stdout parses.
func TestCLI_Convention(t *testing.T) {
	s := startSystem(t, "0s")
	msgs, err := s.sim.GenerateMessages(simCorp, 300)
	require.NoError(t, err)
	want := s.hitIDs(simCorp)
	natstest.WaitFor(t, 20*time.Second, func() error {
		if got, _ := hittest.Stored(t, s.m.Broker().JetStream()); len(got) < len(want) {
			return fmt.Errorf("%d of %d", len(got), len(want))
		}
		return nil
	})
	cfgPath := opsConfig(t, s, "")
	marker := ""
	for _, m := range msgs {
		if r := []rune(m.Text); len(r) >= 2 {
			marker = string(r[:2])
			break
		}
	}
	require.NotEmpty(t, marker)
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cases := cliCases(t)
	fill := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = strings.NewReplacer("CONFIG", cfgPath, "MISSING", missing, "MARKER", marker).Replace(a)
		}
		return out
	}
	runIt := func(ctx context.Context, args []string) (int, string, string, []*flag.FlagSet) {
		var stdout, stderr testlog.Buffer
		var sets []*flag.FlagSet
		e := cli.Env{LookupEnv: envOf(exampleEnv), Stdout: &stdout, Stderr: &stderr,
			OnFlagSet: func(fs *flag.FlagSet) { sets = append(sets, fs) }}
		code := run(ctx, args, e)
		return code, stdout.String(), stderr.String(), sets
	}

	for _, sp := range commands() {
		t.Run(sp.Name, func(t *testing.T) {
			tc, ok := cases[sp.Name]
			require.True(t, ok, "command %q has no case in cliCases: add one", sp.Name)
			invocations := [][]string{{sp.Name}}
			if len(sp.Subs) > 0 {
				invocations = nil
				for _, sub := range sp.Subs {
					invocations = append(invocations, []string{sp.Name, sub})
				}
			}
			for _, inv := range invocations {
				name := strings.Join(inv, " ")
				if sp.Name == "help" {
					continue // help -h is help's own help: below
				}
				code, out, errOut, sets := runIt(context.Background(), append(inv, "-h"))
				require.Equal(t, cli.ExitOK, code, "%s -h: %s", name, errOut)
				assert.Empty(t, errOut, "%s -h: help goes to stdout", name)
				require.NotEmpty(t, sets, "%s: its flags come from Env.FlagSet", name)
				fs := sets[len(sets)-1]
				fs.VisitAll(func(f *flag.Flag) {
					if cli.Hidden(f) {
						assert.NotContains(t, out, "-"+f.Name+" ", "%s: deprecated -%s is hidden", name, f.Name)
						return
					}
					assert.Contains(t, out, "\n  -"+f.Name, "%s -h lists -%s", name, f.Name)
					assert.Contains(t, out, cli.DefaultText(f), "%s -h shows -%s's default", name, f.Name)
				})
				for _, v := range sp.Env {
					assert.Contains(t, out, v.Name, "%s -h names %s", name, v.Name)
				}
				helpCode, helpOut, _, _ := runIt(context.Background(), append([]string{"help"}, inv...))
				assert.Equal(t, cli.ExitOK, helpCode)
				assert.Equal(t, out, helpOut, "help %s is %s -h", name, name)

				code, out, errOut, _ = runIt(context.Background(), append(inv, "-no-such-flag"))
				assert.Equal(t, cli.ExitUsage, code, "%s: an unknown flag is a usage error", name)
				assert.Empty(t, out)
				assert.Contains(t, errOut, "-no-such-flag")
				assert.Contains(t, errOut, `Run "receiver help `+sp.Name+`"`)
			}

			if tc.fail != nil {
				code, _, errOut, _ := runIt(context.Background(), fill(tc.fail))
				assert.Equal(t, cli.ExitFailure, code, "%v: %s", tc.fail, errOut)
				assert.Contains(t, errOut, "receiver "+sp.Name+": ")
			} else {
				require.NotEmpty(t, tc.noFailure, "%s: give a failing invocation, or say why there is none", sp.Name)
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stderr testlog.Buffer
			var stdout testlog.Buffer
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, fill(tc.ok), cli.Env{LookupEnv: envOf(exampleEnv), Stdout: &stdout, Stderr: &stderr})
			}()
			if tc.until != "" {
				natstest.WaitFor(t, 20*time.Second, func() error {
					if !strings.Contains(stderr.String(), tc.until) {
						return fmt.Errorf("no %q yet: %s", tc.until, stderr.String())
					}
					return nil
				})
				cancel()
			}
			require.Equal(t, cli.ExitOK, <-done, "%v: %s", tc.ok, stderr.String())
			if tc.json {
				lines := nonEmptyLines(stdout.String())
				require.NotEmpty(t, lines, "%v prints a result", tc.ok)
				if sp.Name == "status" {
					lines = []string{stdout.String()} // one indented document
				}
				for _, l := range lines {
					var v any
					assert.NoError(t, json.Unmarshal([]byte(l), &v), "%v: %s", tc.ok, l)
				}
			} else if tc.noResult {
				assert.Empty(t, stdout.String(), "%v prints no result", tc.ok)
			} else {
				assert.NotEmpty(t, stdout.String(), "%v prints its result on stdout", tc.ok)
			}
		})
	}
}

// TestCLI_Overview: no command, an unknown one, -h and --version.
func TestCLI_Overview(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout bool // the overview on stdout (else on stderr)
	}{
		{nil, cli.ExitUsage, false},
		{[]string{"frobnicate"}, cli.ExitUsage, false},
		{[]string{"-h"}, cli.ExitOK, true},
		{[]string{"--help"}, cli.ExitOK, true},
		{[]string{"help"}, cli.ExitOK, true},
	} {
		var stdout, stderr testlog.Buffer
		code := run(context.Background(), tc.args, cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stderr})
		assert.Equal(t, tc.code, code, "%v", tc.args)
		where := stderr.String()
		if tc.stdout {
			where = stdout.String()
		}
		for _, sp := range commands() {
			assert.Contains(t, where, "\n  "+sp.Synopsis, "%v: the overview lists %s", tc.args, sp.Name)
		}
	}
	var stdout testlog.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"--version"}, cli.Env{LookupEnv: noEnv, Stdout: &stdout, Stderr: &stdout}))
	assert.Regexp(t, `^receiver \S+ \(.*go1\.\d+`, stdout.String())
	assert.NotContains(t, stdout.String(), "dev ")
}
