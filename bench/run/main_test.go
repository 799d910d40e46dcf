package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/config"
)

// TestServiceConfig: the service's bench config is one the receiver
// accepts, with the callback stream's room raised and the store's limit
// above what the streams reserve, and the secrets from the environment.
func TestServiceConfig(t *testing.T) {
	sec := appSecrets{token: randString(32), key: randString(43), suite: "wwBenchSuite01", corp: "wwBenchCorp01"}
	env := map[string]string{"BENCH_TOKEN": sec.token, "BENCH_AES_KEY": sec.key,
		"BENCH_SUITE_SECRET": randString(32), "BENCH_PERM_CODE": randString(32)}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	o := options{logLevel: "info", maxCBBytes: defaultCallbacksMaxBytes}
	cfg, err := config.Parse([]byte(serviceConfig(18080, 14222, sec, o)), t.TempDir(), lookup)
	require.NoError(t, err)
	assert.Equal(t, int64(defaultCallbacksMaxBytes), cfg.NATS.CallbacksMaxBytes)
	assert.GreaterOrEqual(t, cfg.NATS.MaxStoreBytes, cfg.ReservedBytes())
	require.Len(t, cfg.Apps, 1)
	assert.Equal(t, "archive", cfg.Apps[0].Name)

	// A smaller room, as -callbacks-max-bytes sets it, still validates.
	o.maxCBBytes = 256 << 20
	cfg, err = config.Parse([]byte(serviceConfig(18080, 14222, sec, o)), t.TempDir(), lookup)
	require.NoError(t, err)
	assert.Equal(t, int64(256<<20), cfg.NATS.CallbacksMaxBytes)
}

// TestLoadgenCPU: loadgen's ticks become µs per callback sent and its
// share of one core over the load.
func TestLoadgenCPU(t *testing.T) {
	perCB, cores := loadgenCPU(450, 300000, 10) // 4.5 s of CPU in 10 s
	assert.InDelta(t, 15, perCB, 1e-9)
	assert.InDelta(t, 0.45, cores, 1e-9)
	perCB, cores = loadgenCPU(10, 0, 0)
	assert.Zero(t, perCB)
	assert.Zero(t, cores)
}

// TestPrintTable_LoadgenSaturated: the table shows loadgen's CPU, and a
// pinned run in which loadgen used 90% of its core or more gets a
// warning naming the server whose row it spoils; other runs none.
func TestPrintTable_LoadgenSaturated(t *testing.T) {
	o := options{duration: 10e9, conns: 64, kind: "conversation_new_message", logLevel: "info", p99Rate: 5000, lowRate: 1000}
	scenarios := []scenario{{"pinned", true, 0}, {"shared", false, 0}, {"5000/s", false, 5000}, {"1000/s", false, 1000}}
	for _, tc := range []struct {
		service, baseline float64
		warn              []string
	}{
		{0.95, 0.40, []string{"service"}},
		{0.89, 0.90, []string{"baseline"}},
		{0.50, 0.50, nil},
	} {
		t.Run(fmt.Sprint(tc.service, tc.baseline), func(t *testing.T) {
			res := oneRound(map[string]map[string]*measure{
				"pinned": {"service": {OKPerSec: 20000, LoadgenCores: tc.service, LoadgenCPUPerCB: 12.5},
					"baseline": {OKPerSec: 10000, LoadgenCores: tc.baseline, LoadgenCPUPerCB: 14}},
			})
			var out bytes.Buffer
			printTable(&out, o, true, scenarios, res, 0, 0)
			assert.Contains(t, out.String(), "| loadgen CPU per callback, pinned | 12.5 µs | 14.0 µs | |")
			assert.Contains(t, out.String(), fmt.Sprintf("| loadgen's use of its core, pinned | %.0f%% | %.0f%% | |", 100*tc.service, 100*tc.baseline))
			for _, name := range []string{"service", "baseline"} {
				line := fmt.Sprintf("run against the %s: its callbacks/s measure loadgen", name)
				if assert.ObjectsAreEqual(tc.warn, []string{name}) {
					assert.Contains(t, out.String(), line)
					assert.Contains(t, out.String(), "WARNING: loadgen used")
				} else {
					assert.NotContains(t, out.String(), line)
				}
			}
			if tc.warn == nil {
				assert.NotContains(t, out.String(), "WARNING")
			}
		})
	}
}

