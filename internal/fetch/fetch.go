// Package fetch drives get_hit_msg_list for every (app, corp): it reads the
// durable cursor, fetches a page with the newest hit token (or, when there is
// none, within a token-less budget), hands the page to a Publisher, and only
// once every event of the page is acked moves the cursor, with a
// compare-and-set, and goes on while WeCom says there is more.
//
// One fetch per (app, corp) runs at a time across all replicas, under a lease
// kept in JetStream KV. Callbacks that arrive during a fetch coalesce into it.
// A periodic token-less poll catches hits whose callbacks were lost, and
// Backfill re-reads from a point in time. Every fetch's outcome goes into a
// shared per-(app, corp) health entry (health.go), which status reports and
// alerts read.
//
// It does not receive callbacks (intake hands them in through Handle), talk
// HTTP (a HitLister does), or encode events (the Publisher does).
package fetch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// HitLister fetches one page of hits for a corp: *wecom.Client.
type HitLister interface {
	GetHitMsgList(ctx context.Context, corp string, req wecom.HitMsgListRequest) (*wecom.HitMsgList, error)
}

// Publisher publishes a page and returns once every event is acked.
type Publisher interface {
	Publish(ctx context.Context, page *wecomhit.HitPage) (wecomhit.PageResult, error)
}

// App is one configured app: its name, its client, and its corps when
// they are fixed (Options.Corps unset).
type App struct {
	Name  string
	API   HitLister
	Corps []string
}

// Corps tells which corps an app serves now: *corps.Directory. Asked on
// every callback and poll, so a corp authorized or cancelled at run time is
// fetched, or not, from then on.
type Corps interface {
	// Corps lists app's corps, sorted.
	Corps(app string) []string
	// Resolve returns corp if app serves it, app's only corp if corp is
	// empty, or an error.
	Resolve(app, corp string) (string, error)
}

// KV bucket names.
const (
	CursorBucket = "wecom_cursors"
	LeaseBucket  = "wecom_fetch_leases"
	TokenBucket  = "wecom_hit_tokens"
)

// Defaults for Options left zero.
const (
	DefaultPageSize = 1000
	// DefaultLeaseTTL bounds how long a replica that dies mid-fetch (kill
	// -9, a lost node) keeps others from fetching its (app, corp): about
	// this long after its last renewal another replica takes over. Short,
	// yet above a JetStream election (4-9 s): renewals are retried through
	// one, so a live holder keeps its lease (lease.keep).
	DefaultLeaseTTL           = 10 * time.Second
	DefaultTokenlessPerMinute = 6
	// hitTokenTTL: WeCom's hit tokens live 10 minutes; we stop using one a
	// little before, so a page is not refused half-way for the sake of seconds.
	hitTokenTTL    = 10 * time.Minute
	hitTokenMargin = 30 * time.Second
)

// ErrInvalidOption: an option has a bad value.
var ErrInvalidOption = errors.New("fetch: invalid option")

// Options tunes the fetcher. Zero values take the defaults.
type Options struct {
	// PageSize is get_hit_msg_list's limit (1..1000). Default 1000.
	PageSize int
	// LeaseTTL is how long a replica's claim on an (app, corp) lasts
	// without renewal; a replica that dies frees it after this. A lease
	// exists only while a fetch runs, renewed every fifth of it. Default
	// DefaultLeaseTTL (10s).
	LeaseTTL time.Duration
	// PollInterval is how often each (app, corp) is fetched without a
	// token, to catch hits whose callbacks were lost. 0, the default, turns
	// polling off, as fetch.poll_interval: 0 does in the configuration
	// (which has its own default).
	PollInterval time.Duration
	// TokenlessPerMinute caps token-less get_hit_msg_list calls per
	// (app, corp), keeping under WeCom's strict limit. Default 6.
	TokenlessPerMinute int
	// Replicas of the KV buckets. Default 1.
	Replicas int
	// KVMaxBytes caps each KV bucket, so that a full store elsewhere
	// cannot take their room (the server reserves it). Default 0: no cap.
	KVMaxBytes int64
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Metrics records pages, errors and cursor lag (NewMetrics). Default
	// nil: nothing is recorded.
	Metrics *Metrics
	// Corps tells which corps each app serves. Default: the Corps listed
	// in each App, fixed.
	Corps Corps
}

