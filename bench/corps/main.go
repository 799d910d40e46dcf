// Command corps is the 10,000-corp benchmark of BENCHMARKS.md ("Corps at
// scale"): it builds the receiver and the simulator, runs them as processes
// on loopback with many authorized corps, and prints start-up to ready,
// idle RSS, token-less calls per minute at steady state, and the time from
// a cold corp's callback to its first event while one hot corp sends hits
// at a high rate.
//
//	go run ./bench/corps                         # 10,000 corps, defaults
//	go run ./bench/corps -corps 1000 -steady 30s # smaller and shorter
//
// The corps enter the corp registry as seeds of a first start; the
// figures are those of a second start, with the registry populated and
// only the hot corp left in the file, which is how a deployment whose
// corps authorized at run time restarts. Linux only (/proc). Every process
// listens on loopback and is stopped before the command returns; the run
// is bounded (about three minutes with the defaults).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/bench/internal/build"
)

type options struct {
	corps        int
	hotRate      float64
	cold         int
	coldGap      time.Duration
	steady       time.Duration
	pollInterval time.Duration
	logLevel     string
	keep         bool
	receiverBin  string
}

func main() {
	var o options
	flag.IntVar(&o.corps, "corps", 10000, "authorized corps besides the hot one")
	flag.Float64Var(&o.hotRate, "hot-rate", 92000, "the hot corp's messages per minute; with the rule the benchmark gives it, most messages hit (the hits per second printed are measured)")
	flag.IntVar(&o.cold, "cold", 20, "cold corps whose first callback is timed, one after another, while the hot corp runs")
	flag.DurationVar(&o.coldGap, "cold-gap", time.Second, "pause between two cold corps' messages")
	flag.DurationVar(&o.steady, "steady", time.Minute, "idle window over which token-less calls, KV operations and RSS are measured")
	flag.DurationVar(&o.pollInterval, "poll-interval", 5*time.Minute, "the receiver's fetch.poll_interval (its default)")
	flag.StringVar(&o.logLevel, "log-level", "warn", "the receiver's log level")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (binaries, store, logs)")
	flag.StringVar(&o.receiverBin, "receiver-bin", "", "receiver binary to measure instead of building ./cmd/receiver (an older build, to compare)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench corps:", err)
		os.Exit(1)
	}
}

const (
	hotCorp = "wwCorpABC123"
	suiteID = "wwArchiveSuite01"
)

func run(ctx context.Context, o options) error {
	if runtime.GOOS != "linux" {
		return errors.New("needs Linux (/proc)")
	}
	work, err := os.MkdirTemp("", "wecomhit-bench-corps-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	root, err := build.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	bins, err := build.Bins(ctx, root, work,
		map[string]string{"receiver": "./cmd/receiver", "wecomsim": "./cmd/wecomsim"},
		map[string]string{"receiver": o.receiverBin})
	if err != nil {
		return err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	httpPort, adminPort, natsPort, simPort := ports[0], ports[1], ports[2], ports[3]
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	env := []string{"BENCH_CORPS_KEY=" + base64.StdEncoding.EncodeToString(key)}
	rc := receiverConfig{http: httpPort, admin: adminPort, nats: natsPort, sim: simPort, o: o}

	fmt.Printf("corps benchmark: %d corps + 1 hot, poll_interval %s, %d CPUs, Go %s\n", o.corps, o.pollInterval, runtime.NumCPU(), runtime.Version())

	sim, err := seed(ctx, work, bins, rc, env)
	if err != nil {
		return err
	}
	defer sim.stop()
	simURL := fmt.Sprintf("http://127.0.0.1:%d", simPort)

	// Second start: the registry holds every corp, the file only the hot one.
	if err := os.WriteFile(filepath.Join(work, "receiver.yaml"), []byte(rc.yaml(false)), 0o600); err != nil {
		return err
	}
	rcv, ready, err := startReceiver(ctx, work, bins["receiver"], "receiver.yaml", env, httpPort)
	if err != nil {
		return err
	}
	defer rcv.stop()
	fmt.Printf("restart (registry populated, %d corps): ready in %s  [load %s]\n", o.corps+1, ready.Round(time.Millisecond), loadAvg())

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), natsAuth(filepath.Join(work, "nats", "credentials", "operator.nk")),
		nats.CustomInboxPrefix("_INBOX_OPERATOR"))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort)
	if err := steady(ctx, o, rcv, js, metricsURL, simURL); err != nil {
		return err
	}
	return hot(ctx, o, rcv, nc, simURL)
}

