// Package fetch drives get_hit_msg_list for every (app, corp): it reads the
// durable cursor, fetches a page with the newest hit token (or, when there is
// none, within a token-less budget), hands the page to a Publisher, and only
// once every event of the page is acked moves the cursor, with a
// compare-and-set, and goes on while WeCom says there is more.
//
// One scheduler serves every corp (sched.go): a dispatcher hands corps with
// work to a bounded pool of workers, a page at a time, callbacks before
// polls, so that thousands of quiet corps cost no goroutine or timer and a
// busy corp cannot starve the others. Polls are spread over the poll
// interval, under a global token-less budget and one per corp. One fetch
// per (app, corp) publishes at a time across all replicas, under a lease
// kept in JetStream KV, which a poll takes only once it has found something
// to publish. Callbacks that arrive before a fetch starts coalesce into it.
// Backfill re-reads from a point in time. Every fetch's outcome goes into a
// shared per-(app, corp) health entry (health.go), which status reports and
// alerts read. docs/scale.md has the costs and the reasons.
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
// they are fixed (no WithCorps).
type App struct {
	Name  string
	API   HitLister
	Corps []string
}

// Corps tells which corps an app serves now: *corps.Directory. Asked on
// every callback and poll, and before every page, so a corp authorized or
// cancelled at run time is fetched, or not, from then on, even before
// Forget.
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

// Defaults of New's options.
const (
	DefaultPageSize = 1000
	// DefaultLeaseTTL bounds how long a replica that dies mid-fetch (kill
	// -9, a lost node) keeps others from fetching its (app, corp): about
	// this long after its last renewal another replica takes over. Short,
	// yet above a JetStream election (4-9 s): renewals are retried through
	// one, so a live holder keeps its lease (lease.keep).
	DefaultLeaseTTL = 10 * time.Second
	// DefaultPollInterval is the configuration's fetch.poll_interval.
	DefaultPollInterval       = 5 * time.Minute
	DefaultTokenlessPerMinute = 6
	// DefaultTokenlessBudget is the token-less calls per minute across
	// every corp: 10,000 corps polled every DefaultPollInterval take
	// 2,000, which leaves a fifth for fetches whose token expired.
	DefaultTokenlessBudget = 2400
	// DefaultWorkers is how many pages are fetched at once. WeCom answers
	// a page in tens to hundreds of milliseconds, so 16 workers fetch
	// dozens of pages a second, on as many pooled connections.
	DefaultWorkers = 16
	// hitTokenTTL: WeCom's hit tokens live 10 minutes; we stop using one a
	// little before, so a page is not refused half-way for the sake of seconds.
	hitTokenTTL    = 10 * time.Minute
	hitTokenMargin = 30 * time.Second
)

// ErrInvalidOption: an option has a bad value.
var ErrInvalidOption = errors.New("fetch: invalid option")

// Fetcher runs fetches. Create it with New, then Setup, then Run.
type Fetcher struct {
	js   jetstream.KeyValueManager
	apps map[string]App
	pub  Publisher
	log  zerolog.Logger
	opts options
	id   string // this replica, in leases

	cursors, leases, tokens jetstream.KeyValue
	health                  *healthRecorder // health.go

	// The scheduler (sched.go), under mu: corps with work, by key; the
	// queues; kick wakes the dispatcher, which hands corps to the
	// workers through handoffs. budget is the global token-less budget.
	mu       sync.Mutex
	corps    map[string]*corp
	urgent   fifo
	polls    fifo
	delayed  later
	kick     chan struct{}
	handoffs chan handoff
	budget   *budget
	ctx      context.Context // Run's; nil before, done after

	// draining is set (under mu) by Drain; active counts the fetches under
	// way and idle, when set, is closed as active drops to zero. A
	// WaitGroup would not do: fetches start while Drain may be waiting.
	draining atomic.Bool
	active   int
	idle     chan struct{}
}

