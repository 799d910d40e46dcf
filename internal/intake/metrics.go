package intake

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wecomhit/wecomhit"
)

// Results of handling a stored callback, the result label of
// callbacks_handled_total.
const (
	ResultAck       = "ack"
	ResultRetry     = "retry"
	ResultTerminate = "terminate"
)

// natsPublishDuration describes wecom_receiver_nats_publish_duration_seconds,
// which intake (WECOM_CALLBACKS) and publish (WECOM_HITS) share: each
// package registers it, and the second gets the first's collector back
// (prometheus.AlreadyRegisteredError). Name, help, labels and buckets must
// stay identical in both.
var natsPublishDuration = prometheus.HistogramOpts{
	Name:    "wecom_receiver_nats_publish_duration_seconds",
	Help:    "Time to get JetStream's PubAck: one callback record for WECOM_CALLBACKS, a whole page of events for WECOM_HITS.",
	Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
}

// Metrics are intake's Prometheus metrics. Create them with NewMetrics and
// hand them to New in Options; a nil *Metrics records nothing.
type Metrics struct {
	handled *prometheus.CounterVec
	publish prometheus.Observer
}

// NewMetrics creates the metrics, with every series pre-created, and
// registers them on reg (none when reg is nil):
//
//   - wecom_receiver_callbacks_handled_total{kind,result}: stored callbacks
//     the consumer handed on, by kind and result (ack, retry, terminate).
//     Kinds that need no action are acked and counted too.
//   - wecom_receiver_nats_publish_duration_seconds{stream="WECOM_CALLBACKS"}:
//     the wait for a callback record's PubAck.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	handled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wecom_receiver_callbacks_handled_total",
		Help: "Stored callbacks handled by the intake consumer, by kind and result (ack, retry, terminate).",
	}, []string{"kind", "result"})
	publish := prometheus.NewHistogramVec(natsPublishDuration, []string{"stream"})
	if reg != nil {
		reg.MustRegister(handled)
		publish = registerShared(reg, publish)
	}
	for _, k := range wecomhit.Kinds {
		for _, r := range []string{ResultAck, ResultRetry, ResultTerminate} {
			handled.WithLabelValues(string(k), r)
		}
	}
	return &Metrics{handled: handled, publish: publish.WithLabelValues(StreamName)}
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

func (m *Metrics) observePublish(d time.Duration) {
	if m == nil {
		return
	}
	m.publish.Observe(d.Seconds())
}

// handledKind maps a record's kind to a label value: a record written by
// something else could carry any string.
func handledKind(k wecomhit.Kind) string {
	for _, known := range wecomhit.Kinds {
		if k == known {
			return string(k)
		}
	}
	return string(wecomhit.KindUnknown)
}

func (m *Metrics) countHandled(k wecomhit.Kind, result string) {
	if m == nil {
		return
	}
	m.handled.WithLabelValues(handledKind(k), result).Inc()
}
