// Command run is the benchmark of BENCHMARKS.md: it builds the receiver,
// the baseline (bench/baseline) and the load generator (cmd/loadgen),
// drives the same open-loop load against each in its own process, in
// rounds that alternate the two, samples each server's CPU and memory from
// /proc, measures the NATS async-publish ceiling and the hit pipeline in
// the same sitting, and prints one table with both columns (the median of
// the rounds) and their ratios.
//
//	go run ./bench/run                 # defaults: 10 s per run
//	go run ./bench/run -duration 30s -conns 64
//
// Linux only (/proc, taskset). Every process it starts listens on
// loopback, and it stops each one before the next run starts.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wecomhit/wecomhit/bench/internal/build"
)

type options struct {
	duration   time.Duration
	conns      int
	kind       string
	logLevel   string
	p99Rate    float64
	lowRate    float64
	pipeline   bool
	ceiling    bool
	ceilingN   int
	keep       bool
	extraYAML  string
	serviceEnv string
	serviceBin string
	loadgenBin string
	runs       string
	rounds     int
	maxCBBytes int64
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each load run")
	flag.IntVar(&o.conns, "conns", 64, "loadgen connections")
	flag.StringVar(&o.kind, "kind", "conversation_new_message", "callback kind sent (see loadgen -kind)")
	flag.StringVar(&o.logLevel, "log-level", "info", "the service's log level")
	flag.Float64Var(&o.p99Rate, "p99-rate", 5000, "fixed rate of the latency run (callbacks/s)")
	flag.Float64Var(&o.lowRate, "low-rate", 1000, "fixed rate of the memory run (callbacks/s)")
	flag.BoolVar(&o.pipeline, "pipeline", true, "run BenchmarkPipeline too")
	flag.BoolVar(&o.ceiling, "ceiling", true, "measure the NATS async-publish ceiling")
	flag.IntVar(&o.ceilingN, "ceiling-n", 200000, "messages of the NATS ceiling run")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binaries, stores, logs)")
	flag.StringVar(&o.extraYAML, "service-yaml", "", "extra YAML appended to the service's bench config (a lever to try)")
	flag.StringVar(&o.serviceEnv, "service-env", "", "extra environment of the service, e.g. GOMEMLIMIT=48MiB (comma-separated)")
	flag.StringVar(&o.serviceBin, "service-bin", "", "receiver binary to measure instead of building ./cmd/receiver (to compare builds of a lever)")
	flag.StringVar(&o.loadgenBin, "loadgen-bin", "", "loadgen binary to drive the servers with instead of building ./cmd/loadgen (to compare load generators)")
	flag.Int64Var(&o.maxCBBytes, "callbacks-max-bytes", defaultCallbacksMaxBytes, "the service's nats.callbacks_max_bytes: room for every record of a run, so that the compactor removes none before loadgen's check (past half of the receiver's default, 256 MiB, about 180,000 callbacks, it does)")
	flag.StringVar(&o.runs, "runs", "pinned,shared,p99,low", "load runs to do, comma-separated: pinned, shared, p99 (the -p99-rate run), low (the -low-rate run)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of the load runs: each round runs every row against both servers (the service first in odd rounds, the baseline in even ones), and the table gives each figure's median over the rounds")
	flag.Parse()
	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds must be at least 1")
		os.Exit(2)
	}
	// The rows are named by their rate, and the table finds each row's
	// runs by its name.
	if o.p99Rate == o.lowRate {
		fmt.Fprintln(os.Stderr, "bench: -p99-rate and -low-rate must differ")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// measure is what one load run against one server gave.
type measure struct {
	OKPerSec   float64
	P50, P99   float64 // ms
	CPUPerCB   float64 // µs of server CPU per callback answered 200
	HWM, RSS   float64 // MiB: peak (VmHWM) and largest VmRSS sampled under load
	Stored     int
	Missing    int
	Non200     int
	LoadgenErr string
	// CheckErr is why loadgen's check of the stored records did not
	// finish, if it did not; the row's load figures still stand.
	CheckErr string
	// Loadgen's own CPU over the load (from its start to "load done"):
	// per callback sent (µs), and as a share of one core over the load's
	// elapsed time (1 = a whole core). A loadgen near a whole core of its
	// own in the pinned run caps the callbacks/s: the row then measures
	// loadgen, not the server.
	LoadgenCPUPerCB float64
	LoadgenCores    float64
	// LoadAvg is the machine's 1-minute load average when the run began.
	LoadAvg float64
}

type scenario struct {
	name   string
	pinned bool
	rate   float64
}

// defaultCallbacksMaxBytes is the service's nats.callbacks_max_bytes in
// a bench run, against 256 MiB by default. Once WECOM_CALLBACKS holds half
// its limit, the receiver's compactor removes handled records, and a
// conversation_new_message record needs no handling: at the default, a
// run of more than about 200,000 callbacks lost its first records before
// loadgen's check read them, which reported them "missing" although they
// had been stored. At 16 GiB compaction starts at 8 GiB, some 12 million
// records (a conversation_new_message record takes about 720 bytes on
// disk), two minutes at 100,000/s. The limit reserves nothing on disk
// (a stream takes what it holds), and a file-store block is 8 MiB at any
// limit of 32 MiB or more, so the service's memory is as at the default.
// The baseline's stream has no byte limit at all.
const defaultCallbacksMaxBytes = 16 << 30

// target is one server under test.
type target struct {
	name  string
	start func(ctx context.Context, work string, pinned bool) (*proc, error)
}

// run builds the binaries, does the load runs -runs asks for against the
// service and the baseline in turn, measures the NATS ceiling and the hit
// pipeline, and prints the table.
func run(ctx context.Context, o options) error {
	if runtime.GOOS != "linux" {
		return errors.New("needs Linux (/proc)")
	}
	want, err := selectRuns(o.runs)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "wecomhit-bench-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(work)
	} else {
		fmt.Println("work directory:", work)
	}
	root, err := build.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	bins, err := build.Bins(ctx, root, work,
		map[string]string{"receiver": "./cmd/receiver", "baseline": "./bench/baseline", "loadgen": "./cmd/loadgen"},
		map[string]string{"receiver": o.serviceBin, "loadgen": o.loadgenBin})
	if err != nil {
		return err
	}
	_, tsErr := exec.LookPath("taskset")
	canPin := tsErr == nil && runtime.NumCPU() >= 2
	secrets := appSecrets{token: randString(32), key: randString(43), suite: "wwBenchSuite01", corp: "wwBenchCorp01"}

	targets := []target{
		{"service", func(ctx context.Context, dir string, pinned bool) (*proc, error) {
			return startService(ctx, bins["receiver"], dir, pinned, secrets, o)
		}},
		{"baseline", func(ctx context.Context, dir string, pinned bool) (*proc, error) {
			return startBaseline(ctx, bins["baseline"], dir, pinned, secrets)
		}},
	}
	// In the order of selectRuns' names.
	scenarios := []scenario{
		{"max, server pinned to 1 core", true, 0},
		{"max, 2 cores shared with loadgen", false, 0},
		{fmt.Sprintf("%.0f/s", o.p99Rate), false, o.p99Rate},
		{fmt.Sprintf("%.0f/s", o.lowRate), false, o.lowRate},
	}
	res := results{}
	for _, st := range plan(o.rounds, want, scenarios, canPin) {
		sc, t := scenarios[st.scenario], targets[st.target]
		dir := filepath.Join(work, st.dir(t.name))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: round %d of %d: %s: %s ...\n", st.round+1, o.rounds, t.name, sc.name)
		settleDisk()
		m, err := loadRun(ctx, t, sc, dir, bins["loadgen"], secrets, o)
		if err != nil {
			// The runs done so far are worth their table.
			if res.rounds() > 0 {
				printTable(os.Stdout, o, canPin, scenarios, res, 0, 0)
			}
			return fmt.Errorf("round %d, %s, %s: %w", st.round+1, t.name, sc.name, err)
		}
		res.add(sc.name, t.name, m)
		// A run's store holds some 400 MB of records, and three rounds of
		// them could fill a small /tmp: only -keep keeps them.
		if !o.keep {
			_ = os.RemoveAll(dir)
		}
	}
	ceiling, pipeline := ceilingAndPipeline(ctx, o, work, root)
	printTable(os.Stdout, o, canPin, scenarios, res, ceiling, pipeline)
	return nil
}

