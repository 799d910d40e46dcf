package intake_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/intake"
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
			s := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithBatching(batching))

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
			for id, n := range ids {
				assert.Equal(t, 1, n, "%s stored %d times", id, n)
			}

			// A record stored before by the server's de-duplication (an
			// upgraded receiver's store) counts as well.
			legacy := testCallback("legacy")
			require.NoError(t, mustSetup(t, js).Store(ctxTimeout(t, 5*time.Second), legacy))

			// A restarted receiver: a new Store loads the window's ids.
			again := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithBatching(batching))
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), cb))
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), testCallback("A-concurrent")))
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), legacy))
			require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), testCallback("new")))
			ids = storedIDs(t, js)
			assert.Len(t, ids, 19)
			for id, n := range ids {
				assert.Equal(t, 1, n, "%s stored %d times", id, n)
			}
		})
	}
}

// TestStore_LocalDedupLoadsTheWindowOnly: Setup loads the ids of records
// stored within the duplicate window, not older ones.
func TestStore_LocalDedupLoadsTheWindowOnly(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	const window = time.Second
	s := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithDuplicateWindow(window))
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("old")))
	time.Sleep(window + 100*time.Millisecond)
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("recent")))

	again := mustSetup(t, js, intake.WithLocalDedup(true), intake.WithDuplicateWindow(window))
	require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), testCallback("recent")))
	require.NoError(t, again.Store(ctxTimeout(t, 5*time.Second), testCallback("old")))
	assert.Equal(t, map[string]int{"old": 2, "recent": 1}, storedIDs(t, js))
}

// TestRestore_LocalDedup: a replay's message id is de-duplicated too.
func TestRestore_LocalDedup(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithLocalDedup(true))
	record, err := json.Marshal(testCallback("cb-1"))
	require.NoError(t, err)
	for range 2 {
		require.NoError(t, s.Restore(ctxTimeout(t, 5*time.Second), record, "cb-1/replay/7", 7))
	}
	assert.Equal(t, map[string]int{"cb-1/replay/7": 1}, storedIDs(t, js))
}