// A run whose records check did not finish keeps its load figures and
// says so on its records line.
func TestPrintTable_CheckNotDone(t *testing.T) {
	o := options{duration: 10e9, conns: 64, kind: "conversation_new_message", logLevel: "info", p99Rate: 5000, lowRate: 1000}
	scenarios := []scenario{{"pinned", true, 0}, {"shared", false, 0}, {"5000/s", false, 5000}, {"1000/s", false, 1000}}
	res := oneRound(map[string]map[string]*measure{"shared": {
		"service":  {OKPerSec: 30000, CheckErr: lastLine("loadgen: load done\nloadgen: check: read WECOM_CALLBACKS #7: context deadline exceeded\n")},
		"baseline": {OKPerSec: 15000, Stored: 150000, CPUPerCB: 44.2, HWM: 93},
	}})
	var out bytes.Buffer
	printTable(&out, o, true, scenarios, res, 0, 0)
	assert.Contains(t, out.String(), "service, shared: 30000 callbacks/s, p99 0.00 ms; 0 stored, 0 answered 200 but missing, 0 not answered 200; 0 µs CPU per callback, RSS peak 0 MiB (load average 0.00); "+
		"CHECK NOT DONE: loadgen: check: read WECOM_CALLBACKS #7: context deadline exceeded")
	assert.Contains(t, out.String(), "baseline, shared: 15000 callbacks/s, p99 0.00 ms; 150000 stored, 0 answered 200 but missing, 0 not answered 200; 44 µs CPU per callback, RSS peak 93 MiB (load average 0.00)\n")
	assert.Contains(t, out.String(), "| callbacks/s, 2 cores shared with loadgen | 30000 | 15000 | 2.00× |\n")
	assert.NotContains(t, out.String(), "round")
}

// oneRound is the results of a single round of the measures in m.
func oneRound(m map[string]map[string]*measure) results {
	res := results{}
	for sc, servers := range m {
		for server, ms := range servers {
			res.add(sc, server, ms)
		}
	}
	return res
}

