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
	handled      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	publish      prometheus.Observer
	batchSize    prometheus.Observer
	fallbacks    *prometheus.CounterVec
	bound        *prometheus.GaugeVec
	callbackIDs  prometheus.Gauge
}

// deadLetterReasons are the reason label's values; a reason outside the
// list (a handler's own) counts as "other".
var deadLetterReasons = []string{
	wecomhit.ReasonUnknownApp, wecomhit.ReasonUnknownCorp, wecomhit.ReasonMaxDeliveries,
	wecomhit.ReasonBadRecord, wecomhit.ReasonPermanent, "other",
}

// NewMetrics creates the metrics, with every series pre-created, and
// registers them on reg (none when reg is nil):
//
//   - wecom_receiver_callbacks_handled_total{kind,result}: stored callbacks
//     the consumer handed on, by kind and result (ack, retry, terminate).
//     Kinds that need no action are acked and counted too.
//   - wecom_receiver_callbacks_dead_lettered_total{app,kind,reason}:
//     stored callbacks written to the dead-letter stream and terminated.
//     Series are pre-created for the apps given to InitApp.
//   - wecom_receiver_nats_publish_duration_seconds{stream="WECOM_CALLBACKS"}:
//     the wait for a callback record's PubAck, when it is published alone.
//   - wecom_receiver_callback_batch_size: callbacks per fast batch (group
//     commit, batch.go); a callback stored alone is not observed.
//   - wecom_receiver_callback_batch_fallbacks_total{reason}: batches whose
//     callbacks, all or some, went on to be published alone, by reason
//     (timeout, publish, rejected, gap, partial, disabled, invalid).
//   - wecom_receiver_intake_consumer_bound{consumer}: 1 while this
//     process's Consume holds the durable consumer and pulls from it, 0
//     while it is (re)creating it and after Consume returns. Series are
//     pre-created for the durables given to InitConsumer, and made by
//     Consume for others.
//   - wecom_receiver_callback_ids: callback ids this receiver keeps
//     within the duplicate window (WithLocalDedup, the embedded server);
//     0 without.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	handled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wecom_receiver_callbacks_handled_total",
		Help: "Stored callbacks handled by the intake consumer, by kind and result (ack, retry, terminate: dead-lettered).",
	}, []string{"kind", "result"})
	deadLettered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wecom_receiver_callbacks_dead_lettered_total",
		Help: "Stored callbacks written to the dead-letter stream (WECOM_DEAD_LETTERS) and terminated, by app, kind and reason.",
	}, []string{"app", "kind", "reason"})
	publish := prometheus.NewHistogramVec(natsPublishDuration, []string{"stream"})
	batchSize := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "wecom_receiver_callback_batch_size",
		Help:    "Callbacks stored together in one JetStream fast batch, answered by one commit.",
		Buckets: []float64{2, 4, 8, 16, 32, 64, 128, 256},
	})
	fallbacks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wecom_receiver_callback_batch_fallbacks_total",
		Help: "Fast batches whose callbacks (all, or those after a partial commit) were then published one at a time, by reason.",
	}, []string{"reason"})
	for _, r := range fallbackReasons {
		fallbacks.WithLabelValues(r)
	}
	bound := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "wecom_receiver_intake_consumer_bound",
		Help: "1 while this process pulls stored callbacks from the intake consumer; 0 while it cannot create or find it.",
	}, []string{"consumer"})
	callbackIDs := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "wecom_receiver_callback_ids",
		Help: "Callback ids this receiver keeps within WECOM_CALLBACKS' duplicate window, with the embedded server (the servers keep them on an external NATS).",
	})
	if reg != nil {
		reg.MustRegister(handled, deadLettered, batchSize, fallbacks, bound, callbackIDs)
		publish = registerShared(reg, publish)
	}
	for _, k := range wecomhit.Kinds {
		for _, r := range []string{ResultAck, ResultRetry, ResultTerminate} {
			handled.WithLabelValues(string(k), r)
		}
	}
	return &Metrics{
		handled: handled, deadLettered: deadLettered, publish: publish.WithLabelValues(StreamName),
		batchSize: batchSize, fallbacks: fallbacks, bound: bound, callbackIDs: callbackIDs,
	}
}

// InitApp pre-creates the dead-letter series of a configured app, so that
// alerts on their rate start from zero. The app label of other series comes
// from stored records, whose app passed the callback endpoint's check
// against the configuration of the time, so its cardinality stays bounded.
func (m *Metrics) InitApp(app string) {
	if m == nil {
		return
	}
	for _, k := range wecomhit.Kinds {
		for _, r := range deadLetterReasons {
			m.deadLettered.WithLabelValues(app, string(k), r)
		}
	}
}

// InitConsumer pre-creates, at 0, the bound series of a durable that
// Consume will serve, so that it is there before Consume first runs.
func (m *Metrics) InitConsumer(durable string) {
	m.setBound(durable, false)
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

// observeBatch records a batch of n callbacks and, unless reason is
// empty, that it fell back.
func (m *Metrics) observeBatch(n int, reason string) {
	if m == nil {
		return
	}
	m.batchSize.Observe(float64(n))
	if reason != "" {
		m.fallbacks.WithLabelValues(reason).Inc()
	}
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

// setBound records whether this process holds the durable consumer.
func (m *Metrics) setBound(consumer string, bound bool) {
	if m == nil {
		return
	}
	v := 0.0
	if bound {
		v = 1
	}
	m.bound.WithLabelValues(consumer).Set(v)
}

func (m *Metrics) countHandled(k wecomhit.Kind, result string) {
	if m == nil {
		return
	}
	m.handled.WithLabelValues(handledKind(k), result).Inc()
}

func (m *Metrics) countDeadLettered(app string, k wecomhit.Kind, reason string) {
	if m == nil {
		return
	}
	label := "other"
	for _, r := range deadLetterReasons {
		if reason == r {
			label = r
		}
	}
	m.deadLettered.WithLabelValues(app, handledKind(k), label).Inc()
}

func (m *Metrics) setCallbackIDs(n int) {
	if m == nil {
		return
	}
	m.callbackIDs.Set(float64(n))
}
