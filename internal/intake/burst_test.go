package intake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestConsume_AfterBurst: after a burst that keeps every handler slot busy,
// the consumer keeps pulling: a record stored after the burst is handled at
// once, not after nats.go's ~30 s missing-heartbeat recovery (issue 8,
// item 7: a full client buffer dropped the server's status messages).
func TestConsume_AfterBurst(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix)
	require.NoError(t, s.Setup(ctxTimeout(t, 5*time.Second)))
	var handled, last atomic.Int64
	h := intake.HandlerFunc(func(ctx context.Context, cb *wecomhit.Callback) error {
		if cb.ID == "last" {
			last.Store(1)
			return nil
		}
		// Slow enough that the slots stay full while records keep coming.
		time.Sleep(time.Millisecond)
		handled.Add(1)
		return nil
	})
	runConsume(t, js, s, h, intake.ConsumerOptions{MaxInFlight: 16})

	const n = 4000
	ctx := ctxTimeout(t, 60*time.Second)
	for i := range n {
		_, err := js.PublishAsync(intake.Subject(prefix, "archive", wecomhit.KindHitKeyword), mustJSON(t, testCallback("b-"+strconv.Itoa(i))))
		require.NoError(t, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("burst not stored")
	}
	// Progress, not speed: while records wait, some are handled in every
	// 5 s (handling takes well under a second per hundred; the stall was
	// about 30 s without any).
	for got := handled.Load(); got < n; {
		prev := got
		natstest.WaitFor(t, 5*time.Second, func() error {
			if got = handled.Load(); got == prev {
				return fmt.Errorf("stalled at %d of %d handled", got, n)
			}
			return nil
		})
	}
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("last")))
	natstest.WaitFor(t, 5*time.Second, func() error {
		if last.Load() == 0 {
			return fmt.Errorf("the record after the burst is not handled")
		}
		return nil
	})
}

func mustJSON(t testing.TB, cb *wecomhit.Callback) []byte {
	t.Helper()
	data, err := json.Marshal(cb)
	require.NoError(t, err)
	return data
}
