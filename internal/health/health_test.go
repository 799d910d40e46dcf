package health_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

func newJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.RunServer(t))
	return js
}

// TestReadIntake: the oldest unhandled callback is the first record after
// each consumer's ack floor, whether it was delivered or not, over several
// durables with their own filters.
func TestReadIntake(t *testing.T) {
	js := newJS(t)
	ctx := natstest.Context(t)
	in, err := health.ReadIntake(ctx, js, []string{"a", "b"}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, health.Intake{}, in, "no stream: nothing unhandled")

	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: intake.StreamName, Subjects: []string{"cb.>"}})
	require.NoError(t, err)
	var times []time.Time // by sequence - 1
	for _, subj := range []string{"cb.a", "cb.b", "cb.a"} {
		ack, err := js.Publish(ctx, subj, []byte("x"))
		require.NoError(t, err)
		m, err := s.GetMsg(ctx, ack.Sequence)
		require.NoError(t, err)
		times = append(times, m.Time.UTC())
	}
	consumer := func(name, filter string) jetstream.Consumer {
		c, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy})
		require.NoError(t, err)
		return c
	}
	ca, cb := consumer("a", "cb.a"), consumer("b", "cb.b")
	next := func(c jetstream.Consumer) jetstream.Msg {
		b, err := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		require.NoError(t, err)
		m, ok := <-b.Messages()
		require.True(t, ok)
		return m
	}
	read := func() health.Intake {
		in, err := health.ReadIntake(ctx, js, []string{"a", "b", "absent"}, times[2].Add(10*time.Second))
		require.NoError(t, err)
		return in
	}

	require.NoError(t, next(ca).DoubleAck(ctx)) // seq 1 handled
	in = read()
	assert.Equal(t, []string{"absent"}, in.MissingConsumers)
	assert.Equal(t, uint64(2), in.Waiting, "seq 3 for a, seq 2 for b")
	assert.Zero(t, in.Handling)
	require.NotNil(t, in.OldestUnhandled)
	assert.Equal(t, times[1], *in.OldestUnhandled, "b's record, never delivered")
	assert.InDelta(t, times[2].Add(10*time.Second).Sub(times[1]).Seconds(), in.OldestUnhandledAgeSeconds, 0.001)

	m2 := next(cb) // delivered, not acked: still unhandled
	in = read()
	assert.Equal(t, uint64(1), in.Waiting)
	assert.Equal(t, uint64(1), in.Handling)
	assert.Equal(t, times[1], *in.OldestUnhandled)

	require.NoError(t, m2.DoubleAck(ctx))
	in = read()
	assert.Equal(t, times[2], *in.OldestUnhandled, "a's second record")

	require.NoError(t, next(ca).DoubleAck(ctx))
	in = read()
	assert.Nil(t, in.OldestUnhandled)
	assert.Zero(t, in.OldestUnhandledAgeSeconds)
	assert.Zero(t, in.Waiting+in.Handling)
}