// step is one load run: a round, a row (an index of the scenarios) and
// a server (an index of the targets: 0 the service, 1 the baseline).
type step struct{ round, scenario, target int }

// dir is the step's work directory under bench/run's own, unique among
// the steps of a plan.
func (st step) dir(target string) string {
	return fmt.Sprintf("%s-%d-%d", target, st.scenario, st.round+1)
}

// plan orders the load runs: rounds outermost; within a round each row
// wanted (the pinned one only where it can pin), against both servers,
// the service first in odd rounds and the baseline first in even ones.
// What drifts on the machine over the minutes of a run (a neighbour's
// load, the page cache) then falls on both columns alike, neither server
// always runs right after the other, and one slow run moves a median of
// three much less than it moves a single figure (BENCHMARKS.md,
// "Rounds").
func plan(rounds int, want []bool, scenarios []scenario, canPin bool) []step {
	var steps []step
	for round := range rounds {
		for i, sc := range scenarios {
			if !want[i] || (sc.pinned && !canPin) {
				continue
			}
			first, second := 0, 1
			if round%2 == 1 {
				first, second = 1, 0
			}
			steps = append(steps, step{round, i, first}, step{round, i, second})
		}
	}
	return steps
}

// selectRuns reads -runs: which of the load runs pinned, shared, p99 and
// low (in that order) to do. It is read before anything is built, so a
// typo costs no build.
func selectRuns(runs string) ([]bool, error) {
	keys := []string{"pinned", "shared", "p99", "low"}
	want := make([]bool, len(keys))
	for r := range strings.SplitSeq(runs, ",") {
		i := slices.Index(keys, strings.TrimSpace(r))
		if i < 0 {
			return nil, fmt.Errorf("-runs: unknown run %q (want some of %s)", strings.TrimSpace(r), strings.Join(keys, ","))
		}
		want[i] = true
	}
	return want, nil
}

