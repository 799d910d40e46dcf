package publish

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// natsPublishDuration describes wecom_receiver_nats_publish_duration_seconds,
// which publish (WECOM_HITS) and intake (WECOM_CALLBACKS) share: each
// package registers it, and the second gets the first's collector back
// (prometheus.AlreadyRegisteredError). Name, help, labels and buckets must
// stay identical in both; the stages do not import each other.
var natsPublishDuration = prometheus.HistogramOpts{
	Name:    "wecom_receiver_nats_publish_duration_seconds",
	Help:    "Time to get JetStream's PubAck: one callback record for WECOM_CALLBACKS, a whole page of events for WECOM_HITS.",
	Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
}

// Metrics are the publisher's Prometheus metrics. Create them with
// NewMetrics, pre-create each configured (app, corp) with Init, and hand
// them to New in Options; a nil *Metrics records nothing.
type Metrics struct {
	published, duplicates, deadLettered *prometheus.CounterVec
	publish                             prometheus.Observer
}

// NewMetrics creates the metrics and registers them on reg (none when reg is
// nil):
//
//   - wecom_receiver_hits_published_total{app,corp}: events JetStream stored.
//   - wecom_receiver_hits_duplicates_total{app,corp}: events JetStream
//     acknowledged as duplicates of stored ones (re-fetched pages).
//   - wecom_receiver_hits_dead_lettered_total{app,corp}: records that could
//     not become events and went to the dead-letter subject.
//   - wecom_receiver_nats_publish_duration_seconds{stream="WECOM_HITS"}: a
//     page's publishes until the last PubAck.
//
// The corp label takes the corps of the configuration, which the fetcher
// guarantees for every page, so its cardinality is bounded.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"app", "corp"})
	}
	m := &Metrics{
		published:    counter("wecom_receiver_hits_published_total", "Hit events stored in WECOM_HITS, by app and corp."),
		duplicates:   counter("wecom_receiver_hits_duplicates_total", "Hit events JetStream dropped as duplicates of stored ones, by app and corp."),
		deadLettered: counter("wecom_receiver_hits_dead_lettered_total", "Hit records that could not be normalized and were dead-lettered, by app and corp."),
	}
	publish := prometheus.NewHistogramVec(natsPublishDuration, []string{"stream"})
	if reg != nil {
		reg.MustRegister(m.published, m.duplicates, m.deadLettered)
		publish = registerShared(reg, publish)
	}
	m.publish = publish.WithLabelValues(StreamName)
	return m
}

// Init pre-creates the series of an (app, corp), so that rates start from
// zero rather than from the first event.
func (m *Metrics) Init(app, corp string) {
	if m == nil {
		return
	}
	m.published.WithLabelValues(app, corp)
	m.duplicates.WithLabelValues(app, corp)
	m.deadLettered.WithLabelValues(app, corp)
}

// registerShared registers c, or returns the identical collector already
// registered.
func registerShared(reg prometheus.Registerer, c *prometheus.HistogramVec) *prometheus.HistogramVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.HistogramVec); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// observe records what a page became, also a failed page's acks that did
// arrive: those events are stored.
func (m *Metrics) observe(o Origin, res Result) {
	if m == nil {
		return
	}
	if res.Published > 0 {
		m.published.WithLabelValues(o.App, o.CorpID).Add(float64(res.Published))
	}
	if res.Duplicates > 0 {
		m.duplicates.WithLabelValues(o.App, o.CorpID).Add(float64(res.Duplicates))
	}
	if res.DeadLettered > 0 {
		m.deadLettered.WithLabelValues(o.App, o.CorpID).Add(float64(res.DeadLettered))
	}
}

func (m *Metrics) observePublish(d time.Duration) {
	if m == nil {
		return
	}
	m.publish.Observe(d.Seconds())
}
