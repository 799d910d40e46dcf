package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/admin"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/callback"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corpauth"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/rulecache"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// Main is the running service: NATS, the callback intake, the HTTP
// server and the admin listener. Tests run it in-process on 127.0.0.1:0.
type Main struct {
	cfg *config.Config
	log zerolog.Logger
	reg *prometheus.Registry // served on the admin listener's /metrics

	broker    *broker.Broker
	room      roomCache // Ready's storage reading (room.go)
	intake    *intake.Store
	intakeM   *intake.Metrics
	dlq       *deadletter.Stream
	publisher *publish.Publisher
	fetcher   *fetch.Fetcher
	stores    *wecom.Stores
	clients   map[string]*wecom.Client
	rules     *rulecache.Cache
	// corpView answers which corps each app serves (corps.go); auth
	// applies authorization callbacks, nil when the registry is off.
	corpView    *CorpView
	auth        *corpauth.Handler
	corpChanges *corpQueue
	warmer      *rulecache.Warmer // lists corps' rule names in the background
	listener    net.Listener

	// adminHandler serves the admin listener (admin.go) and the callback
	// listener's /healthz and /readyz. The listener is nil when
	// admin.listen is empty.
	adminHandler  *admin.Handler
	adminServer   *http.Server
	adminListener net.Listener
	adminServed   chan struct{}

	// life is what Close undoes, registered by each part as Open opens
	// it (lifecycle.go).
	life Lifecycle
	// rulesWarmed is closed when the start-up rule listing (m.warmer)
	// has ended, whether it loaded every name or gave up.
	rulesWarmed <-chan struct{}

	draining atomic.Bool

	// now is the clock of the callback replay window, token expiry and
	// fetch; time.Now unless a test calls UseClock.
	now func() time.Time
}

// NewMain returns a Main for cfg; it does no I/O.
func NewMain(cfg *config.Config, log zerolog.Logger) *Main {
	return &Main{cfg: cfg, log: log, reg: newRegistry(), now: time.Now, life: Lifecycle{Log: log}}
}

// UseClock replaces time.Now before Open, for tests that run hours of a
// simulator's real clock in seconds. Waits and timers stay real.
func (m *Main) UseClock(now func() time.Time) { m.now = now }

// mainClock gives wecom.Client the Main's clock with real sleeps.
type mainClock struct{ now func() time.Time }

func (c mainClock) Now() time.Time { return c.now() }

func (c mainClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Open connects to (or starts) NATS, creates the streams, binds the HTTP
// listener and starts serving. Bind errors reach the caller. Each part, once
// open, registers the cleanup that stops it (m.life), so a failed Open
// closes what it opened and Close stops the parts in reverse order.
func (m *Main) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = m.Close(closeCtx)
		}
	}()
	// Registered first, so it runs last: /metrics and a failing /readyz
	// stay visible while the rest drains.
	m.life.OnClose("admin listener", m.closeAdmin)
	if m.listener != nil {
		// From UseListener: ours to close from now on, served or not.
		m.life.OnClose("callback listener", CloseListener(m.listener))
	}
	if err := m.openBroker(ctx); err != nil {
		return err
	}
	n := m.cfg.NATS
	m.intakeM = intake.NewMetrics(m.reg)
	for _, a := range m.cfg.Apps {
		m.intakeM.InitApp(a.Name)
	}
	for _, c := range IntakeConsumers() {
		m.intakeM.InitConsumer(c.Durable)
	}
	m.intake, err = intake.New(m.broker.JetStream(), n.SubjectPrefix, append(IntakeOptions(m.cfg, m.broker.Embedded()),
		intake.WithMetrics(m.intakeM), intake.WithLogger(m.log))...)
	if err != nil {
		return err
	}
	// One deadline for every stream and bucket: replicas started together
	// on a cluster still forming wait for it (broker.EnsureStream retries,
	// logging through the context's logger) rather than exit at the first
	// error.
	setupCtx, cancel := context.WithTimeout(m.log.WithContext(ctx), n.SetupTimeout)
	defer cancel()
	setupStart := time.Now()
	if err := m.intake.Setup(setupCtx); err != nil {
		return err
	}
	if err := m.openPipeline(setupCtx); err != nil {
		return err
	}
	m.log.Debug().Dur("took", time.Since(setupStart)).Msg("streams and buckets set up")
	if err := m.serveCallbacks(); err != nil {
		return err
	}
	if err := m.openAdmin(); err != nil {
		return err
	}
	ev := m.log.Info().Str("http", m.Addr()).Strs("apps", m.cfg.AppNames())
	if a := m.AdminAddr(); a != "" {
		ev.Str("admin", a).Bool("admin_api", m.adminHandler.APIOn())
	}
	if u := m.broker.ClientURL(); u != "" {
		ev.Str("nats", u)
	}
	ev.Bool("nats_embedded", m.broker.Embedded()).Msg("receiver started")
	return nil
}

