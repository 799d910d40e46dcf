package intake_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

// consumeRecorder counts handled callbacks by id.
type consumeRecorder struct {
	mu    sync.Mutex
	calls map[string]int
}

func (r *consumeRecorder) add(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[id]++
	return r.calls[id]
}

func (r *consumeRecorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[id]
}

func (r *consumeRecorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

// runConsume runs s.Consume until the test ends or stop is called. Dead
// letters go to a real WECOM_DEAD_LETTERS stream on js unless opts names
// another writer.
func runConsume(t *testing.T, js jetstream.JetStream, s *intake.Store, h intake.Handler, opts intake.ConsumerOptions) (stop func()) {
	t.Helper()
	if opts.DeadLetters == nil {
		opts.DeadLetters = deadLetters(t, js)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Consume(ctx, h, opts) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Consume did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// deadLetters sets up the dead-letter stream on js.
func deadLetters(t testing.TB, js jetstream.JetStream) *deadletter.Stream {
	t.Helper()
	dl, err := deadletter.New(js, prefix)
	require.NoError(t, err)
	require.NoError(t, dl.Setup(ctxTimeout(t, 5*time.Second)))
	return dl
}

func storeN(t *testing.T, s *intake.Store, n int, prefix string) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		cb := testCallback(prefix + strconv.Itoa(i))
		ids[i] = cb.ID
		require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))
	}
	return ids
}

func TestStore_Consume(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix)
	require.NoError(t, s.Setup(ctxTimeout(t, 5*time.Second)))
	ids := storeN(t, s, 5, "ok-")
	failing := testCallback("fails-twice")
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), failing))
	permanent := testCallback("permanent")
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), permanent))

	rec := &consumeRecorder{}
	h := intake.HandlerFunc(func(ctx context.Context, cb *wecomhit.Callback) error {
		n := rec.add(cb.ID)
		switch {
		case cb.ID == failing.ID && n <= 2:
			return errors.New("WeCom said -1")
		case cb.ID == permanent.ID:
			return fmt.Errorf("bad record: %w", intake.ErrPermanent)
		}
		return nil
	})
	runConsume(t, js, s, h, intake.ConsumerOptions{Backoff: []time.Duration{10 * time.Millisecond}})

	natstest.WaitFor(t, 10*time.Second, func() error {
		for _, id := range ids {
			if rec.count(id) != 1 {
				return fmt.Errorf("%s handled %d times", id, rec.count(id))
			}
		}
		if rec.count(failing.ID) != 3 {
			return fmt.Errorf("failing handled %d times", rec.count(failing.ID))
		}
		return nil
	})
	// Give a wrongly unacked record time to come back, then check nothing did.
	time.Sleep(100 * time.Millisecond) // bounded observation window, not synchronization
	assert.Equal(t, 1, rec.count(permanent.ID), "terminated, not redelivered")
	assert.Equal(t, 3, rec.count(failing.ID))
	assert.Equal(t, 9, rec.total())
}

// TestStore_ConsumeReplicas: two replicas share the consumer; each record is
// handled once, by one of them.
func TestStore_ConsumeReplicas(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js1 := natstest.Connect(t, srv)
	_, js2 := natstest.Connect(t, srv)
	s1 := mustNew(t, js1, prefix)
	s2 := mustNew(t, js2, prefix)
	require.NoError(t, s1.Setup(ctxTimeout(t, 5*time.Second)))
	rec := &consumeRecorder{}
	var mu sync.Mutex
	by := map[int]int{}
	handler := func(replica int) intake.Handler {
		return intake.HandlerFunc(func(context.Context, *wecomhit.Callback) error {
			mu.Lock()
			by[replica]++
			mu.Unlock()
			return nil
		})
	}
	counting := func(inner intake.Handler) intake.Handler {
		return intake.HandlerFunc(func(ctx context.Context, cb *wecomhit.Callback) error {
			rec.add(cb.ID)
			return inner.Handle(ctx, cb)
		})
	}
	runConsume(t, js1, s1, counting(handler(1)), intake.ConsumerOptions{MaxInFlight: 2})
	runConsume(t, js2, s2, counting(handler(2)), intake.ConsumerOptions{MaxInFlight: 2})
	ids := storeN(t, s1, 40, "r-")
	natstest.WaitFor(t, 10*time.Second, func() error {
		if rec.total() < len(ids) {
			return fmt.Errorf("%d of %d handled", rec.total(), len(ids))
		}
		return nil
	})
	for _, id := range ids {
		assert.Equal(t, 1, rec.count(id), id)
	}
	assert.Equal(t, len(ids), rec.total())
}

