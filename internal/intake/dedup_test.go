package intake_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
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
)

func TestRecordID(t *testing.T) {
	assert.Equal(t, "a", intake.RecordID(map[string][]string{intake.IDHeader: {"a"}, jetstream.MsgIDHeader: {"b"}}))
	assert.Equal(t, "b", intake.RecordID(map[string][]string{jetstream.MsgIDHeader: {"b"}}))
	assert.Empty(t, intake.RecordID(nil))
}

// TestStore_LocalDedup: a Store keeping its ids itself stores a callback
// once however often and however concurrently it comes, puts no
// Nats-Msg-Id on the record (so the server keeps nothing for it), and a
// new Store on the same stream (a restarted receiver) still knows the ids.
func TestStore_LocalDedup(t *testing.T) {
	for _, batching := range []bool{true, false} {
		t.Run(map[bool]string{true: "batching", false: "alone"}[batching], func(t *testing.T) {
			srv := natstest.RunServer(t)
			_, js := natstest.Connect(t, srv)
			reg := prometheus.NewRegistry()
			s := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithBatching(batching), intake.WithMetrics(intake.NewMetrics(reg)))

			cb := testCallback("0123456789abcdef0123456789abcdef")
			require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))
			require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb), "a repeat succeeds")

			st, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
			require.NoError(t, err)
			m, err := st.GetMsg(ctxTimeout(t, 5*time.Second), 1)
			require.NoError(t, err)
			assert.Equal(t, cb.ID, m.Header.Get(intake.IDHeader))
			assert.Empty(t, m.Header.Values(jetstream.MsgIDHeader), "the server is not asked to keep the id")

			// Sixteen callbacks, each sent by eight callers at once.
			var wg sync.WaitGroup
			errs := make(chan error, 16*8)
			for i := range 16 * 8 {
				c := testCallback(string(rune('A'+i%16)) + "-concurrent")
				wg.Go(func() { errs <- s.Store(ctxTimeout(t, 10*time.Second), c) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			ids := storedIDs(t, js)
			assert.Len(t, ids, 17)
			assert.Equal(t, 17.0, callbackIDs(t, reg))
			onceEach(t, ids, reg)

			// A record stored before by the server's de-duplication (an
			// upgraded receiver's store) counts as well.
			legacy := testCallback("legacy")
			require.NoError(t, mustSetup(t, js).Store(ctxTimeout(t, 5*time.Second), legacy))

			// A restarted receiver: a new Store loads the window's ids.
			reg = prometheus.NewRegistry()
			again := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithBatching(batching), intake.WithMetrics(intake.NewMetrics(reg)))
			assert.Equal(t, 18.0, callbackIDs(t, reg), "loaded: 17 and the legacy record")
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), cb))
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), testCallback("A-concurrent")))
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), legacy))
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), testCallback("new")))
			ids = storedIDs(t, js)
			assert.Len(t, ids, 19)
			onceEach(t, ids, reg)
		})
	}
}

// onceEach checks that each id has one record. A fast batch that ended
// without a clean answer (no answer within a second, on a loaded machine)
// sends its callbacks again one by one, and with local de-duplication one
// that had landed is then stored twice (dedup.go): allowed only then.
func onceEach(t *testing.T, ids map[string]int, reg *prometheus.Registry) {
	t.Helper()
	if n := allFallbacks(t, reg); n > 0 {
		t.Logf("%v batches fell back: a second record of a callback is allowed", n)
		return
	}
	for id, n := range ids {
		assert.Equal(t, 1, n, "%s stored %d times", id, n)
	}
}

func callbackIDs(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return metricstest.Value(t, metricstest.Families(t, reg), "wecom_receiver_callback_ids")
}

// TestStore_LocalDedupLoadsTheWindowOnly: Setup loads the ids of records
// stored within the duplicate window, by the records' times, not older
// ones; more than one fetch's worth of them.
func TestStore_LocalDedupLoadsTheWindowOnly(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	// Alone, not in batches: a batch that ends unclean on a loaded machine
	// may store a callback twice (onceEach), and this test is about loading.
	s := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithBatching(false))
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("old")))
	time.Sleep(5 * time.Millisecond) // the server's clock moves on
	const n = 5000                   // past one fetch of loadIDs (4096)
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("%032x", i))
	}
	storeIDs(t, s, ids)
	st, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
	require.NoError(t, err)
	first, err := st.GetMsg(ctxTimeout(t, 5*time.Second), 2) // the first of the n
	require.NoError(t, err)

	// A receiver started an hour after the first of the n was stored: it
	// is at the window's edge, "old" is past it.
	again := mustNew(t, js, prefix, intake.WithLocalDedup(true), intake.WithBatching(false))
	intake.SetDedupClock(again, func() time.Time { return first.Time.Add(intake.DefaultDuplicateWindow) })
	require.NoError(t, again.Setup(ctxTimeout(t, 10*time.Second)))
	list := st.ListConsumers(ctxTimeout(t, 5*time.Second))
	for c := range list.Info() {
		t.Errorf("consumer %s left after Setup", c.Name)
	}
	require.NoError(t, list.Err())
	storeIDs(t, again, ids)
	require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), testCallback("old")))
	got := storedIDs(t, js)
	assert.Equal(t, 2, got["old"], "stored again: past the window")
	assert.Len(t, got, n+1)
	for _, id := range ids {
		require.Equal(t, 1, got[id], "%s: loaded, so not stored again", id)
	}
}