// openBroker connects to NATS, or starts the embedded server.
func (m *Main) openBroker(ctx context.Context) error {
	b, err := broker.Open(ctx, BrokerOptions(m.cfg), m.log)
	if err != nil {
		return err
	}
	m.broker = b
	// Draining flushes pending publishes and waits for their acks.
	m.life.OnClose("nats", b.Close)
	return nil
}

// serveCallbacks builds the callback handler and serves it on the
// callback listener, bound here unless UseListener gave one.
func (m *Main) serveCallbacks() error {
	apps := make([]callback.App, 0, len(m.cfg.Apps))
	for _, a := range m.cfg.Apps {
		c, err := crypto.New(a.Token.Reveal(), a.EncodingAESKey.Reveal(), a.ReceiveID)
		if err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		apps = append(apps, callback.App{Name: a.Name, Crypter: c})
	}
	h, err := callback.New(apps, m.intake,
		callback.WithLogger(m.log),
		callback.WithMaxBodyBytes(m.cfg.HTTP.MaxBodyBytes),
		callback.WithAckTimeout(m.cfg.HTTP.AckTimeout),
		callback.WithTimestampWindow(m.cfg.HTTP.TimestampWindow),
		callback.WithAcceptedLogLimit(m.cfg.Log.AcceptedPerSecond),
		callback.WithMetrics(callback.NewMetrics(m.reg)),
		callback.WithClock(m.now),
	)
	if err != nil {
		return err
	}
	// The admin handlers serve the callback listener's /healthz and
	// /readyz too, so they are built even when admin.listen is off.
	if err := m.newAdmin(); err != nil {
		return err
	}
	if m.listener == nil {
		m.listener, err = net.Listen("tcp", m.cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http listen: %w", err)
		}
		m.life.OnClose("callback listener", CloseListener(m.listener))
	}
	srv := newCallbackServer(h, m.routes(h), m.log, m.cfg.HTTP.IdleTimeout)
	lis := newLimitListener(m.listener, m.cfg.HTTP.MaxConnections, m.log.With().Str("listener", "callback").Logger())
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(lis); err != nil {
			m.log.Error().Err(err).Msg("http server stopped")
		}
	}()
	m.life.OnClose("http server", func(ctx context.Context) error {
		// Stops accepting and finishes in-flight requests, each already
		// bounded by the ack timeout.
		err := srv.ShutdownWithContext(ctx)
		// A Shutdown before Serve took the listener returns at once and
		// leaves it open: closing it ends Serve either way.
		_ = lis.Close()
		<-served
		return err
	})
	// Runs before the server stops.
	m.life.OnClose("readiness", m.failReadiness)
	return nil
}

