package intake_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestStore_LeavesRecordOnReturn: Store uses its *Callback only until it
// returns (the callback handler reuses the struct for the next callback,
// callback.Sink's contract). Callbacks stored at once from many goroutines,
// each struct overwritten the moment Store returns, are each stored as
// they were given, with their own id, whichever header holds it.
func TestStore_LeavesRecordOnReturn(t *testing.T) {
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%t", local), func(t *testing.T) { testLeavesRecordOnReturn(t, local) })
	}
}

func testLeavesRecordOnReturn(t *testing.T, local bool) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithLocalDedup(local))

	const workers, each = 8, 25
	want := map[string]wecomhit.Callback{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cb := new(wecomhit.Callback) // one struct per worker, reused as the handler does
			for i := range each {
				*cb = *testCallback(fmt.Sprintf("cb-%d-%d", w, i))
				cb.Raw = fmt.Sprintf("<xml><N>%d-%d</N></xml>", w, i)
				mu.Lock()
				want[cb.ID] = *cb
				mu.Unlock()
				err := s.Store(ctxTimeout(t, 10*time.Second), cb)
				*cb = wecomhit.Callback{ID: "overwritten", App: "x", Kind: "y", Raw: "garbage"}
				if !assert.NoError(t, err) {
					return
				}
			}
		}()
	}
	wg.Wait()

	stream, err := js.Stream(ctxTimeout(t, 5*time.Second), "WECOM_CALLBACKS")
	require.NoError(t, err)
	got := 0
	for seq := uint64(1); seq <= workers*each; seq++ {
		m, err := stream.GetMsg(ctxTimeout(t, 5*time.Second), seq)
		require.NoError(t, err)
		var cb wecomhit.Callback
		require.NoError(t, json.Unmarshal(m.Data, &cb))
		id := intake.RecordID(m.Header)
		w, ok := want[id]
		require.True(t, ok, "record %d has an id that was never stored: %q", seq, id)
		require.Equal(t, cb.ID, id, "record %d: its header's id is another record's", seq)
		assert.Equal(t, w, cb)
		got++
	}
	assert.Equal(t, workers*each, got)
}