// TestStore_ConsumeLongHandler: a handler that runs past AckWait keeps its
// record (heartbeats), so it is not handed out again meanwhile.
func TestStore_ConsumeLongHandler(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix)
	require.NoError(t, s.Setup(ctxTimeout(t, 5*time.Second)))
	ids := storeN(t, s, 1, "long-")
	rec := &consumeRecorder{}
	release := make(chan struct{})
	h := intake.HandlerFunc(func(ctx context.Context, cb *wecomhit.Callback) error {
		rec.add(cb.ID)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	// AckWait long enough that a heartbeat (every third of it) is not late
	// on a loaded machine, short enough to observe several expiries.
	runConsume(t, js, s, h, intake.ConsumerOptions{AckWait: time.Second})
	natstest.WaitFor(t, 5*time.Second, func() error {
		if rec.count(ids[0]) == 0 {
			return errors.New("not yet handled")
		}
		return nil
	})
	time.Sleep(2500 * time.Millisecond) // 2.5 AckWaits: a record without heartbeats would be redelivered
	close(release)
	assert.Equal(t, 1, rec.count(ids[0]))
}

// TestStore_ConsumeStreamAppearsLate: a consumer that cannot be created at
// first (here: the stream does not exist yet) is created once it can be,
// and the records stored then are handled. Consume used to return at the
// first failure and leave the replica handling nothing. Meanwhile the
// gauge intake_consumer_bound says so: 0 while the creation fails, 1 once
// it succeeds.
func TestStore_ConsumeStreamAppearsLate(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	var logs testlog.Buffer
	s := mustNew(t, js, prefix, intake.WithMetrics(intake.NewMetrics(reg)), intake.WithLogger(zerolog.New(&logs)))
	rec := &consumeRecorder{}
	h := intake.HandlerFunc(func(_ context.Context, cb *wecomhit.Callback) error {
		rec.add(cb.ID)
		return nil
	})
	runConsume(t, js, s, h, intake.ConsumerOptions{})
	natstest.Eventually(t, 5*time.Second, "a failed creation logged", func() bool {
		return strings.Contains(logs.String(), "intake consumer not created; retrying")
	})
	assert.Zero(t, boundGauge(t, reg, intake.DefaultDurable), "not bound while the creation fails")
	require.NoError(t, s.Setup(ctxTimeout(t, 5*time.Second)))
	ids := storeN(t, s, 3, "late-")
	natstest.WaitFor(t, 15*time.Second, func() error {
		for _, id := range ids {
			if rec.count(id) != 1 {
				return fmt.Errorf("%s handled %d times", id, rec.count(id))
			}
		}
		return nil
	})
	assert.Equal(t, 1.0, boundGauge(t, reg, intake.DefaultDurable))
}

// TestStore_ConsumeConsumerDeleted: an operator deletes the durable while
// Consume pulls from it. Consume creates it again and handles what is
// stored afterwards; it used to fail every pull from then on, with one
// log line, handling nothing until restarted.
func TestStore_ConsumeConsumerDeleted(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	var logs testlog.Buffer
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(reg)), intake.WithLogger(zerolog.New(&logs)))
	rec := &consumeRecorder{}
	stop := runConsume(t, js, s, rec.handler(), intake.ConsumerOptions{})
	before := storeN(t, s, 1, "before-")
	rec.waitHandled(t, 1, before...)
	assert.Equal(t, 1.0, boundGauge(t, reg, intake.DefaultDurable))
	require.NoError(t, js.DeleteConsumer(ctxTimeout(t, 5*time.Second), intake.StreamName, intake.DefaultDurable))
	rec.waitHandled(t, 1, storeN(t, s, 3, "after-")...)
	assert.Contains(t, logs.String(), "intake consumer is gone; creating it again")
	// No ack floor was read yet (every 30 s by default): the consumer
	// starts as a new one would, with every record still stored.
	rec.waitHandled(t, 2, before...)
	assert.Contains(t, logs.String(), `"deliver":"all","message":"intake consumer created again"`)
	assert.Equal(t, 1.0, boundGauge(t, reg, intake.DefaultDurable))
	stop()
	assert.Zero(t, boundGauge(t, reg, intake.DefaultDurable), "Consume returned: nothing pulls")
}

// boundGauge reads wecom_receiver_intake_consumer_bound of a consumer.
func boundGauge(t testing.TB, reg prometheus.Gatherer, consumer string) float64 {
	t.Helper()
	return metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_intake_consumer_bound", "consumer", consumer)
}

