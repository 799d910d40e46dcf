package fetch

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wecomhit/wecomhit"
)

// sources are the source label values of fetch_pages_total.
var sources = []string{wecomhit.SourceCallback, wecomhit.SourcePoll, wecomhit.SourceBackfill}

// Metrics are the fetcher's Prometheus metrics. Create them with NewMetrics
// and hand them to New with WithMetrics; New pre-creates the series of the
// configured apps and corps. A nil *Metrics records nothing.
type Metrics struct {
	pages     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	cursorLag *prometheus.GaugeVec
	// From HealthBucket (health.go).
	failures    *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	// The scheduler's traffic (sched.go).
	tokenlessCalls *prometheus.CounterVec
	kvOps          *prometheus.CounterVec
	queued         *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg (none when reg is
// nil):
//
//   - wecom_receiver_fetch_pages_total{app,corp,source}: pages fetched and
//     published, by what started the fetch, as the events' source: callback,
//     poll or backfill.
//
//   - wecom_receiver_fetch_page_duration_seconds{app}: one page,
//     get_hit_msg_list and the publish until the last PubAck.
//
//   - wecom_receiver_fetch_errors_total{app,corp}: fetches that failed (the
//     "fetch failed" log line), and failed backfills.
//
//   - wecom_receiver_cursor_lag_seconds{app,corp}: how far the cursor is
//     behind: the time of the last page minus the send time of the newest
//     message the cursor has passed. Set after every page, and at start from
//     the stored cursor; 0 until the cursor has passed a message.
//
//   - wecom_receiver_corp_consecutive_failures{app,corp}: fetches that
//     failed since the last success, on any replica (from HealthBucket).
//
//   - wecom_receiver_corp_last_success_timestamp_seconds{app,corp}: when a
//     fetch last succeeded, on any replica; 0 until one has.
//
//   - wecom_receiver_fetch_tokenless_calls_total{app}: get_hit_msg_list
//     calls made without a hit token (polls, and fetches whose token
//     expired), the calls the global budget caps.
//
//   - wecom_receiver_fetch_kv_ops_total{bucket,op}: the fetcher's reads
//     and writes of its KV buckets (op get, create, update, delete,
//     purge), to see what each corp and poll costs NATS.
//
//   - wecom_receiver_fetch_queued{queue}: corps waiting for a worker, by
//     queue: callback, poll, delayed (for a lease or a budget).
//
// The health and lag gauges follow the buckets through a watch, so every
// replica reports the same values.
//
// The corp label takes the corps served. New pre-creates the series of the
// Apps' own corps (the caller passes those the configuration file lists);
// a corp served later, from the corp registry, gets its series when it is
// first fetched or polled, so that thousands of corps do not cost tens of
// thousands of series from the start.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wecom_receiver_fetch_pages_total",
			Help: "get_hit_msg_list pages fetched and published, by app, corp and what started the fetch (callback, poll, backfill).",
		}, []string{"app", "corp", "source"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wecom_receiver_fetch_page_duration_seconds",
			Help:    "Time for one page: the get_hit_msg_list call and publishing its events until the last PubAck.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"app"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wecom_receiver_fetch_errors_total",
			Help: "Fetches (and backfills) that failed, by app and corp.",
		}, []string{"app", "corp"}),
		cursorLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_cursor_lag_seconds",
			Help: "Time of the last page minus the send time of the newest message the fetch cursor has passed, by app and corp.",
		}, []string{"app", "corp"}),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_corp_consecutive_failures",
			Help: "Fetches of an app and corp that failed since the last one that succeeded, on any replica.",
		}, []string{"app", "corp"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_corp_last_success_timestamp_seconds",
			Help: "Unix time a fetch of an app and corp last succeeded, on any replica; 0 until one has.",
		}, []string{"app", "corp"}),
	}
	m.tokenlessCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wecom_receiver_fetch_tokenless_calls_total",
		Help: "get_hit_msg_list calls made without a hit token, by app.",
	}, []string{"app"})
	m.kvOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wecom_receiver_fetch_kv_ops_total",
		Help: "The fetcher's reads and writes of its KV buckets, by bucket and operation.",
	}, []string{"bucket", "op"})
	m.queued = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "wecom_receiver_fetch_queued",
		Help: "Corps waiting for a fetch worker, by queue (callback, poll, delayed).",
	}, []string{"queue"})
	for _, b := range []string{CursorBucket, LeaseBucket, TokenBucket, HealthBucket} {
		for _, op := range kvOps {
			m.kvOps.WithLabelValues(b, op)
		}
	}
	m.queues(0, 0, 0)
	if reg != nil {
		reg.MustRegister(m.pages, m.duration, m.errors, m.cursorLag, m.failures, m.lastSuccess,
			m.tokenlessCalls, m.kvOps, m.queued)
	}
	return m
}