// seed starts the receiver with every corp in its file, which seeds the
// registry, then the simulator, with the receiver up to take its first
// suite_ticket, and stops the receiver. It returns the simulator, running.
func seed(ctx context.Context, work string, bins map[string]string, rc receiverConfig, env []string) (*proc, error) {
	if err := os.WriteFile(filepath.Join(work, "seed.yaml"), []byte(rc.yaml(true)), 0o600); err != nil {
		return nil, err
	}
	rcv, ready, err := startReceiver(ctx, work, bins["receiver"], "seed.yaml", env, rc.http)
	if err != nil {
		return nil, err
	}
	defer rcv.stop()
	fmt.Printf("first start (seeds %d corps into the registry): ready in %s  [load %s]\n", rc.o.corps+1, ready.Round(time.Millisecond), loadAvg())
	sim, err := startProc(work, "wecomsim.log", nil, bins["wecomsim"],
		"-addr", fmt.Sprintf("127.0.0.1:%d", rc.sim), "-corps", strconv.Itoa(rc.o.corps), "-rate", "-1",
		"-callback-url", fmt.Sprintf("http://127.0.0.1:%d/callback/archive", rc.http))
	if err != nil {
		return nil, err
	}
	simURL := fmt.Sprintf("http://127.0.0.1:%d", rc.sim)
	if err := waitHTTP(ctx, simURL+"/_sim/stats", 60*time.Second); err != nil {
		sim.stop()
		return nil, fmt.Errorf("simulator: %w (log %s)", err, sim.logPath)
	}
	if err := waitTicket(ctx, simURL); err != nil {
		sim.stop()
		return nil, err
	}
	if err := rcv.stop(); err != nil {
		sim.stop()
		return nil, fmt.Errorf("first receiver: %w (log %s)", err, rcv.logPath)
	}
	return sim, nil
}

