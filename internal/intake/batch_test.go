package intake_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/metricstest"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

// storeAll stores cbs at once, one goroutine each, released together so
// that they queue behind each other, and returns each one's error.
func storeAll(t testing.TB, s *intake.Store, cbs []*wecomhit.Callback, timeout time.Duration) []error {
	t.Helper()
	errs := make([]error, len(cbs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, cb := range cbs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			<-start
			errs[i] = s.Store(ctx, cb)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// storedIDs reads the whole stream and counts its records by id (intake.RecordID).
func storedIDs(t testing.TB, js jetstream.JetStream) map[string]int {
	t.Helper()
	ids, err := readIDs(ctxTimeout(t, 10*time.Second), js)
	require.NoError(t, err)
	return ids
}

// readIDs is storedIDs for a test that waits for the stream (say, for a
// leader after an election) and so needs the error.
func readIDs(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	st, err := js.Stream(ctx, intake.StreamName)
	if err != nil {
		return nil, err
	}
	n := st.CachedInfo().State.Msgs
	ids := make(map[string]int, n)
	if n == 0 {
		return ids, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	for read := uint64(0); read < n; {
		batch, err := c.Fetch(int(min(n-read, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			ids[intake.RecordID(m.Headers())]++
			got++
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 {
			return nil, fmt.Errorf("fetch returned nothing with %d of %d records read", read, n)
		}
		read += uint64(got)
	}
	return ids, nil
}

func callbacks(prefix string, n int, id func(i int) string) []*wecomhit.Callback {
	cbs := make([]*wecomhit.Callback, n)
	for i := range cbs {
		cbs[i] = testCallback(prefix + id(i))
	}
	return cbs
}

func batchSamples(t testing.TB, reg *prometheus.Registry) uint64 {
	t.Helper()
	ms := metricstest.Find(t, metricstest.Families(t, reg), "wecom_receiver_callback_batch_size")
	require.Len(t, ms, 1)
	return ms[0].GetHistogram().GetSampleCount()
}

func fallbacks(t testing.TB, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_callback_batch_fallbacks_total", "reason", reason)
}

func allFallbacks(t testing.TB, reg *prometheus.Registry) float64 {
	t.Helper()
	var sum float64
	for _, r := range []string{
		intake.FallbackTimeout, intake.FallbackPublish, intake.FallbackRejected, intake.FallbackGap,
		intake.FallbackPartial, intake.FallbackDisabled, intake.FallbackInvalid,
	} {
		sum += fallbacks(t, reg, r)
	}
	return sum
}

// TestStore_Batch: callbacks stored at once share batches, each is
// answered nil, and each is in the stream exactly once.
func TestStore_Batch(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(reg)))
	assert.True(t, streamInfo(t, js).Config.AllowBatchPublish, "Setup allows fast batches")

	cbs := callbacks("batch-", 300, func(i int) string { return fmt.Sprint(i) })
	for i, err := range storeAll(t, s, cbs, 10*time.Second) {
		require.NoError(t, err, cbs[i].ID)
	}
	ids := storedIDs(t, js)
	assert.Len(t, ids, len(cbs))
	for _, cb := range cbs {
		assert.Equal(t, 1, ids[cb.ID], cb.ID)
	}
	assert.NotZero(t, batchSamples(t, reg), "300 callbacks at once formed no batch")
	assert.Zero(t, allFallbacks(t, reg), "no batch fell back")

	// The records are the plain path's: same subject, headers and body.
	st, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
	require.NoError(t, err)
	m, err := st.GetMsg(ctxTimeout(t, 5*time.Second), 1)
	require.NoError(t, err)
	assert.Equal(t, intake.Subject(prefix, "archive", wecomhit.KindHitKeyword), m.Subject)
	assert.Equal(t, "application/json", m.Header.Get("Content-Type"))
	assert.True(t, strings.HasPrefix(string(m.Data), `{"id":"batch-`), string(m.Data))
}

// TestStore_BatchDuplicates: WeCom's retries of one callback, in one batch
// or in several, become one record, and every delivery is answered nil.
func TestStore_BatchDuplicates(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(reg)))

	// Ten ids, each delivered 20 times at once: duplicates inside batches,
	// and as the first message of a batch (answered as a duplicate there,
	// the rest of that batch then publishing alone).
	cbs := callbacks("dup-", 200, func(i int) string { return fmt.Sprint(i % 10) })
	for round := range 2 { // the second round: every one a duplicate of a stored record
		for i, err := range storeAll(t, s, cbs, 10*time.Second) {
			require.NoError(t, err, "round %d, %s", round, cbs[i].ID)
		}
	}
	ids := storedIDs(t, js)
	assert.Len(t, ids, 10)
	for id, n := range ids {
		assert.Equal(t, 1, n, id)
	}
	assert.NotZero(t, batchSamples(t, reg))
	// The server skips a message whose id it holds and counts it in the
	// commit, as a plain publish acks it as a duplicate: no fallback.
	assert.Zero(t, allFallbacks(t, reg))
}

// TestStore_BatchFull: a stream filling up in the middle of batches. Every
// callback answered nil is in the stream, every other one got
// ErrStoreFull, and nothing is in the stream that was not answered nil.
func TestStore_BatchFull(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithMaxBytes(1<<20), intake.WithMetrics(intake.NewMetrics(reg)))

	raw := bigRaw(20 << 10) // 1 MiB holds about 50
	cbs := callbacks("full-", 120, func(i int) string { return fmt.Sprint(i) })
	for _, cb := range cbs {
		cb.Raw = raw
	}
	errs := storeAll(t, s, cbs, 10*time.Second)
	ids := storedIDs(t, js)
	var stored, full int
	for i, err := range errs {
		id := cbs[i].ID
		if err == nil {
			stored++
			assert.Equal(t, 1, ids[id], "%s answered nil but not stored once", id)
			continue
		}
		full++
		assert.ErrorIs(t, err, intake.ErrStoreFull, id)
		assert.Zero(t, ids[id], "%s stored but answered %v", id, err)
	}
	assert.NotZero(t, stored)
	assert.NotZero(t, full, "120 records of 20 KiB fitted in 1 MiB")
	assert.Len(t, ids, stored)
	t.Logf("stored %d, full %d, batches %d, rejected %v, partial %v", stored, full, batchSamples(t, reg),
		fallbacks(t, reg, intake.FallbackRejected), fallbacks(t, reg, intake.FallbackPartial))
}

// TestStore_BatchDisabledOnStream: a stream that stops allowing fast
// batches under a running Store. The server refuses the batch, each of its
// callbacks is stored alone, and the Store stops batching and says so once.
func TestStore_BatchDisabledOnStream(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	var logs testlog.Buffer
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(reg)), intake.WithLogger(zerolog.New(&logs)))
	cfg := streamInfo(t, js).Config
	cfg.AllowBatchPublish = false
	_, err := js.UpdateStream(ctxTimeout(t, 5*time.Second), cfg)
	require.NoError(t, err)

	cbs := callbacks("off-", 100, func(i int) string { return fmt.Sprint(i) })
	for i, err := range storeAll(t, s, cbs, 10*time.Second) {
		require.NoError(t, err, cbs[i].ID)
	}
	assert.NotZero(t, fallbacks(t, reg, intake.FallbackDisabled), "the server refused a batch")
	assert.Equal(t, 1, strings.Count(logs.String(), "without batching"), logs.String())
	batches := batchSamples(t, reg)

	more := callbacks("off-more-", 100, func(i int) string { return fmt.Sprint(i) })
	for i, err := range storeAll(t, s, more, 10*time.Second) {
		require.NoError(t, err, more[i].ID)
	}
	assert.Equal(t, batches, batchSamples(t, reg), "no batch once the server said no")
	ids := storedIDs(t, js)
	assert.Len(t, ids, len(cbs)+len(more))
	for id, n := range ids {
		assert.Equal(t, 1, n, id)
	}
}