// failReadiness makes Ready fail (errDraining), then, with http.ready_grace,
// keeps serving that long, so that load balancers see /readyz fail and stop
// sending before the listener closes.
func (m *Main) failReadiness(ctx context.Context) error {
	m.draining.Store(true)
	if g := m.cfg.HTTP.ReadyGrace; g > 0 {
		select {
		case <-time.After(g):
		case <-ctx.Done():
		}
	}
	return nil
}

// UseListener makes Open serve callbacks on l instead of binding
// http.listen: for callers that must hand the address to someone (the
// simulator, in tests and the demo) before Open, without a window in which
// another process could take the port. Open takes l over: Close closes it,
// and so does an Open that fails.
func (m *Main) UseListener(l net.Listener) { m.listener = l }

// Addr is the address the HTTP server listens on.
func (m *Main) Addr() string {
	if m.listener == nil {
		return ""
	}
	return m.listener.Addr().String()
}

// openPipeline sets up the WeCom clients, the hit and dead-letter streams,
// the fetcher, and the intake consumers that feed it, and starts the last
// ones. setupCtx bounds the set-up only; what it starts runs until Close.
func (m *Main) openPipeline(setupCtx context.Context) error {
	if err := m.openCorps(setupCtx); err != nil {
		return err
	}
	apps, err := m.openClients()
	if err != nil {
		return err
	}
	if err := m.openStages(setupCtx, apps); err != nil {
		return err
	}
	m.startPipeline()
	return nil
}

// openCorps opens the WeCom clients' stores and the corp registry's view,
// and seeds the registry from the file.
func (m *Main) openCorps(setupCtx context.Context) error {
	js := m.broker.JetStream()
	var err error
	m.stores, err = wecom.OpenStores(setupCtx, js, StoreConfig(m.cfg))
	if err != nil {
		return err
	}
	// The registry's watch queues changes from the moment it starts; the
	// change loop, started with the pipeline, takes them.
	m.corpChanges = newCorpQueue()
	m.corpView, err = OpenCorpView(setupCtx, m.cfg, js, true, m.log, m.onCorpChange)
	if err != nil {
		return err
	}
	m.life.OnClose("corp registry watch", func(context.Context) error {
		m.corpView.Close()
		return nil
	})
	// Seeded after the watch started, so that corps new to the registry
	// are announced like any other.
	return m.corpView.Seed(setupCtx, m.cfg)
}

// openClients makes each app's WeCom client, and the fetcher's view of the
// apps.
func (m *Main) openClients() ([]fetch.App, error) {
	dir := m.corpView.Dir
	m.clients = make(map[string]*wecom.Client, len(m.cfg.Apps))
	apps := make([]fetch.App, 0, len(m.cfg.Apps))
	wecomMetrics := wecom.NewMetrics(m.reg)
	for _, a := range m.cfg.Apps {
		opts := append([]wecom.Option{wecom.WithLogger(m.log), wecom.WithMetrics(wecomMetrics),
			wecom.WithClock(mainClock{m.now})}, m.corpView.ClientOptions(a)...)
		c, err := wecom.New(WeComApp(a), m.stores, opts...)
		if err != nil {
			return nil, fmt.Errorf("app %s: %w", a.Name, err)
		}
		m.clients[a.Name] = c
		// Metric series are pre-created for the corps the file lists; the
		// registry's corps, thousands perhaps, get theirs when first
		// fetched: pre-creating ten series a corp for 10,000 corps took
		// 55 MiB (BENCHMARKS.md, "Corps at scale"). Corps here only
		// pre-creates series; fetch asks dir which corps an app serves.
		listed := make([]string, 0, len(a.Corps)+1)
		for _, corp := range a.Corps {
			listed = append(listed, corp.CorpID)
		}
		if a.CorpID != "" {
			listed = append(listed, a.CorpID)
		}
		listed = slices.DeleteFunc(listed, func(corp string) bool { return !dir.Has(a.Name, corp) })
		apps = append(apps, fetch.App{Name: a.Name, API: c, Corps: listed})
	}
	return apps, nil
}

