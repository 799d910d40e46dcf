package health

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Metrics are the deployment facts as Prometheus gauges. A nil *Metrics
// records nothing.
type Metrics struct {
	pending     prometheus.Gauge
	oldest      prometheus.Gauge
	missing     *prometheus.GaugeVec
	durables    []string
	deadLetters *prometheus.GaugeVec
	storeUsed   prometheus.Gauge
	storeLimit  prometheus.Gauge
	streamBytes *prometheus.GaugeVec
	streamLimit *prometheus.GaugeVec
	ticketAge   *prometheus.GaugeVec
}

// NewMetrics creates the gauges, registers them on reg (none when reg is
// nil) and pre-creates the series of tg's suites, intake consumers and our
// streams:
//
//   - wecom_receiver_intake_pending: stored callbacks not yet handled
//     (waiting plus being handled), summed over the intake consumers.
//   - wecom_receiver_intake_oldest_unhandled_age_seconds: how long the
//     oldest of them has waited; 0 when there is none.
//   - wecom_receiver_intake_consumer_missing{consumer}: 1 while an intake
//     consumer does not exist although WECOM_CALLBACKS does (the status
//     reason intake_unbound); pre-created at 0 for tg.Durables.
//   - wecom_receiver_dead_letters{kind}: records given up on, kind
//     callback or hit.
//   - wecom_receiver_jetstream_store_used_bytes and
//     wecom_receiver_jetstream_store_limit_bytes: the account's file
//     storage and its limit (0: none set for the account).
//   - wecom_receiver_jetstream_stream_bytes{stream} and
//     wecom_receiver_jetstream_stream_limit_bytes{stream}: our streams'
//     size and MaxBytes (0: unlimited).
//   - wecom_receiver_suite_ticket_age_seconds{suite}: since the newest
//     suite_ticket was received; +Inf while there is none. Never a ticket.
//
// Every replica computes them from NATS, so they agree; aggregate with
// max, not sum.
func NewMetrics(reg prometheus.Registerer, tg Target) *Metrics {
	m := &Metrics{
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wecom_receiver_intake_pending",
			Help: "Stored callbacks not yet handled: waiting for delivery or being handled, over all intake consumers.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wecom_receiver_intake_oldest_unhandled_age_seconds",
			Help: "Age of the oldest stored callback not yet handled; 0 when every callback is handled.",
		}),
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_intake_consumer_missing",
			Help: "1 while an intake consumer does not exist although WECOM_CALLBACKS does: its callbacks are stored and not handled.",
		}, []string{"consumer"}),
		durables: slices.Clone(tg.Durables),
		deadLetters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_dead_letters",
			Help: "Records in the dead-letter stream, by kind (callback, hit).",
		}, []string{"kind"}),
		storeUsed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wecom_receiver_jetstream_store_used_bytes",
			Help: "JetStream file storage used by the account.",
		}),
		storeLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wecom_receiver_jetstream_store_limit_bytes",
			Help: "JetStream file storage limit of the account; 0 when the server sets none.",
		}),
		streamBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_jetstream_stream_bytes",
			Help: "Bytes stored in each of the receiver's streams.",
		}, []string{"stream"}),
		streamLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_jetstream_stream_limit_bytes",
			Help: "MaxBytes of each of the receiver's streams; 0 when unlimited.",
		}, []string{"stream"}),
		ticketAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wecom_receiver_suite_ticket_age_seconds",
			Help: "Seconds since the newest suite_ticket of a suite was received; +Inf while there is none.",
		}, []string{"suite"}),
	}
	if reg != nil {
		reg.MustRegister(m.pending, m.oldest, m.missing, m.deadLetters, m.storeUsed, m.storeLimit,
			m.streamBytes, m.streamLimit, m.ticketAge)
	}
	m.deadLetters.WithLabelValues(KindCallback)
	m.deadLetters.WithLabelValues(KindHit)
	for _, d := range m.durables {
		m.missing.WithLabelValues(d)
	}
	for _, s := range storageStreams {
		m.streamBytes.WithLabelValues(s)
		m.streamLimit.WithLabelValues(s)
	}
	for _, a := range tg.Apps {
		if a.SuiteID != "" {
			m.ticketAge.WithLabelValues(a.SuiteID).Set(math.Inf(1))
		}
	}
	return m
}

// set sets the gauges from a report.
func (m *Metrics) set(rep Report) {
	if m == nil {
		return
	}
	m.pending.Set(float64(rep.Intake.Waiting + rep.Intake.Handling))
	m.oldest.Set(rep.Intake.OldestUnhandledAgeSeconds)
	for _, d := range m.durables {
		v := 0.0
		if slices.Contains(rep.Intake.MissingConsumers, d) {
			v = 1
		}
		m.missing.WithLabelValues(d).Set(v)
	}
	m.deadLetters.WithLabelValues(KindCallback).Set(float64(rep.DeadLetters.Callback))
	m.deadLetters.WithLabelValues(KindHit).Set(float64(rep.DeadLetters.Hit))
	m.storeUsed.Set(float64(rep.Storage.UsedBytes))
	m.storeLimit.Set(float64(rep.Storage.LimitBytes))
	for _, s := range rep.Storage.Streams {
		m.streamBytes.WithLabelValues(s.Stream).Set(float64(s.Bytes))
		m.streamLimit.WithLabelValues(s.Stream).Set(float64(s.MaxBytes))
	}
	for _, s := range rep.Suites {
		age := math.Inf(1)
		if s.AgeSeconds != nil {
			age = *s.AgeSeconds
		}
		m.ticketAge.WithLabelValues(s.SuiteID).Set(age)
	}
}

// Refresh is how often Watch re-reads the facts; like the cursor lag, every
// replica recomputes them from NATS.
const Refresh = 15 * time.Second

// Watch sets m from NATS at once and then every interval until ctx ends.
// A failed read leaves the gauges as they were and is logged at debug:
// NATS being down shows in /readyz, not here.
func Watch(ctx context.Context, js jetstream.JetStream, tg Target, m *Metrics, interval time.Duration, log zerolog.Logger) {
	log = log.With().Str("component", "health").Logger()
	// The per-corp gauges are the fetcher's (from the same KV entries):
	// reading every corp here too would only cost NATS requests.
	facts := Target{Durables: tg.Durables, SubjectPrefix: tg.SubjectPrefix, StoreLimit: tg.StoreLimit}
	for _, a := range tg.Apps {
		facts.Apps = append(facts.Apps, App{Name: a.Name, SuiteID: a.SuiteID})
	}
	refresh := func() {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		rep, err := Read(rctx, js, facts, DefaultThresholds(), time.Now())
		if err != nil {
			if ctx.Err() == nil {
				log.Debug().Err(err).Msg("health gauges not refreshed")
			}
			return
		}
		m.set(rep)
	}
	refresh()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			refresh()
		}
	}
}