// TestStore_BatchUnanswered: a batch that nobody answers (the stream gone,
// a subscriber taking its subject and saying nothing) is never taken for
// stored: each callback falls back to its own publish and fails at its
// deadline, as it would without batching.
func TestStore_BatchUnanswered(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(reg)))
	require.NoError(t, js.DeleteStream(ctxTimeout(t, 5*time.Second), intake.StreamName))
	sub, err := nc.SubscribeSync(prefix + ".callback.>")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	// A lone callback goes first, alone, and holds the flight until its
	// deadline; the others queue behind it meanwhile and then go as one
	// batch.
	first := make(chan error, 1)
	go func() { first <- s.Store(ctxTimeout(t, 300*time.Millisecond), testCallback("silent-first")) }()
	_, err = sub.NextMsg(5 * time.Second)
	require.NoError(t, err, "the first callback was not sent")
	cbs := callbacks("silent-", 50, func(i int) string { return fmt.Sprint(i) })
	errs := storeAll(t, s, cbs, 2*time.Second)
	assert.ErrorIs(t, <-first, context.DeadlineExceeded)
	for i, err := range errs {
		assert.ErrorIs(t, err, context.DeadlineExceeded, cbs[i].ID)
	}
	assert.NotZero(t, fallbacks(t, reg, intake.FallbackTimeout))
	msgs, _, err := sub.Pending()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, msgs, 2*len(cbs), "sent in a batch, then each again alone")
}

