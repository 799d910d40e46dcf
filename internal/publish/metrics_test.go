package publish_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

func TestMetrics(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	m := publish.NewMetrics(reg)
	m.Init("archive", "wwCorp")
	p, err := publish.New(js, prefix, publish.WithMetrics(m))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Setup(ctx))

	value := func(name string) float64 {
		return metricstest.Value(t, metricstest.Families(t, reg), name, "app", "archive", "corp", "wwCorp")
	}
	// Pre-created: present at zero before the first page.
	assert.Zero(t, value("wecom_receiver_hits_published_total"))
	assert.Zero(t, value("wecom_receiver_hits_duplicates_total"))
	assert.Zero(t, value("wecom_receiver_hits_dead_lettered_total"))

	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	msgs := append(page(), wecomhit.HitMessage{MsgID: "m-no-rules"}) // 4 events, 1 dead letter
	_, err = p.Publish(ctx, hitPage(o, msgs))
	require.NoError(t, err)
	_, err = p.Publish(ctx, hitPage(o, msgs)) // again: JetStream drops the repeats
	require.NoError(t, err)
	_, err = p.Publish(ctx, hitPage(o, nil)) // nothing sent: no PubAck wait to time
	require.NoError(t, err)

	assert.Equal(t, 4.0, value("wecom_receiver_hits_published_total"))
	assert.Equal(t, 4.0, value("wecom_receiver_hits_duplicates_total"))
	assert.Equal(t, 2.0, value("wecom_receiver_hits_dead_lettered_total"), "dead letters are acked, whether stored or dropped")
	mfs := metricstest.Families(t, reg)
	assert.Equal(t, 2.0, metricstest.Value(t, mfs, "wecom_receiver_nats_publish_duration_seconds", "stream", publish.StreamName),
		"one observation per page sent")
}

func TestNewMetrics_Shared(t *testing.T) {
	// The NATS publish histogram is shared with intake: registering it
	// twice on one registry must not fail.
	reg := prometheus.NewPedanticRegistry()
	publish.NewMetrics(reg)
	assert.Panics(t, func() { publish.NewMetrics(reg) }, "the package's own counters are registered once")
	other := prometheus.NewPedanticRegistry()
	other.MustRegister(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "wecom_receiver_nats_publish_duration_seconds",
		Help: "Time to get JetStream's PubAck: one callback record for WECOM_CALLBACKS, a whole page of events for WECOM_HITS.",
	}, []string{"stream"}))
	assert.NotPanics(t, func() { publish.NewMetrics(other) })
}
