package callback

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// deadlineOf is ctx's deadline; the test fails if it has none.
func deadlineOf(t *testing.T, ctx context.Context) time.Time {
	t.Helper()
	dl, ok := ctx.Deadline()
	require.True(t, ok, "no deadline")
	return dl
}

// TestDeadlineShare: requests of one slot get one context; each context
// ends no sooner than the timeout after its request and at most a slot
// later; a request past the slot, or one whose clock reads earlier than
// the slot's, gets another.
func TestDeadlineShare(t *testing.T) {
	const timeout = 3 * time.Second
	d := &deadlineShare{timeout: timeout}
	t0 := time.Now()
	inBounds := func(ctx context.Context, now time.Time) {
		t.Helper()
		dl := deadlineOf(t, ctx)
		assert.False(t, dl.Before(now.Add(timeout)), "deadline %v is sooner than the timeout after %v", dl, now)
		assert.False(t, dl.After(now.Add(timeout+deadlineSlot)), "deadline %v is more than a slot late for %v", dl, now)
	}

	a := d.context(t0)
	inBounds(a, t0)
	within := t0.Add(deadlineSlot / 2)
	assert.Same(t, a, d.context(within), "a request within the slot shares its context")
	inBounds(a, within)

	past := t0.Add(deadlineSlot + time.Microsecond)
	b := d.context(past)
	assert.NotSame(t, a, b, "a request past the slot gets a new context")
	inBounds(b, past)

	earlier := t0.Add(-deadlineSlot)
	c := d.context(earlier)
	assert.NotSame(t, b, c, "a clock that reads earlier gets a context of its own time")
	inBounds(c, earlier)
}

// TestDeadlineShare_Concurrent: contexts handed out at once to many
// goroutines each fit their request, and they are shared: at most a few
// per slot the calls spanned (one per slot, and one for each goroutine
// that read its clock just before the slot's context was made).
func TestDeadlineShare_Concurrent(t *testing.T) {
	const timeout, workers, each = time.Second, 8, 500
	d := &deadlineShare{timeout: timeout}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		distinct = map[context.Context]bool{}
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			seen := map[context.Context]bool{}
			defer func() {
				mu.Lock()
				defer mu.Unlock()
				for ctx := range seen {
					distinct[ctx] = true
				}
			}()
			for range each {
				now := time.Now()
				ctx := d.context(now)
				seen[ctx] = true
				dl, ok := ctx.Deadline()
				if !ok || dl.Before(now.Add(timeout)) || dl.After(now.Add(timeout+deadlineSlot)) {
					t.Errorf("deadline %v (set %v) does not fit a request at %v", dl, ok, now)
					return
				}
			}
		})
	}
	wg.Wait()
	slots := int(time.Since(start)/deadlineSlot) + 1
	assert.LessOrEqual(t, len(distinct), slots*(1+workers), "%d calls over %d slots", workers*each, slots)
}

// TestDeadlineShare_Ends: a shared context ends at its deadline, with
// context.DeadlineExceeded, though nobody cancels it.
func TestDeadlineShare_Ends(t *testing.T) {
	d := &deadlineShare{timeout: 20 * time.Millisecond}
	ctx := d.context(time.Now())
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the shared context did not end")
	}
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
}

// TestHandler_StoreContext: the sink stores under a shared context with
// the ack timeout when Receive gets context.Background (the fasthttp
// edge), and under a context derived from the transport's otherwise, so
// that what the transport's context carries reaches the sink.
func TestHandler_StoreContext(t *testing.T) {
	const ackTimeout = 2 * time.Second
	type key struct{}
	var got []context.Context
	sink := SinkFunc(func(ctx context.Context, _ *wecomhit.Callback) error {
		got = append(got, ctx)
		return nil
	})
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	h, err := New([]App{{Name: "v1", Crypter: c}}, sink, WithTimestampWindow(0), WithAckTimeout(ackTimeout))
	require.NoError(t, err)
	q, body, _ := sealHit(t, c, "1717000010")
	receive := func(ctx context.Context) {
		t.Helper()
		req := Request{
			App: "v1", Signature: q.Get("msg_signature"), Timestamp: q.Get("timestamp"), Nonce: q.Get("nonce"),
			ContentLength: int64(len(body)), ReadBody: func() (string, error) { return body, nil },
		}
		before := time.Now()
		a := h.Receive(ctx, &req)
		require.Equal(t, http.StatusOK, a.Status, a.Body)
		dl := deadlineOf(t, got[len(got)-1])
		assert.False(t, dl.Before(before.Add(ackTimeout)), "deadline %v sooner than the ack timeout", dl)
		assert.False(t, dl.After(time.Now().Add(ackTimeout+deadlineSlot)), "deadline %v later than the ack timeout and a slot", dl)
	}

	receive(context.Background())
	assert.True(t, got[0] == h.deadlines.cur.Load().ctx, "the sink got the shared context")

	parent := context.WithValue(context.Background(), key{}, "transport")
	receive(parent)
	assert.Equal(t, "transport", got[1].Value(key{}), "the sink sees the transport's context")
}
