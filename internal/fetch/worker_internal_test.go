package fetch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
)

// TestLimiter: n calls pass at once in a period, the next waits until the
// oldest leaves the sliding period (or its ctx ends).
func TestLimiter(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1717000000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := newLimiter(2, time.Minute, clock)

	require.NoError(t, l.wait(context.Background()))
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	require.NoError(t, l.wait(context.Background()))

	// Budget spent: the third call waits, here until its ctx ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, l.wait(ctx), context.Canceled)

	// A minute after the first call, one slot is free again, one only.
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	require.NoError(t, l.wait(context.Background()))
	assert.ErrorIs(t, l.wait(ctx), context.Canceled)
}

// TestCorp_Trigger: triggers before the fetch starts share one ticket,
// a callback's source outranks a poll's, and join counts the callbacks
// waiting on it.
func TestCorp_Trigger(t *testing.T) {
	w := &corp{}
	poll := w.trigger(wecomhit.SourcePoll)
	assert.Equal(t, wecomhit.SourcePoll, poll.source)

	t1, first := w.join()
	assert.Same(t, poll, t1, "one fetch for all that came before it started")
	assert.True(t, first)
	assert.Equal(t, wecomhit.SourceCallback, t1.source, "a callback outranks a poll")
	t2, first := w.join()
	assert.Same(t, t1, t2)
	assert.False(t, first)

	assert.Same(t, t1, w.trigger(wecomhit.SourcePoll))
	assert.Equal(t, wecomhit.SourceCallback, t1.source, "a later poll does not demote it")
}