// ceilingAndPipeline measures the NATS async-publish ceiling and the hit
// pipeline, as o asks (0: not measured). A failure of either is reported,
// not fatal: the load runs' table is worth printing without them. The
// pipeline goes first: the ceiling runs in this process, and its garbage
// and its 200 MB of writes are then nobody's concern.
func ceilingAndPipeline(ctx context.Context, o options, work, root string) (ceiling, pipeline float64) {
	var err error
	if o.pipeline {
		fmt.Fprintln(os.Stderr, "bench: BenchmarkPipeline ...")
		if pipeline, err = pipelineBench(ctx, root, work); err != nil {
			fmt.Fprintf(os.Stderr, "bench: pipeline: %v\n", err)
		}
	}
	if o.ceiling {
		fmt.Fprintln(os.Stderr, "bench: NATS async-publish ceiling ...")
		settleDisk()
		if ceiling, err = natsCeiling(ctx, filepath.Join(work, "ceiling"), o.ceilingN); err != nil {
			fmt.Fprintf(os.Stderr, "bench: nats ceiling: %v\n", err)
		}
	}
	return ceiling, pipeline
}

type appSecrets struct{ token, key, suite, corp string }

// randString is n random letters and digits: the throwaway token and
// EncodingAESKey of a bench run.
func randString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is one started server process.
type proc struct {
	cmd      *exec.Cmd
	url      string // callback URL
	natsURL  string
	creds    string
	stream   string
	log      *os.File
	exited   chan error
	stopOnce bool
}

func (s *proc) pid() int { return s.cmd.Process.Pid }

// stop ends the process: SIGTERM, then SIGKILL after 20 s.
func (s *proc) stop() {
	if s.stopOnce {
		return
	}
	s.stopOnce = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	_ = s.log.Close()
}