// steady measures the idle receiver over o.steady: token-less calls, KV
// operations and WeCom calls per minute, and RSS at the end.
func steady(ctx context.Context, o options, rcv *proc, js jetstream.JetStream, metricsURL, simURL string) error {
	// Let the start settle (the first fetches' tokens, the rule warm-up's
	// first corps) before the window opens.
	if err := sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	m0, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	s0, err := simStats(simURL)
	if err != nil {
		return err
	}
	w0 := kvWrites(ctx, js)
	start := time.Now()
	if err := sleep(ctx, o.steady); err != nil {
		return err
	}
	w1 := kvWrites(ctx, js)
	m1, err := scrape(metricsURL)
	if err != nil {
		return err
	}
	s1, err := simStats(simURL)
	if err != nil {
		return err
	}
	perMin := 60 / time.Since(start).Seconds()
	rss, hwm := memory(rcv.pid())
	sum := func(m map[string]float64, prefix string) float64 {
		var v float64
		for k, x := range m {
			if strings.HasPrefix(k, prefix) {
				v += x
			}
		}
		return v
	}
	delta := func(prefix string) float64 { return (sum(m1, prefix) - sum(m0, prefix)) * perMin }
	fmt.Printf("steady state over %s, no traffic  [load %s]\n", o.steady, loadAvg())
	fmt.Printf("  idle RSS %.1f MiB (peak so far %.1f MiB), Go heap in use %.1f MiB, goroutines %.0f, metric series %d\n",
		rss, hwm, m1["go_memstats_heap_inuse_bytes"]/(1<<20), m1["go_goroutines"], len(m1))
	fmt.Printf("  metric series by family, the largest: %s\n", topFamilies(m1, 6))
	fmt.Printf("  token-less get_hit_msg_list calls: %.0f /min (receiver), %.0f get_hit_msg_list /min at the simulator\n",
		delta("wecom_receiver_fetch_tokenless_calls_total"),
		float64(s1.Requests["get_hit_msg_list"]-s0.Requests["get_hit_msg_list"])*perMin)
	fmt.Printf("  other WeCom calls /min: get_corp_token %.0f, get_rule_list %.0f (the rule warm-up; %d and %d since the simulator started)\n",
		float64(s1.Requests["get_corp_token"]-s0.Requests["get_corp_token"])*perMin,
		float64(s1.Requests["get_rule_list"]-s0.Requests["get_rule_list"])*perMin,
		s1.Requests["get_corp_token"], s1.Requests["get_rule_list"])
	var ops []string
	for _, b := range fetchBuckets {
		var parts []string
		for _, op := range []string{"get", "create", "update", "delete", "purge"} {
			if v := delta(fmt.Sprintf(`wecom_receiver_fetch_kv_ops_total{bucket="%s",op="%s"}`, b, op)); v >= 0.5 {
				parts = append(parts, fmt.Sprintf("%s %.0f", op, v))
			}
		}
		if len(parts) == 0 {
			parts = []string{"none"}
		}
		ops = append(ops, b+": "+strings.Join(parts, ", "))
	}
	fmt.Printf("  fetch KV operations /min: %s\n", strings.Join(ops, "; "))
	var writes []string
	for _, b := range fetchBuckets {
		writes = append(writes, fmt.Sprintf("%s %.0f", b, float64(w1[b]-w0[b])*perMin))
	}
	fmt.Printf("  KV writes /min (the buckets' streams): %s\n", strings.Join(writes, ", "))
	return nil
}

// fetchBuckets are the fetcher's KV buckets.
var fetchBuckets = []string{"wecom_cursors", "wecom_fetch_leases", "wecom_hit_tokens", "wecom_corp_health"}

// kvWrites reads how many writes each fetch bucket has had (its stream's
// last sequence): what any receiver version writes, metrics or not.
func kvWrites(ctx context.Context, js jetstream.JetStream) map[string]uint64 {
	out := map[string]uint64{}
	for _, b := range fetchBuckets {
		s, err := js.Stream(ctx, "KV_"+b)
		if err != nil {
			continue
		}
		if info, err := s.Info(ctx); err == nil {
			out[b] = info.State.LastSeq
		}
	}
	return out
}

