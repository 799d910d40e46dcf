package intake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestMetrics(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	metrics := intake.NewMetrics(reg)
	metrics.InitApp("archive")
	s := mustSetup(t, js, intake.WithMetrics(metrics))

	// Before any traffic every (kind, result) series is there, at zero.
	mfs := metricstest.Families(t, reg)
	for _, k := range wecomhit.Kinds {
		for _, r := range []string{intake.ResultAck, intake.ResultRetry, intake.ResultTerminate} {
			assert.Zero(t, metricstest.Value(t, mfs, "wecom_receiver_callbacks_handled_total", "kind", string(k), "result", r))
		}
	}

	ok := storeN(t, s, 3, "ok-")
	retry := testCallback("retry-once")
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), retry))
	ticket := testCallback("ticket")
	ticket.Kind = wecomhit.KindSuiteTicket
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), ticket))
	perm := testCallback("permanent")
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), perm))
	// A record that is not JSON, written by something else, is dead-lettered
	// and terminated, counted under the kind its subject names.
	_, err := js.PublishMsg(ctxTimeout(t, 5*time.Second), &nats.Msg{Subject: prefix + ".callback.archive.hit_keyword", Data: []byte("{")})
	require.NoError(t, err)
	// A record whose kind is outside the known list counts as unknown.
	odd := testCallback("odd")
	data, err := json.Marshal(odd)
	require.NoError(t, err)
	data = []byte(string(data[:len(data)-1]) + `,"kind":"made_up"}`)
	_, err = js.PublishMsg(ctxTimeout(t, 5*time.Second), &nats.Msg{Subject: prefix + ".callback.archive.made_up", Data: data})
	require.NoError(t, err)

	rec := &consumeRecorder{}
	runConsume(t, js, s, intake.HandlerFunc(func(_ context.Context, cb *wecomhit.Callback) error {
		n := rec.add(cb.ID)
		switch {
		case cb.ID == retry.ID && n == 1:
			return fmt.Errorf("WeCom said -1")
		case cb.ID == perm.ID:
			return fmt.Errorf("bad: %w", intake.ErrPermanent)
		}
		return nil
	}), intake.ConsumerOptions{Backoff: []time.Duration{10 * time.Millisecond}})

	handled := func(kind wecomhit.Kind, result string) float64 {
		return metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_callbacks_handled_total",
			"kind", string(kind), "result", result)
	}
	natstest.WaitFor(t, 10*time.Second, func() error {
		if got := handled(wecomhit.KindHitKeyword, intake.ResultAck); got != float64(len(ok)+1) {
			return fmt.Errorf("hit_keyword acked %v", got)
		}
		if got := handled(wecomhit.KindUnknown, intake.ResultAck); got != 1 {
			return fmt.Errorf("unknown acked %v", got)
		}
		if got := handled(wecomhit.KindHitKeyword, intake.ResultTerminate); got != 2 {
			return fmt.Errorf("hit_keyword terminated %v", got)
		}
		return nil
	})
	assert.Equal(t, 1.0, handled(wecomhit.KindSuiteTicket, intake.ResultAck), "kinds that need no action are counted as acked")
	assert.Equal(t, 1.0, handled(wecomhit.KindHitKeyword, intake.ResultRetry))
	deadLettered := func(reason string) float64 {
		return metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_callbacks_dead_lettered_total",
			"app", "archive", "kind", string(wecomhit.KindHitKeyword), "reason", reason)
	}
	assert.Equal(t, 1.0, deadLettered(wecomhit.ReasonPermanent))
	assert.Equal(t, 1.0, deadLettered(wecomhit.ReasonBadRecord))
	assert.Zero(t, deadLettered(wecomhit.ReasonUnknownCorp), "pre-created by InitApp")

	mfs = metricstest.Families(t, reg)
	assert.Equal(t, float64(len(ok)+3), metricstest.Value(t, mfs, "wecom_receiver_nats_publish_duration_seconds", "stream", intake.StreamName),
		"one PubAck wait per Store")
	assert.Equal(t, []string{intake.StreamName}, metricstest.LabelValues(t, mfs, "wecom_receiver_nats_publish_duration_seconds", "stream"))
	assert.NotContains(t, metricstest.LabelValues(t, mfs, "wecom_receiver_callbacks_handled_total", "kind"), "made_up")
}

func TestNewMetrics_Nil(t *testing.T) {
	// No registry: the metrics work and are exported nowhere.
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(nil)))
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("a")))
}