// TestRead_IntakeUnbound: an intake durable that does not exist while
// WECOM_CALLBACKS holds callbacks stalls the verdict (intake_unbound),
// naming the durable; it used to read as an empty backlog, OK. No stream
// at all is a deployment that never ran, and says nothing; with the
// durable there, nothing is missing.
func TestRead_IntakeUnbound(t *testing.T) {
	js := newJS(t)
	ctx := natstest.Context(t)
	tg := health.Target{SubjectPrefix: "wecom", Durables: []string{"receiver", "receiver-tickets"}}
	read := func() health.Report {
		t.Helper()
		rep, err := health.Read(ctx, js, tg, health.DefaultThresholds(), time.Now())
		require.NoError(t, err)
		return rep
	}
	rep := read()
	assert.Empty(t, rep.Intake.MissingConsumers, "no stream")
	assert.Equal(t, health.StatusOK, rep.Verdict.Status)

	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: intake.StreamName, Subjects: []string{"wecom.callback.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "wecom.callback.archive.hit_keyword", []byte("x"))
	require.NoError(t, err)
	_, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "receiver", FilterSubject: "wecom.callback.*.hit_keyword",
		AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	rep = read()
	assert.Equal(t, []string{"receiver-tickets"}, rep.Intake.MissingConsumers)
	assert.Equal(t, health.StatusStalled, rep.Verdict.Status)
	require.Len(t, rep.Verdict.Reasons, 1)
	r := rep.Verdict.Reasons[0]
	assert.Equal(t, health.ReasonIntakeUnbound, r.Code)
	assert.Equal(t, "receiver-tickets", r.Consumer)
	assert.True(t, r.Stalls)
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"missing_consumers":["receiver-tickets"]`)

	_, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "receiver-tickets", FilterSubject: "wecom.callback.*.suite_ticket",
		AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	rep = read()
	assert.Empty(t, rep.Intake.MissingConsumers)
	for _, r := range rep.Verdict.Reasons {
		assert.NotEqual(t, health.ReasonIntakeUnbound, r.Code)
	}
}

func TestReadDeadLetters(t *testing.T) {
	js := newJS(t)
	ctx := natstest.Context(t)
	dl, err := health.ReadDeadLetters(ctx, js, "wecom")
	require.NoError(t, err)
	assert.Equal(t, health.DeadLetters{}, dl, "no stream: none")

	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: health.DeadLetterStream, Subjects: []string{"wecom.dlq.>", "other.dlq.>"}})
	require.NoError(t, err)
	for _, subj := range []string{
		"wecom.dlq.callback.archive.hit_keyword", "wecom.dlq.callback.zone.program_notify",
		"wecom.dlq.callback.archive.hit_keyword", "wecom.dlq.hit.ww1", "other.dlq.hit.ww1",
	} {
		_, err := js.Publish(ctx, subj, []byte("x"))
		require.NoError(t, err)
	}
	dl, err = health.ReadDeadLetters(ctx, js, "wecom")
	require.NoError(t, err)
	assert.Equal(t, health.DeadLetters{Callback: 3, Hit: 1}, dl, "another prefix's are not ours")
}

func TestReadStorage(t *testing.T) {
	js := newJS(t)
	ctx := natstest.Context(t)
	st, err := health.ReadStorage(ctx, js, 0)
	require.NoError(t, err)
	assert.Empty(t, st.Streams)
	assert.Zero(t, st.UsedRatio)

	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: publish.StreamName, Subjects: []string{"h.>"}, MaxBytes: 1 << 20})
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: intake.StreamName, Subjects: []string{"cb.>"}})
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: publish.CorpStreamName, Subjects: []string{"c.>"}, MaxBytes: 8 << 20})
	require.NoError(t, err)
	payload := []byte(strings.Repeat("x", 10<<10))
	for range 30 {
		_, err := js.Publish(ctx, "h.x", payload)
		require.NoError(t, err)
	}
	st, err = health.ReadStorage(ctx, js, 0)
	require.NoError(t, err)
	require.Len(t, st.Streams, 3)
	assert.Equal(t, intake.StreamName, st.Streams[0].Stream)
	assert.Equal(t, publish.CorpStreamName, st.Streams[2].Stream, "the corp event stream is listed")
	assert.Equal(t, int64(8<<20), st.Streams[2].MaxBytes)
	assert.Zero(t, st.Streams[0].MaxBytes, "unlimited")
	hits := st.Streams[1]
	assert.Equal(t, publish.StreamName, hits.Stream)
	assert.Equal(t, uint64(30), hits.Messages)
	assert.Equal(t, int64(1<<20), hits.MaxBytes)
	assert.Greater(t, hits.Bytes, uint64(300<<10))
	assert.InDelta(t, float64(hits.Bytes)/float64(1<<20), st.UsedRatio, 1e-9, "the fullest stream")
	assert.GreaterOrEqual(t, st.UsedBytes, hits.Bytes)
	assert.Zero(t, st.LimitBytes, "the test server's account has no limit")

	// An embedded server's account has none either; the store's limit,
	// given, is what fills.
	st, err = health.ReadStorage(ctx, js, int64(st.UsedBytes))
	require.NoError(t, err)
	assert.Equal(t, int64(st.UsedBytes), st.LimitBytes)
	assert.InDelta(t, 1.0, st.UsedRatio, 1e-9)
}

func TestReadTicket(t *testing.T) {
	js := newJS(t)
	ctx := natstest.Context(t)
	s, err := health.ReadTicket(ctx, js, "suite.1", time.Now())
	require.NoError(t, err)
	assert.Nil(t, s.ReceivedAt, "no bucket: no ticket")

	stores, err := wecom.OpenStores(ctx, js, wecom.StoreConfig{})
	require.NoError(t, err)
	const ticket = "ticket-value-never-shown"
	received := time.Now().Add(-time.Minute).Truncate(time.Second)
	require.NoError(t, stores.Tickets.Put(ctx, "suite.1", ticket, received, received))
	now := received.Add(2 * time.Minute)
	s, err = health.ReadTicket(ctx, js, "suite.1", now)
	require.NoError(t, err)
	require.NotNil(t, s.ReceivedAt)
	assert.Equal(t, received.UTC(), *s.ReceivedAt)
	assert.Equal(t, 120.0, *s.AgeSeconds)
	assert.Zero(t, s.Rejections)
	data, err := json.Marshal(s)
	require.NoError(t, err)
	assert.NotContains(t, string(data), ticket)

	t.Run("Rejected", func(t *testing.T) {
		_, err := stores.Tickets.Reject(ctx, "suite.1", ticket)
		require.NoError(t, err)
		s, err := health.ReadTicket(ctx, js, "suite.1", now)
		require.NoError(t, err)
		assert.Nil(t, s.ReceivedAt, "no usable ticket until the next push")
		assert.Equal(t, 1, s.Rejections)
		assert.NotNil(t, s.LastRejected)
		assert.False(t, s.HasPrevious)
		data, err := json.Marshal(s)
		require.NoError(t, err)
		assert.NotContains(t, string(data), ticket)
	})

	s, err = health.ReadTicket(ctx, js, "other", now)
	require.NoError(t, err)
	assert.Nil(t, s.ReceivedAt)
	assert.Nil(t, s.AgeSeconds)
}

// TestWatch: the gauges follow NATS, read at once and then every interval.
func TestWatch(t *testing.T) {
	js := newJS(t)
	ctx := natstest.Context(t)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: health.DeadLetterStream, Subjects: []string{"wecom.dlq.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "wecom.dlq.hit.ww1", []byte("x"))
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	tg := health.Target{SubjectPrefix: "wecom", Durables: []string{"receiver"}}
	m := health.NewMetrics(reg, tg)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		health.Watch(wctx, js, tg, m, 50*time.Millisecond, zerolog.Nop())
	}()
	t.Cleanup(func() { cancel(); <-done })
	dead := func() float64 {
		return metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_dead_letters", "kind", health.KindHit)
	}
	natstest.WaitFor(t, 5*time.Second, func() error {
		if v := dead(); v != 1 {
			return fmt.Errorf("dead letters %v", v)
		}
		return nil
	})
	_, err = js.Publish(ctx, "wecom.dlq.hit.ww1", []byte("y"))
	require.NoError(t, err)
	natstest.WaitFor(t, 5*time.Second, func() error {
		if v := dead(); v != 2 {
			return fmt.Errorf("dead letters %v", v)
		}
		return nil
	})

	// The intake consumer: not missing without a stream, missing with the
	// stream and no durable, not missing once the durable exists.
	missing := func(want float64) func() error {
		return func() error {
			v := metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_intake_consumer_missing", "consumer", "receiver")
			if v != want {
				return fmt.Errorf("intake_consumer_missing %v, want %v", v, want)
			}
			return nil
		}
	}
	require.NoError(t, missing(0)())
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: intake.StreamName, Subjects: []string{"wecom.callback.>"}})
	require.NoError(t, err)
	natstest.WaitFor(t, 5*time.Second, missing(1))
	_, err = s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "receiver", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	natstest.WaitFor(t, 5*time.Second, missing(0))
}