// TestStore_SetupAllowsBatches: a stream made before batching (no
// allow_batched) gets it from Setup, keeps its records, and the next
// Store batches.
func TestStore_SetupAllowsBatches(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	old := mustSetup(t, js, intake.WithBatching(false))
	require.NoError(t, old.Store(ctxTimeout(t, 5*time.Second), testCallback("kept")))
	cfg := streamInfo(t, js).Config
	cfg.AllowBatchPublish = false
	_, err := js.UpdateStream(ctxTimeout(t, 5*time.Second), cfg)
	require.NoError(t, err)
	require.False(t, streamInfo(t, js).Config.AllowBatchPublish)

	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(reg)))
	info := streamInfo(t, js)
	assert.True(t, info.Config.AllowBatchPublish)
	assert.Equal(t, uint64(1), info.State.Msgs, "the update keeps the records")
	cbs := callbacks("new-", 100, func(i int) string { return fmt.Sprint(i) })
	for i, err := range storeAll(t, s, cbs, 10*time.Second) {
		require.NoError(t, err, cbs[i].ID)
	}
	assert.NotZero(t, batchSamples(t, reg))
	assert.Zero(t, allFallbacks(t, reg))
	assert.Len(t, storedIDs(t, js), len(cbs)+1)
}

// TestStore_WithBatchingOff: every callback goes alone.
func TestStore_WithBatchingOff(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithBatching(false), intake.WithMetrics(intake.NewMetrics(reg)))
	cbs := callbacks("alone-", 100, func(i int) string { return fmt.Sprint(i) })
	for i, err := range storeAll(t, s, cbs, 10*time.Second) {
		require.NoError(t, err, cbs[i].ID)
	}
	assert.Zero(t, batchSamples(t, reg))
	assert.Len(t, storedIDs(t, js), len(cbs))
}

// TestStore_BatchCallersGiveUp: callers whose ctx ends while they wait in
// the queue or ride a batch get their ctx's error, and leave no flight
// taken: the Store goes on storing, in batches. One answered nil all the
// same (its batch stored it as its ctx ended) is stored, once.
func TestStore_BatchCallersGiveUp(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithMetrics(intake.NewMetrics(reg)))
	var answeredNil []string
	for round := range 5 {
		cbs := callbacks(fmt.Sprintf("hasty-%d-", round), 200, func(i int) string { return fmt.Sprint(i) })
		for i, err := range storeAll(t, s, cbs, 200*time.Microsecond) {
			if err != nil {
				assert.ErrorIs(t, err, context.DeadlineExceeded, cbs[i].ID)
			} else {
				answeredNil = append(answeredNil, cbs[i].ID)
			}
		}
	}
	batches := batchSamples(t, reg)
	cbs := callbacks("patient-", 200, func(i int) string { return fmt.Sprint(i) })
	for i, err := range storeAll(t, s, cbs, 10*time.Second) {
		require.NoError(t, err, cbs[i].ID)
	}
	assert.Greater(t, batchSamples(t, reg), batches, "still batching")
	ids := storedIDs(t, js)
	for _, cb := range cbs {
		assert.Equal(t, 1, ids[cb.ID], cb.ID)
	}
	for _, id := range answeredNil {
		assert.Equal(t, 1, ids[id], "answered nil: "+id)
	}
}

// TestStore_BatchLeaderChange: a replicated stream whose leader steps
// down, again and again, while callbacks are stored in batches. Every
// callback answered nil is in the stream, once.
func TestStore_BatchLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := natstest.RunCluster(t, 3)
	nc, js := natstest.ConnectURL(t, natstest.ClientURLs(servers...))
	reg := prometheus.NewPedanticRegistry()
	s := mustSetup(t, js, intake.WithReplicas(3), intake.WithMetrics(intake.NewMetrics(reg)))

	// Step the leader down over and over while rounds of callbacks are
	// stored, until it has stepped down three times (or 60 rounds).
	var steps atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+intake.StreamName, nil, 2*time.Second); err == nil {
				steps.Add(1)
			}
		}
	}()
	var all []*wecomhit.Callback
	var errs []error
	for round := 0; round < 60 && steps.Load() < 3; round++ {
		cbs := callbacks(fmt.Sprintf("lead-%d-", round), 100, func(i int) string { return fmt.Sprint(i) })
		all = append(all, cbs...)
		errs = append(errs, storeAll(t, s, cbs, 3*time.Second)...)
	}
	close(stop)
	<-done

	var ok int
	natstest.WaitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		ids, err := readIDs(ctx, js)
		if err != nil {
			return err
		}
		ok = 0
		for i, err := range errs {
			if err != nil {
				continue
			}
			ok++
			if ids[all[i].ID] != 1 {
				return fmt.Errorf("%s answered nil, stored %d times", all[i].ID, ids[all[i].ID])
			}
		}
		return nil
	})
	t.Logf("%d of %d answered nil, %d step-downs, %d batches, fallbacks %v", ok, len(all), steps.Load(),
		batchSamples(t, reg), allFallbacks(t, reg))
	assert.NotZero(t, ok)
	assert.GreaterOrEqual(t, steps.Load(), int64(3), "the leader did not step down three times in 60 rounds")
}