// hot starts the hot corp, then times cold corps' first events one after
// another.
func hot(ctx context.Context, o options, rcv *proc, nc *nats.Conn, simURL string) error {
	ev := &events{waiting: map[string]chan time.Time{}}
	sub, err := nc.Subscribe("wecom.hit.>", ev.take)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	// A rule most of the hot corp's messages hit, beside the demo rules: a
	// high rate of hits for a moderate rate of messages, which is what
	// the simulator can generate on a small machine.
	if err := postJSON(simURL+"/_sim/corps/"+hotCorp+"/rules", `{"name": "bench: most messages", "words": ["好", "我", "请", "吗", "的", "单", "e", "a", "。", "？", "客", "订", "恭喜", "项目", "会员", "张伟", "李娜"]}`, nil); err != nil {
		return err
	}
	if err := postJSON(simURL+"/_sim/traffic", fmt.Sprintf(`{"corp_id": %q, "rate": %g}`, hotCorp, o.hotRate), nil); err != nil {
		return err
	}
	defer func() { _ = postJSON(simURL+"/_sim/traffic", fmt.Sprintf(`{"corp_id": %q, "rate": 0}`, hotCorp), nil) }()
	// Ramp up: the hot corp's backlog reaches a steady fetch.
	if err := sleep(ctx, 10*time.Second); err != nil {
		return err
	}
	s0, err := simStats(simURL)
	if err != nil {
		return err
	}
	e0 := ev.hotCount()
	start := time.Now()
	lat, missing, err := cold(ctx, o, ev, simURL)
	if err != nil {
		return err
	}
	s1, err := simStats(simURL)
	if err != nil {
		return err
	}
	elapsed := time.Since(start).Seconds()
	published := float64(ev.hotCount()-e0) / elapsed
	rss, hwm := memory(rcv.pid())
	late := 0
	for _, d := range lat {
		if d > 2*time.Second {
			late++
		}
	}
	fmt.Printf("hot corp running over %.0f s  [load %s]\n", elapsed, loadAvg())
	fmt.Printf("  hot corp: %.0f hits/s at the simulator, %.0f events/s published\n", float64(s1.Hits-s0.Hits)/elapsed, published)
	fmt.Printf("  cold corps' callback to first event (%d corps): min %s, median %s, p90 %s, max %s; over 2 s: %d; none within 30 s: %d\n",
		o.cold, q(lat, 0), q(lat, 0.5), q(lat, 0.9), q(lat, 1), late, missing)
	fmt.Printf("  RSS %.1f MiB (peak %.1f MiB)\n", rss, hwm)
	return nil
}

// events counts the hot corp's events and tells waiters when the message
// they wait for has its first event.
type events struct {
	mu      sync.Mutex
	hot     int
	waiting map[string]chan time.Time // msgid -> first event
}

func (e *events) take(m *nats.Msg) {
	corp := strings.SplitN(m.Subject, ".", 4)[2]
	e.mu.Lock()
	defer e.mu.Unlock()
	if corp == hotCorp {
		e.hot++
		return
	}
	var ev struct {
		MsgID string `json:"msgid"`
	}
	if json.Unmarshal(m.Data, &ev) == nil {
		if ch := e.waiting[ev.MsgID]; ch != nil {
			delete(e.waiting, ev.MsgID)
			ch <- time.Now()
		}
	}
}

func (e *events) hotCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hot
}

// cold sends one message to each of o.cold random quiet corps in turn and
// times it to its first event; it returns the times, sorted, and how many
// had none within 30 s.
func cold(ctx context.Context, o options, ev *events, simURL string) ([]time.Duration, int, error) {
	var lat []time.Duration
	missing := 0
	picked := map[int]bool{}
	for range o.cold {
		i := mrand.IntN(o.corps)
		for picked[i] {
			i = mrand.IntN(o.corps)
		}
		picked[i] = true
		corp := fmt.Sprintf("wwSimCorp%05d", i)
		ch := make(chan time.Time, 1)
		t0 := time.Now()
		var sent struct {
			MsgID string `json:"msg_id"`
		}
		// The message is recorded, and its hit callback sent, before the
		// answer: t0 is at or before the callback. The lock keeps its
		// event from being taken before it is waited for.
		ev.mu.Lock()
		err := postJSON(simURL+"/_sim/corps/"+corp+"/messages", "", &sent)
		if err == nil {
			ev.waiting[sent.MsgID] = ch
		}
		ev.mu.Unlock()
		if err != nil {
			return nil, 0, err
		}
		select {
		case at := <-ch:
			lat = append(lat, at.Sub(t0))
		case <-time.After(30 * time.Second):
			missing++
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		if err := sleep(ctx, o.coldGap); err != nil {
			return nil, 0, err
		}
	}
	slices.Sort(lat)
	return lat, missing, nil
}

// topFamilies lists the n metric families with the most series.
func topFamilies(m map[string]float64, n int) string {
	count := map[string]int{}
	for k := range m {
		name, _, _ := strings.Cut(k, "{")
		name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		count[name]++
	}
	names := make([]string, 0, len(count))
	for k := range count {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return count[b] - count[a] })
	var out []string
	for _, k := range names[:min(n, len(names))] {
		out = append(out, fmt.Sprintf("%s %d", k, count[k]))
	}
	return strings.Join(out, ", ")
}

