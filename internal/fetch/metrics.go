package fetch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wecomhit/wecomhit"
)

// sources are the source label values of fetch_pages_total.
var sources = []string{wecomhit.SourceCallback, wecomhit.SourcePoll, wecomhit.SourceBackfill}

// Metrics are the fetcher's Prometheus metrics. Create them with NewMetrics
// and hand them to New in Options; New pre-creates the series of the
// configured apps and corps. A nil *Metrics records nothing.
type Metrics struct {
	pages     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	cursorLag *prometheus.GaugeVec
	// From HealthBucket (health.go).
	failures    *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg (none when reg is
// nil):
//
//   - wecom_receiver_fetch_pages_total{app,corp,source}: pages fetched and
//     published, by what started the fetch, as the events' source: callback,
//     poll or backfill.
//   - wecom_receiver_fetch_page_duration_seconds{app}: one page,
//     get_hit_msg_list and the publish until the last PubAck.
//   - wecom_receiver_fetch_errors_total{app,corp}: fetches that failed (the
//     "fetch failed" log line), and failed backfills.
//   - wecom_receiver_cursor_lag_seconds{app,corp}: how far the cursor is
//     behind: the time of the last page minus the send time of the newest
//     message the cursor has passed. Set after every page, and at start from
//     the stored cursor; 0 until the cursor has passed a message.
//   - wecom_receiver_corp_consecutive_failures{app,corp}: fetches that
//     failed since the last success, on any replica (from HealthBucket).
//   - wecom_receiver_corp_last_success_timestamp_seconds{app,corp}: when a
//     fetch last succeeded, on any replica; 0 until one has.
//
// The health gauges are refreshed from the bucket every 15 s, so every
// replica reports the same values.
//
// The corp label takes the corps of the configuration, so its cardinality
// is bounded.
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
	if reg != nil {
		reg.MustRegister(m.pages, m.duration, m.errors, m.cursorLag, m.failures, m.lastSuccess)
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