// Fetcher runs fetches. Create it with New, then Setup, then Run.
type Fetcher struct {
	js   jetstream.JetStream
	apps map[string]App
	pub  Publisher
	log  zerolog.Logger
	opts Options
	id   string // this replica, in leases

	cursors, leases, tokens jetstream.KeyValue
	health                  *healthRecorder // health.go

	mu      sync.Mutex
	workers map[string]*worker
	running map[string]workerRun // by key, as workers
	wg      sync.WaitGroup
	ctx     context.Context // Run's; workers live within it

	// draining is set (under mu) by Drain; active counts the fetches under
	// way and idle, when set, is closed as active drops to zero. A
	// WaitGroup would not do: fetches start while Drain may be waiting.
	draining atomic.Bool
	active   int
	idle     chan struct{}
}

// workerRun stops one worker (Forget) and tells when it has stopped.
type workerRun struct {
	stop context.CancelFunc
	done chan struct{}
}

// New returns a Fetcher; it does no I/O. Options and defaults: PageSize
// 1000, LeaseTTL 10s, PollInterval 0 (no polling), TokenlessPerMinute 6,
// Replicas 1, Corps the Apps' own lists.
func New(js jetstream.JetStream, apps []App, pub Publisher, log zerolog.Logger, opts Options) (*Fetcher, error) {
	if opts.PageSize == 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.TokenlessPerMinute == 0 {
		opts.TokenlessPerMinute = DefaultTokenlessPerMinute
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.PageSize < 1 || opts.PageSize > 1000:
		return nil, fmt.Errorf("%w: page size must be 1..1000", ErrInvalidOption)
	case opts.LeaseTTL < time.Second:
		return nil, fmt.Errorf("%w: lease ttl must be at least 1s", ErrInvalidOption)
	case opts.PollInterval < 0:
		return nil, fmt.Errorf("%w: poll interval must not be negative (0 is off)", ErrInvalidOption)
	case opts.TokenlessPerMinute < 1:
		return nil, fmt.Errorf("%w: token-less calls per minute must be positive", ErrInvalidOption)
	case pub == nil:
		return nil, fmt.Errorf("%w: publisher is required", ErrInvalidOption)
	}
	f := &Fetcher{
		js: js, pub: pub, opts: opts, id: nuid.Next(),
		apps:    make(map[string]App, len(apps)),
		log:     log.With().Str("component", "fetch").Logger(),
		workers: map[string]*worker{},
		running: map[string]workerRun{},
		health:  newHealthRecorder(opts.Now, opts.Metrics),
	}
	fixed := make(map[string][]string, len(apps))
	for _, a := range apps {
		if a.Name == "" || a.API == nil {
			return nil, fmt.Errorf("%w: app needs a name and an API", ErrInvalidOption)
		}
		f.apps[a.Name] = a
		fixed[a.Name] = a.Corps
		opts.Metrics.init(a.Name, a.Corps)
	}
	if f.opts.Corps == nil {
		f.opts.Corps = corps.NewDirectory(fixed, nil)
	}
	return f, nil
}