// handler records each callback it is given and acks it.
func (r *consumeRecorder) handler() intake.Handler {
	return intake.HandlerFunc(func(_ context.Context, cb *wecomhit.Callback) error {
		r.add(cb.ID)
		return nil
	})
}

// waitHandled waits until each of ids has been handled exactly n times.
func (r *consumeRecorder) waitHandled(t *testing.T, n int, ids ...string) {
	t.Helper()
	natstest.WaitFor(t, 15*time.Second, func() error {
		for _, id := range ids {
			if c := r.count(id); c != n {
				return fmt.Errorf("%s handled %d times", id, c)
			}
		}
		return nil
	})
}

// consumeWithFloor has a Store (logging to the returned buffer) consume
// one record at a time, so records come in stream order: a handled record
// delivered again would be handled before any stored after it. It reads
// its ack floor every few milliseconds, and has handled three records and
// read the floor after them when it returns.
func consumeWithFloor(t *testing.T) (jetstream.JetStream, *intake.Store, *testlog.Buffer, *consumeRecorder, func()) {
	t.Helper()
	_, js := natstest.Connect(t, natstest.RunServer(t))
	logs := &testlog.Buffer{}
	s := mustSetup(t, js, intake.WithLogger(zerolog.New(logs)))
	intake.SetFloorEvery(s, 10*time.Millisecond)
	rec := &consumeRecorder{}
	stop := runConsume(t, js, s, rec.handler(), intake.ConsumerOptions{MaxInFlight: 1})
	rec.waitHandled(t, 1, storeN(t, s, 3, "before-")...)
	natstest.WaitFor(t, 15*time.Second, func() error {
		if !strings.Contains(logs.String(), `"ack_floor":3`) {
			return errors.New("ack floor 3 not read yet")
		}
		return nil
	})
	return js, s, logs, rec, stop
}

// TestStore_ConsumeConsumerDeletedResumes: a durable deleted while Consume
// pulls, after Consume has read its ack floor, is created again starting
// just after that floor. The records handled before are not handled a
// second time (hit tokens long expired, backlog gauges jumping), those
// stored after the deletion are handled once; and a later Consume (a
// restart) updates the consumer so created in place.
func TestStore_ConsumeConsumerDeletedResumes(t *testing.T) {
	js, s, logs, rec, stop := consumeWithFloor(t)
	before := []string{"before-0", "before-1", "before-2"}
	require.NoError(t, js.DeleteConsumer(ctxTimeout(t, 5*time.Second), intake.StreamName, intake.DefaultDurable))
	after := storeN(t, s, 3, "after-")
	rec.waitHandled(t, 1, append(before, after...)...)
	assert.Contains(t, logs.String(), `"start_seq":4`)
	c, err := js.Consumer(ctxTimeout(t, 5*time.Second), intake.StreamName, intake.DefaultDurable)
	require.NoError(t, err)
	assert.Equal(t, jetstream.DeliverByStartSequencePolicy, c.CachedInfo().Config.DeliverPolicy)
	assert.Equal(t, uint64(4), c.CachedInfo().Config.OptStartSeq)
	stop()

	// A restart with another setting: the server refuses a change of the
	// start, so the update must carry the one the consumer has.
	stop = runConsume(t, js, s, rec.handler(), intake.ConsumerOptions{MaxInFlight: 2})
	restart := storeN(t, s, 2, "restart-")
	rec.waitHandled(t, 1, append(append(before, after...), restart...)...)
	assert.NotContains(t, logs.String(), "intake consumer not created")
	c, err = js.Consumer(ctxTimeout(t, 5*time.Second), intake.StreamName, intake.DefaultDurable)
	require.NoError(t, err)
	assert.Equal(t, 8, c.CachedInfo().Config.MaxAckPending, "updated in place")
	assert.Equal(t, jetstream.DeliverByStartSequencePolicy, c.CachedInfo().Config.DeliverPolicy)
	assert.Equal(t, uint64(4), c.CachedInfo().Config.OptStartSeq)
	stop()
}

// TestStore_ConsumeStreamRecreated: the stream is deleted and created
// again while Consume pulls, after it read an ack floor. The new stream's
// sequences start over, so the old floor says nothing about them: the
// consumer created again must take every record of the new stream, not
// skip those numbered up to the old floor.
func TestStore_ConsumeStreamRecreated(t *testing.T) {
	js, s, _, rec, _ := consumeWithFloor(t)
	require.NoError(t, js.DeleteStream(ctxTimeout(t, 5*time.Second), intake.StreamName))
	require.NoError(t, s.Setup(ctxTimeout(t, 10*time.Second)))
	rec.waitHandled(t, 1, storeN(t, s, 5, "new-")...)
}