// newWarmer lists rule names in the background, a few corps at a time
// (rulecache.Warmer), so that start-up makes no WeCom call per corp: the
// corps served now, and each corp authorized later (corpChangeLoop). A
// corp's rules are listed with the client of the first app that serves it.
func (m *Main) newWarmer() (*rulecache.Warmer, error) {
	dir := m.corpView.Dir
	var served []string
	for _, a := range m.cfg.Apps {
		served = append(served, dir.Corps(a.Name)...)
	}
	return rulecache.NewWarmer(m.rules, func(corp string) rulecache.Lister {
		if c := m.clientFor(corp); c != nil {
			return RuleLister{Client: c}
		}
		return nil
	}, served, rulecache.WithWarmLogger(m.log))
}

// clientFor is the WeCom client of the first app that serves corp (asked at
// each call: corps come and go), nil if none does. Rule names are a corp's,
// whichever app reads them.
func (m *Main) clientFor(corp string) *wecom.Client {
	for _, a := range m.cfg.Apps {
		if m.corpView.Dir.Has(a.Name, corp) {
			return m.clients[a.Name]
		}
	}
	return nil
}

// openStages sets up the rule cache, the dead-letter and hit streams, the
// fetcher and the authorization handler.
func (m *Main) openStages(setupCtx context.Context, apps []fetch.App) (err error) {
	n := m.cfg.NATS
	js := m.broker.JetStream()
	dir := m.corpView.Dir
	getter := func(corp string) rulecache.Getter {
		if c := m.clientFor(corp); c != nil {
			return RuleNamer{Client: c}
		}
		return nil
	}
	if m.rules, err = rulecache.NewFunc(getter, rulecache.WithLogger(m.log)); err != nil {
		return err
	}
	// Closed, not dropped: the admin API, which stops last, may still use it.
	m.life.OnClose("rule cache", func(context.Context) error {
		m.rules.Close()
		return nil
	})
	if m.warmer, err = m.newWarmer(); err != nil {
		return err
	}
	if m.dlq, err = deadletter.New(js, n.SubjectPrefix, DeadLetterOptions(m.cfg)...); err != nil {
		return err
	}
	publishMetrics := publish.NewMetrics(m.reg)
	for _, a := range apps {
		for _, corp := range a.Corps {
			publishMetrics.Init(a.Name, corp)
		}
	}
	// Setup sets up the dead-letter stream too, after WECOM_HITS has given
	// up the dlq subjects an older version gave it.
	m.publisher, err = publish.New(js, n.SubjectPrefix, append(PublishOptions(m.cfg),
		publish.WithRuleNames(m.rules), publish.WithLogger(m.log),
		publish.WithMetrics(publishMetrics), publish.WithDeadLetters(m.dlq))...)
	if err != nil {
		return err
	}
	if err := m.publisher.Setup(setupCtx); err != nil {
		return err
	}
	// Corp lifecycle events exist only with the registry; the stream's
	// room is reserved in the store (config.ReservedBytes) only then.
	if m.cfg.Corps.Enabled() {
		if err := m.publisher.SetupCorp(setupCtx); err != nil {
			return err
		}
	}
	fo := append(FetchOptions(m.cfg), fetch.WithLogger(m.log), fetch.WithMetrics(fetch.NewMetrics(m.reg)),
		fetch.WithClock(m.now), fetch.WithCorps(dir))
	m.fetcher, err = fetch.New(js, apps, m.publisher, fo...)
	if err != nil {
		return err
	}
	if err := m.fetcher.Setup(setupCtx); err != nil {
		return err
	}
	if m.corpView.Reg != nil {
		if m.auth, err = m.newCorpAuth(); err != nil {
			return err
		}
	}
	return nil
}