// TestPrintTable_Rounds: with several rounds each cell is the median of
// its rounds (the mean of the middle two of an even count), the ratio is
// that of the medians, the last column lists each round's own ratio, and
// every run keeps its own line.
func TestPrintTable_Rounds(t *testing.T) {
	o := options{duration: 10e9, conns: 64, kind: "conversation_new_message", logLevel: "info", p99Rate: 5000, lowRate: 1000}
	scenarios := []scenario{{"pinned", true, 0}, {"shared", false, 0}, {"5000/s", false, 5000}, {"1000/s", false, 1000}}
	res := results{}
	for _, r := range []struct{ svc, base, svcCPU float64 }{{50000, 20000, 20}, {30000, 25000, 31}, {48000, 24000, 22}} {
		res.add("shared", "service", &measure{OKPerSec: r.svc, CPUPerCB: r.svcCPU, LoadgenCPUPerCB: 13})
		res.add("shared", "baseline", &measure{OKPerSec: r.base, CPUPerCB: 50, LoadgenCPUPerCB: 15})
	}
	for _, r := range []struct{ svc, base float64 }{{1.5, 3}, {1.7, 2.5}, {1.6, 4}, {9, 2.9}} {
		res.add("5000/s", "service", &measure{P99: r.svc})
		res.add("5000/s", "baseline", &measure{P99: r.base})
	}
	var out bytes.Buffer
	printTable(&out, o, true, scenarios, res, 0, 0)
	got := out.String()
	assert.Contains(t, got, "; each figure the median of 4 rounds\n")
	assert.Contains(t, got, "| | this service | baseline | ratio | ratio in each round |\n")
	assert.Contains(t, got, "| callbacks/s, 2 cores shared with loadgen | 48000 | 24000 | 2.00× | 2.50× 1.20× 2.00× |\n")
	assert.Contains(t, got, "| server CPU per callback, shared | 22 µs | 50 µs | 0.44× | 0.40× 0.62× 0.44× |\n")
	// Even count: the middle two of 1.5 1.6 1.7 9 and of 2.5 2.9 3 4.
	assert.Contains(t, got, "| p99 latency at 5000/s | 1.65 ms | 2.95 ms | 0.56× | 0.50× 0.68× 0.40× 3.10× |\n")
	assert.Contains(t, got, "| loadgen CPU per callback, shared | 13.0 µs | 15.0 µs | | |\n")
	assert.Contains(t, got, "| callbacks/s, server pinned to 1 core | n/a | n/a | | |\n")
	assert.Contains(t, got, "service, shared, round 2: 30000 callbacks/s, p99 0.00 ms;")
	assert.Contains(t, got, "baseline, 5000/s, round 4: 0 callbacks/s, p99 2.90 ms;")
	assert.NotContains(t, got, "service, shared, round 4")
	assert.NotContains(t, got, "WARNING")

	// A saturated loadgen in one round is named with its round.
	res.add("pinned", "service", &measure{OKPerSec: 20000, LoadgenCores: 0.5})
	res.add("pinned", "service", &measure{OKPerSec: 20000, LoadgenCores: 0.95})
	res.add("pinned", "baseline", &measure{OKPerSec: 10000, LoadgenCores: 0.4})
	out.Reset()
	printTable(&out, o, true, scenarios, res, 0, 0)
	assert.Contains(t, out.String(), "WARNING: loadgen used 95% of its core in the pinned run (round 2) against the service:")
	assert.Equal(t, 1, strings.Count(out.String(), "WARNING"))
	// The service's two pinned runs against the baseline's one: one ratio
	// per round both have.
	assert.Contains(t, out.String(), "| callbacks/s, server pinned to 1 core | 20000 | 10000 | 2.00× | 2.00× |\n")

	// A round where one side measured nothing keeps its place.
	res.add("1000/s", "service", &measure{RSS: 58})
	res.add("1000/s", "baseline", &measure{RSS: 0})
	res.add("1000/s", "service", &measure{RSS: 60})
	res.add("1000/s", "baseline", &measure{RSS: 30})
	out.Reset()
	printTable(&out, o, false, scenarios, res, 0, 0)
	assert.Contains(t, out.String(), "| RSS under load (max VmRSS) at 1000/s | 59 MiB | 15 MiB | 3.93× | – 2.00× |\n")
	assert.Contains(t, out.String(), "| (no taskset or fewer than 2 CPUs: pinned run skipped) | | | | |\n")
}

// TestPlan: rounds outermost, each wanted row against both servers, the
// service first in odd rounds and the baseline in even ones, no pinned
// row where it cannot pin, and a directory of its own for every run.
func TestPlan(t *testing.T) {
	scenarios := []scenario{{"pinned", true, 0}, {"shared", false, 0}, {"5000/s", false, 5000}, {"1000/s", false, 1000}}
	want := []bool{true, true, false, true}
	got := plan(3, want, scenarios, true)
	assert.Equal(t, []step{
		{0, 0, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 1}, {0, 3, 0}, {0, 3, 1},
		{1, 0, 1}, {1, 0, 0}, {1, 1, 1}, {1, 1, 0}, {1, 3, 1}, {1, 3, 0},
		{2, 0, 0}, {2, 0, 1}, {2, 1, 0}, {2, 1, 1}, {2, 3, 0}, {2, 3, 1},
	}, got)
	dirs := map[string]bool{}
	for _, st := range got {
		d := st.dir([]string{"service", "baseline"}[st.target])
		assert.False(t, dirs[d], "directory %s twice", d)
		dirs[d] = true
	}

	assert.Equal(t, []step{{0, 1, 0}, {0, 1, 1}}, plan(1, want[:2], scenarios[:2], false))
}