// Setup creates or binds the KV buckets, updating a bucket whose config
// differs; replicas running it at once is safe (broker.EnsureKeyValue,
// which retries transient errors until ctx ends).
func (f *Fetcher) Setup(ctx context.Context) error {
	var err error
	f.cursors, err = broker.EnsureKeyValue(ctx, f.js, jetstream.KeyValueConfig{
		Bucket: CursorBucket, Description: "get_hit_msg_list cursor per app and corp",
		History: 5, Storage: jetstream.FileStorage, Replicas: f.opts.Replicas,
		MaxBytes: f.opts.KVMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	f.leases, err = broker.EnsureKeyValue(ctx, f.js, jetstream.KeyValueConfig{
		Bucket: LeaseBucket, Description: "which replica fetches an app and corp",
		TTL: f.opts.LeaseTTL, Storage: jetstream.FileStorage, Replicas: f.opts.Replicas,
		MaxBytes: f.opts.KVMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	f.tokens, err = broker.EnsureKeyValue(ctx, f.js, jetstream.KeyValueConfig{
		Bucket: TokenBucket, Description: "newest hit token per app and corp",
		TTL: hitTokenTTL, Storage: jetstream.FileStorage, Replicas: f.opts.Replicas,
		MaxBytes: f.opts.KVMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	f.health.kv, err = broker.EnsureKeyValue(ctx, f.js, jetstream.KeyValueConfig{
		Bucket: HealthBucket, Description: "how fetches are going per app and corp",
		History: 1, Storage: jetstream.FileStorage, Replicas: f.opts.Replicas,
		MaxBytes: f.opts.KVMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	return nil
}

// Run starts the poll loop and lets Handle start fetches; it returns when
// ctx is cancelled and every running fetch has stopped.
func (f *Fetcher) Run(ctx context.Context) error {
	f.mu.Lock()
	f.ctx = ctx
	f.mu.Unlock()
	defer f.wg.Wait()
	f.refreshLag(ctx)
	f.refreshHealth(ctx)
	lag := time.NewTicker(lagRefresh)
	defer lag.Stop()
	var poll <-chan time.Time // nil: polling off
	if f.opts.PollInterval > 0 {
		t := time.NewTicker(f.opts.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll:
			f.Poll()
		case <-lag.C:
			f.refreshLag(ctx)
			f.refreshHealth(ctx)
		}
	}
}

// lagRefresh is how often every replica recomputes the cursor lag gauge
// from the shared cursor, so that all replicas report the same, current
// lag, not the value from their own last fetch.
const lagRefresh = 15 * time.Second

// refreshLag sets every (app, corp)'s cursor lag from its stored cursor.
// Failures leave the gauge as it was.
func (f *Fetcher) refreshLag(ctx context.Context) {
	if f.opts.Metrics == nil {
		return
	}
	for _, name := range f.appNames() {
		for _, corp := range f.opts.Corps.Corps(name) {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			cur, _, err := f.loadCursor(rctx, name, corp)
			cancel()
			if err != nil {
				f.log.Debug().Err(err).Str("app", name).Str("corp_id", corp).Msg("cursor lag not refreshed")
				continue
			}
			f.opts.Metrics.lag(name, corp, cur.LastHitTime, f.opts.Now())
		}
	}
}

// Running reports whether Run is running: fetches can be started.
func (f *Fetcher) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctx != nil && f.ctx.Err() == nil
}

// Poll starts a token-less fetch for every (app, corp) whose lease is free,
// without waiting for them.
func (f *Fetcher) Poll() {
	for _, name := range f.appNames() {
		for _, corp := range f.opts.Corps.Corps(name) {
			if w := f.worker(name, corp); w != nil {
				w.trigger(wecomhit.SourcePoll)
			}
		}
	}
}

func (f *Fetcher) appNames() []string {
	names := make([]string, 0, len(f.apps))
	for n := range f.apps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Handle is the intake handler for hit_keyword and program_notify: it
// stores the token (or notify id) as the newest for its (app, corp), starts
// a fetch or joins the one running, and returns once a fetch that began
// after the callback arrived has finished. Other kinds return nil.
func (f *Fetcher) Handle(ctx context.Context, cb *wecomhit.Callback) error {
	if cb.Kind != wecomhit.KindHitKeyword && cb.Kind != wecomhit.KindProgramNotify {
		return nil
	}
	if _, ok := f.apps[cb.App]; !ok {
		return fmt.Errorf("fetch: callback for unconfigured app %q", cb.App)
	}
	corp, err := f.opts.Corps.Resolve(cb.App, cb.CorpID)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if f.draining.Load() {
		return errDraining
	}
	if cb.Token != "" || cb.NotifyID != "" {
		if err := f.putToken(ctx, cb.App, corp, cb); err != nil {
			return err
		}
	}
	w := f.worker(cb.App, corp)
	if w == nil {
		if _, err := f.opts.Corps.Resolve(cb.App, corp); err != nil {
			return fmt.Errorf("fetch: %w", err) // cancelled meanwhile
		}
		return errors.New("fetch: not running")
	}
	t, first := w.join()
	if !first {
		// A fetch that has not started yet is already held open by an
		// earlier callback, whose record stays unacked until that fetch
		// succeeds, and this one's token is stored: holding this record
		// too would only tie up a consumer slot.
		return nil
	}
	return t.wait(ctx)
}

// Drain makes fetches stop after their current page (their callbacks are
// retried later, by this replica or another) and refuses new ones, then
// waits for the fetches under way to stop, or for ctx.
func (f *Fetcher) Drain(ctx context.Context) error {
	f.mu.Lock()
	f.draining.Store(true)
	if f.active == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fetch: drain: %w", ctx.Err())
	}
}

// begin registers a fetch about to start; false when draining.
func (f *Fetcher) begin() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining.Load() {
		return false
	}
	f.active++
	return true
}

// end registers a fetch that has stopped.
func (f *Fetcher) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active--
	if f.active == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// worker returns the (app, corp) worker, starting it if needed; nil if Run
// has not started or has stopped, or app no longer serves corp.
func (f *Fetcher) worker(app, corp string) *worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx == nil || f.ctx.Err() != nil {
		return nil
	}
	k := key(app, corp)
	w := f.workers[k]
	if w == nil {
		// Asked under f.mu, which Forget takes after the corp left the
		// Corps: a callback or poll that resolved the corp just before
		// its cancellation must not start a worker Forget will not see,
		// which would write the corp's lease, cursor and health again.
		if _, err := f.opts.Corps.Resolve(app, corp); err != nil {
			return nil
		}
		w = newWorker(f, app, corp)
		f.workers[k] = w
		ctx, stop := context.WithCancel(f.ctx)
		run := workerRun{stop: stop, done: make(chan struct{})}
		f.running[k] = run
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer close(run.done)
			w.loop(ctx)
		}()
	}
	return w
}

// Forget stops fetching (app, corp) on this replica at once, cutting a
// fetch under way, and deletes what the fetcher keeps about it in NATS: its
// cursor, lease, hit token and health entry (a cancelled corp's data must
// go). Call it after the corp left the Corps, or a poll or callback starts
// it again. Every replica calls it; the deletes are idempotent.
func (f *Fetcher) Forget(ctx context.Context, app, corp string) error {
	k := key(app, corp)
	f.mu.Lock()
	run, ok := f.running[k]
	delete(f.workers, k)
	delete(f.running, k)
	f.mu.Unlock()
	if ok {
		run.stop()
		select {
		case <-run.done:
		case <-ctx.Done():
			return fmt.Errorf("fetch: forget %s/%s: %w", app, corp, ctx.Err())
		}
	}
	f.health.forget(k)
	f.opts.Metrics.forget(app, corp)
	var errs []error
	for _, kv := range []jetstream.KeyValue{f.cursors, f.leases, f.tokens, f.health.kv} {
		if kv == nil {
			continue
		}
		// Purge, not Delete: no earlier revision (a cursor's history) stays.
		if err := kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, fmt.Errorf("fetch: forget %s/%s in %s: %w", app, corp, kv.Bucket(), err))
		}
	}
	return errors.Join(errs...)
}