// q is the p-quantile of sorted d.
func q(d []time.Duration, p float64) string {
	if len(d) == 0 {
		return "-"
	}
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))].Round(time.Millisecond).String()
}

type receiverConfig struct {
	http, admin, nats, sim int
	o                      options
}

// yaml is the receiver's configuration; with all, the file lists every
// corp (the seeding start), else only the hot one.
func (c receiverConfig) yaml(all bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `allow_sample_secrets: true
http: {listen: "127.0.0.1:%d"}
admin: {listen: "127.0.0.1:%d"}
nats: {store_dir: nats, listen: "127.0.0.1:%d"}
fetch: {poll_interval: %s}
log: {level: %s}
corps:
  encryption_keys: {bench: "${BENCH_CORPS_KEY}"}
  current_key: bench
apps:
  - name: archive
    mode: archive
    token: QDG6eK
    encoding_aes_key: jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C
    api_base_url: http://127.0.0.1:%d
    suite_id: %s
    suite_secret: demo-suite-secret
    corps:
      - {corp_id: %s, permanent_code: demo-permanent-code}
`, c.http, c.admin, c.nats, c.o.pollInterval, c.o.logLevel, c.sim, suiteID, hotCorp)
	if all {
		for i := range c.o.corps {
			fmt.Fprintf(&b, "      - {corp_id: wwSimCorp%05d, permanent_code: perm-%05d}\n", i, i)
		}
	}
	return b.String()
}

// startReceiver starts the receiver on cfg and returns once /readyz
// answers 200, with the time that took from the process's start.
func startReceiver(ctx context.Context, dir, bin, cfg string, env []string, httpPort int) (*proc, time.Duration, error) {
	p, err := startProc(dir, "receiver.log", env, bin, "serve", "-config", filepath.Join(dir, cfg))
	if err != nil {
		return nil, 0, err
	}
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort), 2*time.Minute); err != nil {
		p.stop()
		return nil, 0, fmt.Errorf("receiver: %w (log %s)", err, p.logPath)
	}
	return p, time.Since(p.started), nil
}

// waitTicket waits until the simulator has delivered a suite_ticket.
func waitTicket(ctx context.Context, simURL string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := simStats(simURL)
		if err == nil && st.Callbacks["suite_ticket"].Delivered > 0 {
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return errors.New("the simulator's suite_ticket was not delivered")
}

type stats struct {
	Requests  map[string]int `json:"requests"`
	Callbacks map[string]struct {
		Delivered int `json:"delivered"`
	} `json:"callbacks"`
	Hits int `json:"hits"`
}

func simStats(simURL string) (stats, error) {
	var st stats
	resp, err := http.Get(simURL + "/_sim/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func postJSON(u, body string, out any) error {
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", u, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// scrape reads the Prometheus text exposition into series -> value.
func scrape(u string) (map[string]float64, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// natsAuth reads the embedded server's operator credentials (an nkey seed).
func natsAuth(path string) nats.Option {
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return func(*nats.Options) error { return err }
	}
	return opt
}

type proc struct {
	cmd     *exec.Cmd
	logPath string
	started time.Time
	exited  chan error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func startProc(dir, logName string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, logName)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &proc{cmd: cmd, logPath: logPath, started: time.Now(), exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		p.exited <- cmd.Wait()
		logf.Close()
	}()
	return p, nil
}

// stop sends SIGTERM and waits (at most 30 s, then kills); idempotent.
func (p *proc) stop() error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		return errors.New("did not stop within 30 s")
	}
}

func waitHTTP(ctx context.Context, u string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s: %w", u, limit, err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// memory reads a process's VmRSS and VmHWM in MiB.
func memory(pid int) (rss, hwm float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