func startProc(dir string, pinned bool, env []string, name string, args ...string) (*proc, error) {
	if pinned {
		args = append([]string{"-c", "0", name}, args...)
		name = "taskset"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &proc{cmd: cmd, log: logf, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	return s, nil
}

// waitHTTP waits until url answers anything, or the process exits.
func (s *proc) waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.exited:
			s.exited <- err
			return fmt.Errorf("server exited: %v (log %s)", err, s.log.Name())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not up after 30s (log %s)", url, s.log.Name())
}

func startService(ctx context.Context, bin, dir string, pinned bool, sec appSecrets, o options) (*proc, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := serviceConfig(httpPort, natsPort, sec, o)
	path := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	env := []string{"BENCH_TOKEN=" + sec.token, "BENCH_AES_KEY=" + sec.key,
		"BENCH_SUITE_SECRET=" + randString(32), "BENCH_PERM_CODE=" + randString(32)}
	if o.serviceEnv != "" {
		env = append(env, strings.Split(o.serviceEnv, ",")...)
	}
	s, err := startProc(dir, pinned, env, bin, "serve", "-config", path)
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if err := s.waitHTTP(ctx, base+"/readyz"); err != nil {
		s.stop()
		return nil, err
	}
	s.url = base + "/callback/archive"
	s.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	s.creds = filepath.Join(dir, "nats", "credentials", "operator.nk")
	s.stream = "WECOM_CALLBACKS"
	return s, nil
}

// serviceConfig is the service's bench config; secrets come from the
// environment startService gives it (BENCH_*).
func serviceConfig(httpPort, natsPort int, sec appSecrets, o options) string {
	// Callbacks only: the fetch's API base is a closed loopback port and
	// its poll is hourly, so what is measured is the callback path, as in
	// the baseline. The callback stream gets room for every record of a
	// run (-callbacks-max-bytes), as the baseline's stream has no limit, and
	// the store the room that takes beyond the other streams' defaults.
	return fmt.Sprintf(`http: {listen: "127.0.0.1:%d"}
admin: {listen: ""}
nats: {store_dir: nats, listen: "127.0.0.1:%d", callbacks_max_bytes: %d, max_store_bytes: %d}
fetch: {poll_interval: 1h}
log: {level: %s}
apps:
  - name: archive
    mode: archive
    token: ${BENCH_TOKEN}
    encoding_aes_key: ${BENCH_AES_KEY}
    receive_id: %s
    api_base_url: http://127.0.0.1:1
    suite_id: %s
    suite_secret: ${BENCH_SUITE_SECRET}
    corps: [{corp_id: %s, permanent_code: "${BENCH_PERM_CODE}"}]
%s`, httpPort, natsPort, o.maxCBBytes, o.maxCBBytes+1<<30, o.logLevel, sec.suite, sec.suite, sec.corp, o.extraYAML)
}

var baselineNATS = regexp.MustCompile(`nats (nats://\S+)`)

func startBaseline(ctx context.Context, bin, dir string, pinned bool, sec appSecrets) (*proc, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	env := []string{"BASELINE_TOKEN=" + sec.token, "BASELINE_ENCODING_AES_KEY=" + sec.key}
	s, err := startProc(dir, pinned, env, bin, "-listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"-store-dir", filepath.Join(dir, "nats"), "-receive-id", sec.suite, "-app", "archive")
	if err != nil {
		return nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if err := s.waitHTTP(ctx, base+"/"); err != nil {
		s.stop()
		return nil, err
	}
	logText, _ := os.ReadFile(s.log.Name())
	mm := baselineNATS.FindSubmatch(logText)
	if mm == nil {
		s.stop()
		return nil, fmt.Errorf("baseline did not print its NATS URL (log %s)", s.log.Name())
	}
	s.url = base + "/callback/archive"
	s.natsURL = string(mm[1])
	s.stream = "BASELINE_CALLBACKS"
	return s, nil
}

// loadgenReport is the part of loadgen -o json that is read here.
type loadgenReport struct {
	Sent       int            `json:"sent"`
	Errors     int            `json:"errors"`
	Status     map[string]int `json:"status"`
	PerSecond  float64        `json:"ok_per_s"`
	ElapsedSec float64        `json:"elapsed_s"`
	P50Ms      float64        `json:"p50_ms"`
	P99Ms      float64        `json:"p99_ms"`
	FirstError string         `json:"first_error"`
	Stored     int            `json:"stored"`
	Missing    int            `json:"missing"`
	Checked    bool           `json:"checked"`
}

// lastLine is the last non-empty line of s: loadgen's error, after its
// progress lines.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// loadRun starts t's server, sends it sc's load with loadgen, and
// measures the server while the load lasts and until it is idle again;
// loadgen's check of the stored records comes after the measuring.
func loadRun(ctx context.Context, t target, sc scenario, dir, loadgen string, sec appSecrets, o options) (*measure, error) {
	s, err := t.start(ctx, dir, sc.pinned)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	cmd := loadgenCmd(ctx, s, sc, loadgen, sec, o)
	var stdout bytes.Buffer
	stderr := &markWriter{mark: []byte(loadDone), seen: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	// loadgen waits on stdin between the load and its check of the
	// records, whose reads (one request per record) would otherwise be
	// charged to the server as load.
	resume, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}

	loadAvg := loadAverage()
	cpu0, err := cpuTicks(s.pid())
	if err != nil {
		return nil, err
	}
	sampler := startRSSSampler(s.pid())
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var runErr error
	done := false
	// loadgen's CPU up to "load done" is the load's: it has sent and
	// counted every callback and waits for the go-ahead to check. taskset
	// execs loadgen, so the pid is loadgen's in the pinned run as well.
	var lgTicks int64
	select {
	case <-stderr.seen:
		lgTicks, err = cpuTicks(cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
	case runErr = <-exited:
		done = true
		// Exited before the check (an error, or nothing to check): its
		// whole life was the load.
		lgTicks = int64((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()) * clkTck / time.Second)
	}
	maxRSS := sampler.stop()
	// Work the load left behind (the intake consumer's backlog) is the
	// load's too: wait until the server is idle, at most 30 s.
	cpu1, err := waitIdle(s.pid(), 30*time.Second)
	if err != nil {
		return nil, err
	}
	hwm, _, err := memStatus(s.pid())
	if err != nil {
		return nil, err
	}
	_, _ = io.WriteString(resume, "\n")
	_ = resume.Close()
	if !done {
		runErr = <-exited
	}
	var rep loadgenReport
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		return nil, fmt.Errorf("loadgen: %v: %s", runErr, stderr.String())
	}
	// A loadgen that failed only because records are missing still
	// measured the load: the table shows the missing count. So did one
	// whose check could not finish (say, it timed out reading a very
	// large run): the row keeps its figures and says the check failed.
	checkErr := ""
	switch {
	case runErr == nil || rep.Missing > 0:
	case rep.Sent > 0 && !rep.Checked:
		checkErr = lastLine(stderr.String())
	default:
		return nil, fmt.Errorf("loadgen: %v: %s", runErr, stderr.String())
	}
	m := newMeasure(rep, cpu1-cpu0, hwm, maxRSS)
	m.CheckErr = checkErr
	m.LoadgenCPUPerCB, m.LoadgenCores = loadgenCPU(lgTicks, rep.Sent, rep.ElapsedSec)
	m.LoadAvg = loadAvg
	return m, nil
}

// loadgenCPU is loadgen's CPU ticks over its load as µs per callback sent
// and as a share of one core over the load's elapsed seconds.
func loadgenCPU(ticks int64, sent int, elapsed float64) (perCB, cores float64) {
	sec := float64(ticks) / clkTck
	if sent > 0 {
		perCB = sec * 1e6 / float64(sent)
	}
	if elapsed > 0 {
		cores = sec / elapsed
	}
	return perCB, cores
}

// saturated is the share of its core at or above which loadgen, pinned
// to a core of its own, is taken to be the bottleneck of the pinned run:
// it had next to no idle time left to send with.
const saturated = 0.9

// loadAverage is the machine's 1-minute load average (0 if unreadable):
// printed with the figures, since on a shared machine they move with it.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// loadgenCmd is the loadgen command of sc against s: JSON out, and
// -hold-check, so that its check waits until loadRun has measured. On the
// pinned run loadgen gets the second core, the server the first.
func loadgenCmd(ctx context.Context, s *proc, sc scenario, loadgen string, sec appSecrets, o options) *exec.Cmd {
	args := []string{"-url", s.url, "-receive-id", sec.suite, "-corp", sec.corp, "-kind", o.kind,
		"-c", strconv.Itoa(o.conns), "-duration", o.duration.String(),
		"-rate", strconv.FormatFloat(sc.rate, 'f', -1, 64), "-nats-url", s.natsURL, "-stream", s.stream, "-o", "json",
		"-hold-check"}
	if s.creds != "" {
		args = append(args, "-nats-creds", s.creds, "-nats-inbox", "_INBOX_OPERATOR")
	}
	name := loadgen
	if sc.pinned {
		args = append([]string{"-c", "1", loadgen}, args...)
		name = "taskset"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LOADGEN_TOKEN="+sec.token, "LOADGEN_ENCODING_AES_KEY="+sec.key)
	return cmd
}

// newMeasure is one run's row data: loadgen's report, and the server's
// CPU ticks, peak and largest sampled RSS. Transport errors count as not
// answered 200, and CPU is charged per callback answered 200.
func newMeasure(rep loadgenReport, ticks int64, hwm, maxRSS float64) *measure {
	m := &measure{OKPerSec: rep.PerSecond, P50: rep.P50Ms, P99: rep.P99Ms, HWM: hwm, RSS: maxRSS,
		Stored: rep.Stored, Missing: rep.Missing, LoadgenErr: rep.FirstError}
	for code, n := range rep.Status {
		if code != "200" {
			m.Non200 += n
		}
	}
	m.Non200 += rep.Errors
	if ok := rep.Status["200"]; ok > 0 {
		m.CPUPerCB = float64(ticks) / clkTck * 1e6 / float64(ok)
	}
	return m
}

// printRun prints the records line of one run, round i of rounds, with
// its CPU and memory: every run's, not only the rows the table has for
// them, since a fixed-rate run's CPU per callback is how a lever shows
// below saturation, and the table's medians hide each round's own.
func printRun(w io.Writer, server, scenario string, i, rounds int, m *measure) {
	note := ""
	if m.LoadgenErr != "" {
		note = "; first error: " + m.LoadgenErr
	}
	if m.CheckErr != "" {
		note += "; CHECK NOT DONE: " + m.CheckErr
	}
	round := ""
	if rounds > 1 {
		round = fmt.Sprintf(", round %d", i+1)
	}
	fmt.Fprintf(w, "%s, %s%s: %.0f callbacks/s, p99 %.2f ms; %d stored, %d answered 200 but missing, %d not answered 200; %.0f µs CPU per callback, RSS peak %.0f MiB (load average %.2f)%s\n",
		server, scenario, round, m.OKPerSec, m.P99, m.Stored, m.Missing, m.Non200, m.CPUPerCB, m.HWM, m.LoadAvg, note)
}

// loadDone is the line loadgen -hold-check writes once the load is over
// (cmd/loadgen's LoadDone).
const loadDone = "loadgen: load done"

// markWriter keeps what is written to it and closes seen once mark has
// been written.
type markWriter struct {
	mark []byte
	seen chan struct{}

	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
}

func (w *markWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), w.mark) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *markWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// clkTck is USER_HZ, the unit of /proc/PID/stat's utime and stime; 100 on
// every Linux architecture Go supports.
const clkTck = 100

// cpuTicks is the process's utime+stime.
func cpuTicks(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + s, nil
}

// memStatus returns VmHWM and VmRSS in MiB.
func memStatus(pid int) (hwm, rss float64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for key, dst := range map[string]*float64{"VmHWM:": &hwm, "VmRSS:": &rss} {
			if rest, ok := strings.CutPrefix(line, key); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				*dst = kb / 1024
			}
		}
	}
	return hwm, rss, sc.Err()
}

// waitIdle waits until the process used under 2% of a core over half a
// second, or timeout passes, and returns its CPU ticks then.
func waitIdle(pid int, timeout time.Duration) (int64, error) {
	end := time.Now().Add(timeout)
	prev, err := cpuTicks(pid)
	if err != nil {
		return 0, err
	}
	for time.Now().Before(end) {
		time.Sleep(500 * time.Millisecond)
		cur, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		if cur-prev <= 1 {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

type rssSampler struct {
	stopc chan struct{}
	done  chan float64
}

// startRSSSampler samples VmRSS every 200 ms until stop, which returns
// the largest sample.
func startRSSSampler(pid int) *rssSampler {
	r := &rssSampler{stopc: make(chan struct{}), done: make(chan float64, 1)}
	go func() {
		var top float64
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if _, rss, err := memStatus(pid); err == nil && rss > top {
				top = rss
			}
			select {
			case <-r.stopc:
				r.done <- top
				return
			case <-t.C:
			}
		}
	}()
	return r
}

func (r *rssSampler) stop() float64 {
	close(r.stopc)
	return <-r.done
}

var hitsPerSec = regexp.MustCompile(`([0-9.]+) hits/s`)

// settleDisk has the kernel write out what earlier runs left dirty in
// the page cache (each load run stores some 300 MB, the ceiling 200 MB),
// so that the writeback is not charged to the next run (the pipeline's
// 20 iterations, after the ceiling, moved between 52k and 71k hits/s in
// two runs in a row).
func settleDisk() { syscall.Sync() }

// pipelineIterations is BenchmarkPipeline's -benchtime: 50 batches of
// 1,000 messages, about half a second of timed windows. 20 were too few
// to hold the figure still.
const pipelineIterations = "50x"

// pipelineBench runs BenchmarkPipeline and returns its hits/s. The test
// binary is built into work first, so that the build's CPU and disk
// writes are over before the benchmark starts; it runs in its package's
// directory, as go test would run it.
func pipelineBench(ctx context.Context, root, work string) (float64, error) {
	bin := filepath.Join(work, "app.test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./internal/app")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("build: %w: %s", err, out)
	}
	settleDisk()
	cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", "^BenchmarkPipeline$", "-test.benchtime", pipelineIterations)
	cmd.Dir = filepath.Join(root, "internal", "app")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, out)
	}
	m := hitsPerSec.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no hits/s in: %s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// results holds each row's measures, by scenario name and then server
// name, one a round, in the order the rounds ran.
type results map[string]map[string][]*measure

func (r results) add(scenario, server string, m *measure) {
	if r[scenario] == nil {
		r[scenario] = map[string][]*measure{}
	}
	r[scenario][server] = append(r[scenario][server], m)
}

// rounds is the most rounds any row has: the rows of a finished run all
// have -rounds, and one that stopped at an error fewer.
func (r results) rounds() int {
	n := 0
	for _, servers := range r {
		for _, ms := range servers {
			n = max(n, len(ms))
		}
	}
	return n
}

// median is the median of f over ms, the mean of the middle two of an
// even count; ms is not empty.
func median(ms []*measure, f func(*measure) float64) float64 {
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ratio is a ÷ b as the table prints it, or "" where either is 0 (not
// measured).
func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// printTable prints the table of res: each cell the median of its row's
// rounds, the ratio that of the medians, and with more than one round a
// last column with each round's own ratio, so that the spread shows.
func printTable(w io.Writer, o options, canPin bool, scenarios []scenario, res results, ceiling, pipeline float64) {
	host, _ := os.Hostname()
	rounds := res.rounds()
	of := ""
	if rounds > 1 {
		of = fmt.Sprintf("; each figure the median of %d rounds", rounds)
	}
	fmt.Fprintf(w, "\n%s, %d CPUs, %s/%s, %s; %s per run, %d connections, %s callbacks, service log level %s%s\n\n",
		host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), o.duration, o.conns, o.kind, o.logLevel, of)
	if rounds > 1 {
		fmt.Fprintln(w, "| | this service | baseline | ratio | ratio in each round |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	} else {
		fmt.Fprintln(w, "| | this service | baseline | ratio |")
		fmt.Fprintln(w, "|---|---:|---:|---:|")
	}
	// line prints a row of both servers' f in sc, with their ratio when
	// withRatio.
	line := func(label, unit string, f func(*measure) float64, format string, sc scenario, withRatio bool) {
		svc, base := res[sc.name]["service"], res[sc.name]["baseline"]
		each := "" // the last column's cell, with more than one round
		if rounds > 1 {
			each = " |"
			if withRatio && len(svc) > 0 && len(base) > 0 {
				var rs []string
				for i := range min(len(svc), len(base)) {
					r := ratio(f(svc[i]), f(base[i]))
					if r == "" {
						r = "–" // keeps each round in its place
					}
					rs = append(rs, r)
				}
				each = " " + strings.Join(rs, " ") + " |"
			}
		}
		if len(svc) == 0 || len(base) == 0 {
			fmt.Fprintf(w, "| %s | n/a | n/a | |%s\n", label, each)
			return
		}
		a, b := median(svc, f), median(base, f)
		last := " |" // the ratio cell, empty
		if withRatio {
			last = " " + ratio(a, b) + " |"
		}
		fmt.Fprintf(w, "| %s | "+format+"%s | "+format+"%s |%s%s\n", label, a, unit, b, unit, last, each)
	}
	row := func(label, unit string, f func(*measure) float64, format string, sc scenario) {
		line(label, unit, f, format, sc, true)
	}
	pinned, shared, p99, low := scenarios[0], scenarios[1], scenarios[2], scenarios[3]
	if !canPin {
		cells := "| | | |"
		if rounds > 1 {
			cells = "| | | | |"
		}
		fmt.Fprintln(w, "| (no taskset or fewer than 2 CPUs: pinned run skipped) "+cells)
	}
	row("callbacks/s, server pinned to 1 core", "", func(m *measure) float64 { return m.OKPerSec }, "%.0f", pinned)
	row("callbacks/s, 2 cores shared with loadgen", "", func(m *measure) float64 { return m.OKPerSec }, "%.0f", shared)
	row("server CPU per callback, pinned", " µs", func(m *measure) float64 { return m.CPUPerCB }, "%.0f", pinned)
	row("server CPU per callback, shared", " µs", func(m *measure) float64 { return m.CPUPerCB }, "%.0f", shared)
	row("RSS peak (VmHWM), pinned run", " MiB", func(m *measure) float64 { return m.HWM }, "%.0f", pinned)
	row("RSS peak (VmHWM), shared run", " MiB", func(m *measure) float64 { return m.HWM }, "%.0f", shared)
	row("p50 latency at "+p99.name, " ms", func(m *measure) float64 { return m.P50 }, "%.2f", p99)
	row("p99 latency at "+p99.name, " ms", func(m *measure) float64 { return m.P99 }, "%.2f", p99)
	row("callbacks/s achieved at "+p99.name, "", func(m *measure) float64 { return m.OKPerSec }, "%.0f", p99)
	row("RSS under load (max VmRSS) at "+low.name, " MiB", func(m *measure) float64 { return m.RSS }, "%.0f", low)
	row("p99 latency at "+low.name, " ms", func(m *measure) float64 { return m.P99 }, "%.2f", low)
	// loadgen's own cost: not a property of the servers, so no ratio.
	noRatio := func(label, unit string, f func(*measure) float64, format string, sc scenario) {
		line(label, unit, f, format, sc, false)
	}
	noRatio("loadgen CPU per callback, pinned", " µs", func(m *measure) float64 { return m.LoadgenCPUPerCB }, "%.1f", pinned)
	noRatio("loadgen's use of its core, pinned", "%", func(m *measure) float64 { return 100 * m.LoadgenCores }, "%.0f", pinned)
	noRatio("loadgen CPU per callback, shared", " µs", func(m *measure) float64 { return m.LoadgenCPUPerCB }, "%.1f", shared)
	noRatio("loadgen CPU, shared run (cores)", "", func(m *measure) float64 { return m.LoadgenCores }, "%.2f", shared)
	fmt.Fprintln(w)
	for _, name := range []string{"service", "baseline"} {
		for i, m := range res[pinned.name][name] {
			if m.LoadgenCores < saturated {
				continue
			}
			round := ""
			if rounds > 1 {
				round = fmt.Sprintf(" (round %d)", i+1)
			}
			fmt.Fprintf(w, "WARNING: loadgen used %.0f%% of its core in the pinned run%s against the %s: "+
				"its callbacks/s measure loadgen, not the %s\n", 100*m.LoadgenCores, round, name, name)
		}
	}
	for _, sc := range scenarios {
		for i := range rounds {
			for _, name := range []string{"service", "baseline"} {
				ms := res[sc.name][name]
				if i >= len(ms) {
					continue
				}
				printRun(w, name, sc.name, i, rounds, ms[i])
			}
		}
	}
	if ceiling > 0 {
		fmt.Fprintf(w, "\nNATS ceiling (async publish, 1 KiB, msg ids, file store): %.0f msgs/s\n", ceiling)
	}
	if pipeline > 0 {
		fmt.Fprintf(w, "hit pipeline (BenchmarkPipeline): %.0f hits/s", pipeline)
		if ceiling > 0 {
			fmt.Fprintf(w, " = %.2f of the NATS ceiling", pipeline/ceiling)
		}
		fmt.Fprintln(w)
	}
}
