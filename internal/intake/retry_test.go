package intake_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// storeDeadline is http.ack_timeout's default: the time a callback's
// write may take.
const storeDeadline = 3 * time.Second

// TestStore_StreamAppearsLate: the stream cannot answer for the first
// second (as while its leader is elected; here it does not exist yet), and
// Store, given the callback's three seconds, keeps trying and stores the
// callback once it can. nats.go's own retries gave up after half a second.
func TestStore_StreamAppearsLate(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix)
	created := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		created <- s.Setup(ctxTimeout(t, 5*time.Second))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), storeDeadline)
	defer cancel()
	require.NoError(t, s.Store(ctx, testCallback("late-1")))
	require.NoError(t, <-created)
	assert.Equal(t, uint64(1), streamInfo(t, js).State.Msgs)
}

// TestStore_ErrNoStreamAtDeadline: with no stream at all Store fails when
// the deadline passes, not earlier, and the error says it timed out (the
// endpoint answers store_timeout) and why.
func TestStore_ErrNoStreamAtDeadline(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix)
	const deadline = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	began := time.Now()
	err := s.Store(ctx, testCallback("none-1"))
	require.Error(t, err)
	assert.GreaterOrEqual(t, time.Since(began), deadline-50*time.Millisecond, "gave up before the deadline: %v", err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
}

// TestStore_SilentLeader: the message reaches something that never answers
// (a stream leader cut off by a partition, whose routes still carry the
// message to it; here a plain subscriber) while the stream proper appears a
// second later (the leader elected on the other side). Store does not wait
// out its deadline on the first, unanswered attempt: it asks again, and
// the stream's answer arrives within the deadline.
func TestStore_SilentLeader(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	sub, err := nc.SubscribeSync(prefix + ".callback.>")
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())
	s := mustNew(t, js, prefix)
	created := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		created <- s.Setup(ctxTimeout(t, 5*time.Second))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), storeDeadline)
	defer cancel()
	require.NoError(t, s.Store(ctx, testCallback("silent-1")))
	require.NoError(t, <-created)
	assert.Equal(t, uint64(1), streamInfo(t, js).State.Msgs, "stored once, however many attempts")
}