// init pre-creates the series of an app's corps.
// forget removes corp's series: a cancelled corp's id must not stay in
// the metrics.
func (m *Metrics) forget(app, corp string) {
	if m == nil {
		return
	}
	for _, s := range sources {
		m.pages.DeleteLabelValues(app, corp, s)
	}
	for _, v := range []*prometheus.GaugeVec{m.cursorLag, m.lastSuccess} {
		v.DeleteLabelValues(app, corp)
	}
	m.errors.DeleteLabelValues(app, corp)
	m.failures.DeleteLabelValues(app, corp)
}

func (m *Metrics) init(app string, corps []string) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(app)
	m.tokenlessCalls.WithLabelValues(app)
	for _, c := range corps {
		for _, s := range sources {
			m.pages.WithLabelValues(app, c, s)
		}
		m.errors.WithLabelValues(app, c)
		m.cursorLag.WithLabelValues(app, c)
		m.failures.WithLabelValues(app, c)
		m.lastSuccess.WithLabelValues(app, c)
	}
}

func (m *Metrics) page(app, corp, source string, d time.Duration) {
	if m == nil {
		return
	}
	m.pages.WithLabelValues(app, corp, source).Inc()
	m.duration.WithLabelValues(app).Observe(d.Seconds())
}

func (m *Metrics) failed(app, corp string) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(app, corp).Inc()
}

// lag sets the cursor lag from the newest send time passed (unix s); a
// cursor that has passed no message leaves it alone.
func (m *Metrics) lag(app, corp string, lastHit int64, now time.Time) {
	if m == nil || lastHit <= 0 {
		return
	}
	m.cursorLag.WithLabelValues(app, corp).Set(max(0, now.Sub(time.Unix(lastHit, 0)).Seconds()))
}

// health sets the health gauges from h.
func (m *Metrics) health(app, corp string, h Health) {
	if m == nil {
		return
	}
	m.failures.WithLabelValues(app, corp).Set(float64(h.ConsecutiveFailures))
	if !h.LastSuccess.IsZero() {
		m.lastSuccess.WithLabelValues(app, corp).Set(float64(h.LastSuccess.UnixNano()) / 1e9)
	}
}

// KV operations counted in wecom_receiver_fetch_kv_ops_total.
var kvOps = []string{"get", "create", "update", "delete", "purge"}

// countedKV counts a bucket's reads and writes.
type countedKV struct {
	jetstream.KeyValue
	m *Metrics
}

func (m *Metrics) count(kv jetstream.KeyValue) jetstream.KeyValue {
	if m == nil || kv == nil {
		return kv
	}
	return countedKV{KeyValue: kv, m: m}
}

func (k countedKV) op(op string) { k.m.kvOps.WithLabelValues(k.Bucket(), op).Inc() }

func (k countedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.op("get")
	return k.KeyValue.Get(ctx, key)
}

func (k countedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	k.op("create")
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k countedKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	k.op("update")
	return k.KeyValue.Update(ctx, key, value, revision)
}

func (k countedKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	k.op("delete")
	return k.KeyValue.Delete(ctx, key, opts...)
}

func (k countedKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	k.op("purge")
	return k.KeyValue.Purge(ctx, key, opts...)
}

func (m *Metrics) tokenless(app string) {
	if m == nil {
		return
	}
	m.tokenlessCalls.WithLabelValues(app).Inc()
}

func (m *Metrics) queues(urgent, poll, delayed int) {
	if m == nil {
		return
	}
	m.queued.WithLabelValues("callback").Set(float64(urgent))
	m.queued.WithLabelValues("poll").Set(float64(poll))
	m.queued.WithLabelValues("delayed").Set(float64(delayed))
}