// New returns a Fetcher of apps on kv's buckets (it binds them in Setup), publishing with pub; it
// does no I/O. Options and their defaults: WithPageSize 1000, WithLeaseTTL
// 10s, WithPollInterval 5m (WithPollInterval(0): no polling),
// WithTokenlessPerMinute 6 per corp, WithTokenlessBudget 2400 across all
// corps, WithWorkers 16, WithReplicas 1, WithKVMaxBytes none, WithClock
// time.Now, WithMetrics none, WithCorps the Apps' own lists, WithLogger
// zerolog.Nop(). A bad option fails with ErrInvalidOption.
func New(kv jetstream.KeyValueManager, apps []App, pub Publisher, opts ...Option) (*Fetcher, error) {
	o := options{
		pageSize: DefaultPageSize, leaseTTL: DefaultLeaseTTL, pollInterval: DefaultPollInterval,
		tokenlessPerMinute: DefaultTokenlessPerMinute, tokenlessBudget: DefaultTokenlessBudget,
		workers: DefaultWorkers, replicas: 1, now: time.Now, log: zerolog.Nop(),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if pub == nil {
		return nil, fmt.Errorf("%w: publisher is required", ErrInvalidOption)
	}
	f := &Fetcher{
		js: kv, pub: pub, opts: o, id: nuid.Next(),
		apps:     make(map[string]App, len(apps)),
		log:      o.log.With().Str("component", "fetch").Logger(),
		corps:    map[string]*corp{},
		kick:     make(chan struct{}, 1),
		handoffs: make(chan handoff),
		budget:   newBudget(o.tokenlessBudget),
		health:   newHealthRecorder(o.now, o.metrics),
	}
	fixed := make(map[string][]string, len(apps))
	for _, a := range apps {
		if a.Name == "" || a.API == nil {
			return nil, fmt.Errorf("%w: app needs a name and an API", ErrInvalidOption)
		}
		f.apps[a.Name] = a
		fixed[a.Name] = a.Corps
		o.metrics.init(a.Name, a.Corps)
	}
	if f.opts.corps == nil {
		f.opts.corps = corps.NewDirectory(fixed, nil)
	}
	return f, nil
}

// Setup creates or binds the KV buckets, updating a bucket whose config
// differs; replicas running it at once is safe (broker.EnsureKeyValue,
// which retries transient errors until ctx ends).
func (f *Fetcher) Setup(ctx context.Context) error {
	var err error
	f.cursors, err = f.ensure(ctx, jetstream.KeyValueConfig{
		Bucket: CursorBucket, Description: "get_hit_msg_list cursor per app and corp",
		History: 5, Storage: jetstream.FileStorage, Replicas: f.opts.replicas,
		MaxBytes: f.opts.kvMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	f.leases, err = f.ensure(ctx, jetstream.KeyValueConfig{
		Bucket: LeaseBucket, Description: "which replica fetches an app and corp",
		TTL: f.opts.leaseTTL, Storage: jetstream.FileStorage, Replicas: f.opts.replicas,
		MaxBytes: f.opts.kvMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	f.tokens, err = f.ensure(ctx, jetstream.KeyValueConfig{
		Bucket: TokenBucket, Description: "newest hit token per app and corp",
		TTL: hitTokenTTL, Storage: jetstream.FileStorage, Replicas: f.opts.replicas,
		MaxBytes: f.opts.kvMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	f.health.kv, err = f.ensure(ctx, jetstream.KeyValueConfig{
		Bucket: HealthBucket, Description: "how fetches are going per app and corp",
		History: 1, Storage: jetstream.FileStorage, Replicas: f.opts.replicas,
		MaxBytes: f.opts.kvMaxBytes, // 0: none
	})
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	return nil
}

// ensure binds a bucket, its operations counted in the metrics.
func (f *Fetcher) ensure(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := broker.EnsureKeyValue(ctx, f.js, cfg)
	return f.opts.metrics.count(kv), err
}

// Run starts the scheduler (its dispatcher, workers and poller) and lets
// Handle start fetches; it returns when ctx is cancelled and every fetch
// under way has stopped.
func (f *Fetcher) Run(ctx context.Context) error {
	f.mu.Lock()
	f.ctx = ctx
	f.mu.Unlock()
	var wg sync.WaitGroup
	run := func(fn func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(ctx)
		}()
	}
	run(f.dispatch)
	for range f.opts.workers {
		run(f.work)
	}
	if f.opts.pollInterval > 0 {
		run(f.poll)
	}
	run(f.watchGauges)
	<-ctx.Done()
	wg.Wait()
	f.shutdown(ctx.Err())
	return nil
}

// shutdown ends every fetch under way or waiting, once the workers have
// stopped: leases are freed and callbacks told, so their records are
// retried by another replica or the next start.
func (f *Fetcher) shutdown(cause error) {
	stopped := fmt.Errorf("fetch: stopped: %w", cause)
	f.mu.Lock()
	all := make([]*corp, 0, len(f.corps))
	for k, c := range f.corps {
		c.stopped = stopped
		all = append(all, c)
		delete(f.corps, k)
	}
	f.urgent, f.polls, f.delayed = fifo{}, fifo{}, nil
	f.mu.Unlock()
	for _, c := range all {
		f.abandon(c)
	}
}

// Running reports whether Run is running: fetches can be started.
func (f *Fetcher) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctx != nil && f.ctx.Err() == nil
}

// Poll asks for a token-less fetch of every (app, corp) now, without
// waiting for them; they go out within the token-less budget, after any
// callback's. Run's poller spreads the same over the poll interval.
func (f *Fetcher) Poll() {
	for _, ac := range f.allCorps() {
		f.trigger(ac[0], ac[1], wecomhit.SourcePoll)
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

// trigger asks for a fetch of (app, corp) and queues it; nil when the
// fetcher is not running or app no longer serves corp.
func (f *Fetcher) trigger(app, name, source string) *ticket {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.corpLocked(app, name)
	if c == nil {
		return nil
	}
	t := c.trigger(source)
	f.enqueueLocked(c)
	return t
}

// Handle is the intake handler for hit_keyword and program_notify: it
// stores the token (or notify id) as the newest for its (app, corp), starts
// a fetch or joins the one waiting to start, and returns once a fetch that
// began after the callback arrived has finished. Other kinds return nil.
func (f *Fetcher) Handle(ctx context.Context, cb *wecomhit.Callback) error {
	if cb.Kind != wecomhit.KindHitKeyword && cb.Kind != wecomhit.KindProgramNotify {
		return nil
	}
	if _, ok := f.apps[cb.App]; !ok {
		return fmt.Errorf("fetch: callback for unconfigured app %q", cb.App)
	}
	name, err := f.opts.corps.Resolve(cb.App, cb.CorpID)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if f.draining.Load() {
		return errDraining
	}
	if cb.Token != "" || cb.NotifyID != "" {
		if err := f.putToken(ctx, cb.App, name, cb); err != nil {
			return err
		}
		if !f.serves(cb.App, name) {
			// Cancelled since Resolve: Forget may have purged the
			// bucket before the token landed, which would keep it for
			// up to its TTL. Every replica calls Forget once its
			// Directory has dropped the corp (internal/app), so any
			// token stored before this check is purged by that, or by
			// this.
			if err := f.tokens.Purge(ctx, key(cb.App, name)); err != nil && !kvNotFound(err) {
				return fmt.Errorf("fetch: drop the token of a cancelled corp: %w", err)
			}
			return fmt.Errorf("fetch: %s/%s: no longer served", cb.App, name)
		}
	}
	f.mu.Lock()
	c := f.corpLocked(cb.App, name)
	if c == nil {
		f.mu.Unlock()
		if _, err := f.opts.corps.Resolve(cb.App, name); err != nil {
			return fmt.Errorf("fetch: %w", err) // cancelled meanwhile
		}
		return errors.New("fetch: not running")
	}
	t, first := c.join()
	f.enqueueLocked(c)
	f.mu.Unlock()
	if !first {
		// A fetch that has not started yet is already held open by an
		// earlier callback, whose record stays unacked until that fetch
		// succeeds, and this one's token is stored: holding this record
		// too would only tie up a consumer slot.
		return nil
	}
	return t.wait(ctx)
}

// corpLocked returns the scheduler's record of (app, corp), creating it if
// needed; nil if Run has not started or has stopped, or app no longer
// serves corp. The caller holds f.mu.
func (f *Fetcher) corpLocked(app, name string) *corp {
	if f.ctx == nil || f.ctx.Err() != nil {
		return nil
	}
	k := key(app, name)
	c := f.corps[k]
	if c == nil {
		// Asked under f.mu, which Forget takes after the corp left the
		// Corps: a callback or poll that resolved the corp just before
		// its cancellation must not start a fetch Forget will not see,
		// which would write the corp's lease, cursor and health again.
		if _, err := f.opts.corps.Resolve(app, name); err != nil {
			return nil
		}
		c = newCorp(f, app, name)
		f.corps[k] = c
	}
	return c
}

// Drain makes fetches stop after their current page (their callbacks are
// retried later, by this replica or another) and refuses new ones, then
// waits for the fetches under way to stop, or for ctx.
func (f *Fetcher) Drain(ctx context.Context) error {
	f.mu.Lock()
	f.draining.Store(true)
	f.kickLocked() // delayed fetches are ended now, not when due
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

// Forget stops fetching (app, corp) on this replica at once, cutting a
// fetch under way, and deletes what the fetcher keeps about it in NATS: its
// cursor, lease, hit token and health entry (a cancelled corp's data must
// go). Call it after the corp left the Corps, or a poll or callback starts
// it again. Every replica calls it; the deletes are idempotent.
func (f *Fetcher) Forget(ctx context.Context, app, name string) error {
	k := key(app, name)
	f.mu.Lock()
	c := f.corps[k]
	delete(f.corps, k)
	var stop context.CancelFunc
	var idle chan struct{}
	if c != nil {
		c.stopped = fmt.Errorf("fetch: %s/%s stopped: %w", app, name, context.Canceled)
		stop, idle = c.stop, c.idle
	}
	f.mu.Unlock()
	switch {
	case idle != nil:
		// A worker is on it: cut its page; it ends the fetch (release).
		stop()
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("fetch: forget %s/%s: %w", app, name, ctx.Err())
		}
	case c != nil:
		f.abandon(c)
	}
	f.health.forget(k)
	f.opts.metrics.forget(app, name)
	var errs []error
	for _, kv := range []jetstream.KeyValue{f.cursors, f.leases, f.tokens, f.health.kv} {
		if kv == nil {
			continue
		}
		// Purge, not Delete: no earlier revision (a cursor's history) stays.
		if err := kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, fmt.Errorf("fetch: forget %s/%s in %s: %w", app, name, kv.Bucket(), err))
		}
	}
	return errors.Join(errs...)
}