// startPipeline starts what runs until Close: the corp change loop, the
// health gauges, the intake compactor, the rule warm-up, the fetcher and
// the intake consumers.
func (m *Main) startPipeline() {
	js := m.broker.JetStream()
	runCtx, stop := context.WithCancel(context.Background())
	// The deployment's health facts as gauges, read from NATS like
	// `receiver status` does; never part of Ready.
	healthTarget := HealthTarget(m.cfg)
	healthTarget.Corps = m.corpView.Dir.Corps
	healthMetrics := health.NewMetrics(m.reg, healthTarget)
	m.reg.MustRegister(m.readyGauge())
	var wg sync.WaitGroup
	wg.Go(func() { m.corpChangeLoop(runCtx) })
	wg.Go(func() { health.Watch(runCtx, js, healthTarget, healthMetrics, health.Refresh, m.log) })
	// Handled records would otherwise stay until callback_max_age and
	// fill WECOM_CALLBACKS, which then refuses callbacks.
	wg.Go(func() { m.intake.RunCompactor(runCtx, IntakeDurables(), intake.DefaultCompactAt) })
	wg.Go(func() { m.intake.RunDedup(runCtx) })
	m.rulesWarmed = m.warmer.Started()
	wg.Go(func() { m.warmer.Run(runCtx) })
	wg.Go(func() { _ = m.fetcher.Run(runCtx) })
	for _, opts := range IntakeConsumers() {
		opts.DeadLetters = m.dlq
		wg.Go(func() {
			if err := m.intake.Consume(runCtx, intake.HandlerFunc(m.dispatch), opts); err != nil {
				m.log.Error().Err(err).Str("consumer", opts.Durable).Msg("intake consumer stopped")
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	m.life.OnClose("pipeline", func(ctx context.Context) error {
		return m.stopPipeline(ctx, stop, done)
	})
}

// stopPipeline lets fetches finish the page they are on, then stops
// everything startPipeline started and waits for it (until ctx ends).
// Their callbacks are left unacked for another replica (or the next
// start). Past the grace, a fetch is cut mid-page: its cursor has not
// moved, so the page is fetched again later and de-duplication drops what
// was published.
func (m *Main) stopPipeline(ctx context.Context, stop context.CancelFunc, done <-chan struct{}) error {
	// At most half of what is left of the shutdown budget, so that
	// stopping the consumers and draining NATS still have time after a
	// fetch that uses all of its grace.
	grace := drainGrace
	if d, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(d)/2)
	}
	graceCtx, cancel := context.WithTimeout(ctx, grace)
	if err := m.fetcher.Drain(graceCtx); err != nil {
		m.log.Warn().Err(err).Msg("fetches did not finish their pages in time")
	}
	cancel()
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dispatch routes a stored callback: hits to the fetcher, suite tickets to
// the token source; other kinds need nothing and are acked. A callback for
// an app or corp the configuration does not have is a dead letter at once
// (intake.Reject): retrying cannot help until someone configures it, and
// then `receiver dlq replay` brings it back.
func (m *Main) dispatch(ctx context.Context, cb *wecomhit.Callback) error {
	a, ok := m.cfg.App(cb.App)
	if !ok {
		return intake.Reject(wecomhit.ReasonUnknownApp, fmt.Errorf("app %q is not configured", cb.App))
	}
	switch cb.Kind {
	case wecomhit.KindHitKeyword, wecomhit.KindProgramNotify:
		if err := m.checkCorp(a, cb); errors.Is(err, errCorpCancelled) {
			return nil
		} else if err != nil {
			return err
		}
		return m.fetcher.Handle(ctx, cb)
	case wecomhit.KindCreateAuth, wecomhit.KindChangeAuth, wecomhit.KindCancelAuth, wecomhit.KindResetPermanentCode:
		return m.dispatchAuth(ctx, cb)
	case wecomhit.KindSuiteTicket:
		err := m.stores.Tickets.HandleCallback(ctx, cb)
		if errors.Is(err, wecom.ErrValidation) {
			return intake.Reject(wecomhit.ReasonBadRecord, err)
		}
		return err
	}
	m.log.Debug().Str("app", cb.App).Str("kind", string(cb.Kind)).Msg("callback needs no action")
	return nil
}

// errCorpCancelled: the callback's corp cancelled the suite.
var errCorpCancelled = errors.New("corp cancelled")

// checkCorp accepts a hit callback whose corp the app serves. Otherwise
// it is a dead letter at once, except for an archive app with the
// registry on: a corp the registry does not know yet may be one whose
// create_auth is being handled (its first hits can come first, on another
// consumer), so the record is retried; and a cancelled corp's callback is
// acknowledged and left alone (errCorpCancelled), since its data is to be
// deleted, not kept as a dead letter.
func (m *Main) checkCorp(a *config.App, cb *wecomhit.Callback) error {
	_, err := m.corpView.Dir.Resolve(a.Name, cb.CorpID)
	if err == nil {
		return nil
	}
	if m.corpView.Mirror != nil && a.Mode == config.ModeArchive && cb.CorpID != "" {
		c, known := m.corpView.Mirror.Get(a.Name, cb.CorpID)
		if !known {
			return fmt.Errorf("app %s: corp %q not (yet) in the registry: %w", a.Name, cb.CorpID, err)
		}
		if c.State == corps.Cancelled {
			m.log.Info().Str("app", a.Name).Str("corp_id", cb.CorpID).Msg("callback of a cancelled corp dropped")
			return errCorpCancelled
		}
	}
	return intake.Reject(wecomhit.ReasonUnknownCorp, err)
}

// Broker exposes the NATS connection, for tests and subcommands.
func (m *Main) Broker() *broker.Broker { return m.broker }

func (m *Main) routes(h *callback.Handler) http.Handler {
	r := chi.NewRouter()
	r.Use(requestID, m.recoverer)
	h.Mount(r)
	m.adminHandler.MountProbes(r)
	return r
}

// drainGrace bounds how long shutdown lets fetches finish their page.
const drainGrace = 10 * time.Second

// errDraining: the service is shutting down and takes no new work.
var errDraining = errors.New("draining")

// Ready reports whether the service can do its work: not shutting down,
// NATS connected, both streams present, and the fetcher running.
func (m *Main) Ready(ctx context.Context) error {
	if m.draining.Load() {
		return errDraining
	}
	if err := m.broker.Ready(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := m.intake.Ready(ctx); err != nil {
		return err
	}
	if err := m.publisher.Ready(ctx); err != nil {
		return err
	}
	// A replica whose store cannot take one more callback of the largest
	// size is not ready: its callbacks would get 503 store_full.
	if err := m.callbackRoom(ctx); err != nil {
		return err
	}
	if !m.fetcher.Running() {
		return errors.New("fetcher not running")
	}
	return nil
}

// recoverer turns a handler panic into a 500 and a log line, instead of
// chi's stack dump on stderr.
func (m *Main) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				m.log.Error().Str("request_id", middleware.GetReqID(r.Context())).
					Str("panic", fmt.Sprint(v)).Msg("handler panicked")
				writeText(w, http.StatusInternalServerError, "500 internal\n")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Close shuts down in the reverse order of Open, as the cleanups each part
// registered there say: readiness fails first so load balancers stop
// sending, the HTTP server stops accepting and finishes in-flight requests,
// fetches finish their page and the pipeline stops, then NATS drains, which
// flushes pending publishes and waits for their acks, and last the admin
// listener stops. It is idempotent.
func (m *Main) Close(ctx context.Context) error {
	return m.life.Close(ctx)
}

// closeAdmin stops the admin listener, if it was opened.
func (m *Main) closeAdmin(ctx context.Context) error {
	if m.adminServer == nil {
		return nil
	}
	err := m.adminServer.Shutdown(ctx)
	if err != nil {
		_ = m.adminServer.Close()
	}
	<-m.adminServed
	return err
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