// storeIDs stores a callback of each id, all at once.
func storeIDs(t *testing.T, s *intake.Store, ids []string) {
	t.Helper()
	cbs := make([]*wecomhit.Callback, len(ids))
	for i, id := range ids {
		cbs[i] = testCallback(id)
	}
	for _, err := range storeAll(t, s, cbs, 20*time.Second) {
		require.NoError(t, err)
	}
}

// TestStore_LocalDedupForgetsAFailure: a Store that fails leaves no trace
// of its id, so WeCom's retry of the callback is stored. Here the stream
// is full, then has room again.
func TestStore_LocalDedupForgetsAFailure(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithBatching(false))
	ctx := ctxTimeout(t, 10*time.Second)
	st, err := js.Stream(ctx, intake.StreamName)
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	cfg.MaxMsgs = 1
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, s.Store(ctx, testCallback("first")))

	cb := testCallback("0123456789abcdef0123456789abcdef")
	require.ErrorIs(t, s.Store(ctx, cb), intake.ErrStoreFull)
	cfg.MaxMsgs = -1
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, s.Store(ctx, cb), "the retry")
	assert.Equal(t, map[string]int{"first": 1, cb.ID: 1}, storedIDs(t, js))
}

// TestRestore_LocalDedup: a replay carries a Nats-Msg-Id however the
// Store keeps callback ids, so that replays of one dead letter by any
// process (the admin API here, the dlq command on the embedded server's
// listener) are one record.
func TestRestore_LocalDedup(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	local := mustSetup(t, js, intake.WithLocalDedup(true))
	other := mustNew(t, js, prefix) // the dlq command's Store
	record, err := json.Marshal(testCallback("cb-1"))
	require.NoError(t, err)
	for _, s := range []*intake.Store{local, local, other} {
		require.NoError(t, s.Restore(ctxTimeout(t, 5*time.Second), record, "cb-1/replay/7", 7))
	}
	assert.Equal(t, map[string]int{"cb-1/replay/7": 1}, storedIDs(t, js))
	st, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
	require.NoError(t, err)
	m, err := st.GetMsg(ctxTimeout(t, 5*time.Second), 1)
	require.NoError(t, err)
	assert.Equal(t, "cb-1/replay/7", m.Header.Get(jetstream.MsgIDHeader))
}

// TestStore_LocalDedupLoadRunsOut: a load that runs out of time does not
// stop Setup; the Store starts with what it read, and says so.
func TestStore_LocalDedupLoadRunsOut(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithBatching(false))
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i)
	}
	storeIDs(t, s, ids)

	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	again := mustNew(t, js, prefix, intake.WithLocalDedup(true), intake.WithMetrics(intake.NewMetrics(reg)),
		intake.WithLogger(zerolog.New(&logs)))
	intake.SetLoadBudget(again, time.Nanosecond)
	require.NoError(t, again.Setup(ctxTimeout(t, 10*time.Second)))
	assert.Less(t, callbackIDs(t, reg), float64(len(ids)))
	assert.Contains(t, logs.String(), `"level":"warn"`)
	assert.Contains(t, logs.String(), "not all loaded")
}

// TestStore_LocalDedupAwaitsALateAnswer: without a Nats-Msg-Id a copy sent
// again would be a second record, so the Store waits for a late answer
// (broker.PublishAwait) where the server's de-duplication would send again
// after half the time left.
func TestStore_LocalDedupAwaitsALateAnswer(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	slow := &natstest.SlowPublishes{JetStream: js}
	s := mustSetup(t, slow, intake.WithLocalDedup(true), intake.WithBatching(false))
	slow.Delay = 1500 * time.Millisecond
	require.NoError(t, s.Store(ctxTimeout(t, 2500*time.Millisecond), testCallback("late")))
	assert.Equal(t, int32(1), slow.Calls.Load(), "one publish")
	assert.Equal(t, map[string]int{"late": 1}, storedIDs(t, js))
}
