package callback

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wecomhit/wecomhit"
)

// Outcomes of a request, the outcome label of callbacks_total and of the log
// line.
const (
	OutcomeAccepted    = "accepted"
	OutcomeRejected    = "rejected"
	OutcomeUnavailable = "unavailable"
)

// Kind label values besides the wecomhit.Kinds: a URL verification (GET),
// and a request refused before its event was read.
const (
	KindVerify = "url_verification"
	KindNone   = "none"
)

// UnknownApp is the app label of requests for an app that is not
// configured. Parentheses cannot occur in app names, so it never collides,
// and the path segment a scanner sends never becomes a label value.
const UnknownApp = "(unknown)"

var (
	outcomes = [...]string{OutcomeAccepted, OutcomeRejected, OutcomeUnavailable}
	// reasons lists every rejection reason the handler gives.
	reasons = []string{
		"unknown_app", "missing_param", "bad_timestamp", "stale_timestamp",
		"not_verification_string", "body_too_large", "body_read", "malformed",
		"bad_signature", "bad_receive_id", "bad_ciphertext", "xml_doctype",
		"store_failed", "store_full", "store_timeout", "internal",
	}
)

// kindLabels lists the kind label values: every wecomhit.Kind, then
// KindVerify and KindNone.
func kindLabels() []string {
	ks := make([]string, 0, len(wecomhit.Kinds)+2)
	for _, k := range wecomhit.Kinds {
		ks = append(ks, string(k))
	}
	return append(ks, KindVerify, KindNone)
}

// Metrics are the callback endpoint's Prometheus metrics. Create them with
// NewMetrics and hand them to New with WithMetrics; a nil *Metrics records
// nothing.
type Metrics struct {
	callbacks  *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	rejections *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (none when reg is
// nil):
//
//   - wecom_receiver_callbacks_total{app,kind,outcome}: requests, outcome
//     accepted, rejected (4xx) or unavailable (5xx: WeCom retries).
//   - wecom_receiver_callback_duration_seconds{app}: time to answer.
//   - wecom_receiver_callback_rejections_total{app,reason}: requests not
//     accepted, by the reason also logged (including 5xx reasons).
//
// New pre-creates the series of its apps.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wecom_receiver_callbacks_total",
			Help: "Callback requests answered, by app, kind and outcome (accepted, rejected, unavailable).",
		}, []string{"app", "kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wecom_receiver_callback_duration_seconds",
			Help: "Time from receiving a callback request to answering it, including the JetStream write.",
			// WeCom waits 5 s; the ack timeout is below that.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"app"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wecom_receiver_callback_rejections_total",
			Help: "Callback requests not accepted, by app and reason.",
		}, []string{"app", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.callbacks, m.duration, m.rejections)
	}
	return m
}

// appSeries holds one app's series, looked up once: WithLabelValues
// hashes its labels and takes the vector's lock, for every request.
type appSeries struct {
	m          *Metrics
	app        string
	callbacks  map[string]*[len(outcomes)]prometheus.Counter // by kind, then outcome
	duration   prometheus.Observer
	rejections map[string]prometheus.Counter // by reason
}

// series creates app's series, so that their rates start from zero, and
// keeps them; nil when m is nil.
func (m *Metrics) series(app string) *appSeries {
	if m == nil {
		return nil
	}
	s := &appSeries{
		m: m, app: app,
		callbacks:  make(map[string]*[len(outcomes)]prometheus.Counter),
		duration:   m.duration.WithLabelValues(app),
		rejections: make(map[string]prometheus.Counter, len(reasons)),
	}
	for _, k := range kindLabels() {
		var cs [len(outcomes)]prometheus.Counter
		for i, o := range outcomes {
			cs[i] = m.callbacks.WithLabelValues(app, k, o)
		}
		s.callbacks[k] = &cs
	}
	for _, r := range reasons {
		s.rejections[r] = m.rejections.WithLabelValues(app, r)
	}
	return s
}

// observe records one answered request. A kind or reason outside the
// fixed lists (none is given today) still counts, through the vectors.
func (s *appSeries) observe(kind, outcome, reason string, seconds float64) {
	if s == nil {
		return
	}
	i := slices.Index(outcomes[:], outcome)
	if cs, ok := s.callbacks[kind]; ok && i >= 0 {
		cs[i].Inc()
	} else {
		s.m.callbacks.WithLabelValues(s.app, kind, outcome).Inc()
	}
	s.duration.Observe(seconds)
	if reason != "" {
		if c, ok := s.rejections[reason]; ok {
			c.Inc()
		} else {
			s.m.rejections.WithLabelValues(s.app, reason).Inc()
		}
	}
}
