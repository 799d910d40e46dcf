package intake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// flakyWriter fails its first n writes of reason, then writes through.
type flakyWriter struct {
	reason string
	fail   atomic.Int64
	w      intake.DeadLetterWriter
}

func (f *flakyWriter) Write(ctx context.Context, dl *wecomhit.DeadLetter, id string) error {
	if dl.Reason == f.reason && f.fail.Add(-1) >= 0 {
		return errors.New("dead-letter stream unavailable")
	}
	return f.w.Write(ctx, dl, id)
}

func (f *flakyWriter) Replayed(ctx context.Context, seq uint64, callbackID string) error {
	return f.w.Replayed(ctx, seq, callbackID)
}

// TestConsume_DeadLetters: every record ends. A rejected record is a dead
// letter at once, with its reason; a record that keeps failing is one after
// MaxDeliver deliveries; a dead letter that cannot be written leaves the
// record to come back, not lost. Each is written once and never handled
// again.
func TestConsume_DeadLetters(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js)
	dls := deadLetters(t, js)
	rejected := testCallback("unknown-corp")
	failing := testCallback("always-fails")
	unlucky := testCallback("dlq-write-fails")
	ok := testCallback("ok")
	for _, cb := range []*wecomhit.Callback{rejected, failing, unlucky, ok} {
		require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))
	}
	rec := &consumeRecorder{}
	h := intake.HandlerFunc(func(_ context.Context, cb *wecomhit.Callback) error {
		rec.add(cb.ID)
		switch cb.ID {
		case rejected.ID:
			return intake.Reject(wecomhit.ReasonUnknownCorp, errors.New("corp wwcorp is not configured"))
		case failing.ID:
			return errors.New("WeCom said -1")
		case unlucky.ID:
			return fmt.Errorf("bad: %w", intake.ErrPermanent)
		}
		return nil
	})
	flaky := &flakyWriter{w: dls, reason: wecomhit.ReasonPermanent}
	flaky.fail.Store(1)
	runConsume(t, js, s, h, intake.ConsumerOptions{
		MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond}, DeadLetters: flaky,
	})

	var entries []deadletter.Entry
	natstest.WaitFor(t, 10*time.Second, func() error {
		var err error
		entries, err = dls.List(ctxTimeout(t, 5*time.Second), deadletter.Filter{})
		if err != nil {
			return err
		}
		if len(entries) < 3 {
			return fmt.Errorf("%d dead letters", len(entries))
		}
		return nil
	})
	byReason := map[string]deadletter.Entry{}
	for _, e := range entries {
		byReason[e.Reason] = e
		assert.Equal(t, wecomhit.DeadLetterSchema, e.Schema)
		assert.Equal(t, wecomhit.DeadLetterCallback, e.Kind)
		assert.Equal(t, "wecom.dlq.callback.archive.hit_keyword", e.Subject)
		assert.Equal(t, "archive", e.App)
		assert.Equal(t, "wwcorp", e.CorpID)
		assert.Equal(t, wecomhit.KindHitKeyword, e.CallbackKind)
		assert.WithinDuration(t, time.Now(), e.DeadAt, time.Minute)
		var cb wecomhit.Callback
		require.NoError(t, json.Unmarshal(e.Record, &cb), "the record is the stored callback, for replay")
		assert.Equal(t, secretToken, cb.Token)
	}
	require.Len(t, byReason, 3, "%v", byReason)

	un := byReason[wecomhit.ReasonUnknownCorp]
	assert.Equal(t, "corp wwcorp is not configured", un.Error)
	assert.Equal(t, 1, un.Deliveries)
	assert.Equal(t, 1, rec.count(rejected.ID), "dead at once, not retried")

	mx := byReason[wecomhit.ReasonMaxDeliveries]
	assert.Equal(t, "WeCom said -1", mx.Error)
	assert.Equal(t, 3, mx.Deliveries)

	perm := byReason[wecomhit.ReasonPermanent]
	assert.Contains(t, perm.Error, "permanent failure")
	assert.Equal(t, 2, perm.Deliveries, "the failed write cost one more delivery")

	// Give a wrongly unacked record time to come back, then check nothing did.
	time.Sleep(200 * time.Millisecond) // bounded observation window, not synchronization
	assert.Equal(t, 3, rec.count(failing.ID), "handled MaxDeliver times, then given up")
	assert.Equal(t, 1, rec.count(ok.ID))
	assert.Equal(t, 2, rec.count(unlucky.ID))
	entries, err := dls.List(ctxTimeout(t, 5*time.Second), deadletter.Filter{})
	require.NoError(t, err)
	assert.Len(t, entries, 3, "each written once")

	// Filters narrow the list.
	only, err := dls.List(ctxTimeout(t, 5*time.Second), deadletter.Filter{Reason: wecomhit.ReasonUnknownCorp, Kind: wecomhit.DeadLetterCallback, App: "archive"})
	require.NoError(t, err)
	require.Len(t, only, 1)
	assert.Equal(t, un.Seq, only[0].Seq)
	none, err := dls.List(ctxTimeout(t, 5*time.Second), deadletter.Filter{Kind: wecomhit.DeadLetterHit})
	require.NoError(t, err)
	assert.Empty(t, none)
}

// TestConsume_UpdatesOldDurable: the "receiver" consumer of an earlier
// version took every kind with no MaxDeliver; Consume updates it in place,
// keeping its position.
func TestConsume_UpdatesOldDurable(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js)
	_, err := js.CreateOrUpdateConsumer(ctxTimeout(t, 5*time.Second), intake.StreamName, jetstream.ConsumerConfig{
		Durable: "receiver", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: prefix + ".callback.>",
		MaxAckPending: 256,
	})
	require.NoError(t, err)
	storeN(t, s, 3, "old-")
	var n atomic.Int64
	runConsume(t, js, s, intake.HandlerFunc(func(context.Context, *wecomhit.Callback) error {
		n.Add(1)
		return nil
	}), intake.ConsumerOptions{Kinds: []wecomhit.Kind{wecomhit.KindHitKeyword, wecomhit.KindProgramNotify}})
	natstest.WaitFor(t, 10*time.Second, func() error {
		if n.Load() != 3 {
			return fmt.Errorf("%d handled", n.Load())
		}
		return nil
	})
	c, err := js.Consumer(ctxTimeout(t, 5*time.Second), intake.StreamName, "receiver")
	require.NoError(t, err)
	cfg := c.CachedInfo().Config
	assert.Equal(t, []string{prefix + ".callback.*.hit_keyword", prefix + ".callback.*.program_notify"}, cfg.FilterSubjects)
	assert.Equal(t, intake.DefaultMaxDeliver+5, cfg.MaxDeliver, "the server's bound leaves room to retry a failed dead-letter write")
}

// TestConsume_LatestOnly: a new ticket consumer starts from each app's
// newest suite ticket; the older ones are never handled.
func TestConsume_LatestOnly(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js)
	for i, app := range []string{"a", "a", "a", "b"} {
		cb := testCallback(fmt.Sprintf("ticket-%d", i))
		cb.App, cb.Kind = app, wecomhit.KindSuiteTicket
		require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))
	}
	storeN(t, s, 2, "hit-") // another kind: not this consumer's
	rec := &consumeRecorder{}
	runConsume(t, js, s, intake.HandlerFunc(func(_ context.Context, cb *wecomhit.Callback) error {
		rec.add(cb.ID)
		return nil
	}), intake.ConsumerOptions{Durable: "receiver-tickets", Kinds: []wecomhit.Kind{wecomhit.KindSuiteTicket}, LatestOnly: true})
	natstest.WaitFor(t, 10*time.Second, func() error {
		if rec.total() != 2 {
			return fmt.Errorf("%d handled", rec.total())
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // bounded observation window, not synchronization
	assert.Equal(t, 1, rec.count("ticket-2"))
	assert.Equal(t, 1, rec.count("ticket-3"))
	assert.Equal(t, 2, rec.total())
}

// TestStore_Restore: a dead letter replayed with Restore is handled again,
// under a new message id (the original is within the duplicate window),
// and its dead letter is removed once the record has ended; a second
// restore of the same replay stores nothing.
func TestStore_Restore(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js)
	dls := deadLetters(t, js)
	cb := testCallback("replay-me")
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))
	var reject atomic.Bool
	reject.Store(true)
	rec := &consumeRecorder{}
	runConsume(t, js, s, intake.HandlerFunc(func(_ context.Context, got *wecomhit.Callback) error {
		rec.add(got.ID)
		if reject.Load() {
			return intake.Reject(wecomhit.ReasonUnknownCorp, errors.New("not yet"))
		}
		return nil
	}), intake.ConsumerOptions{DeadLetters: dls})
	var dead []deadletter.Entry
	natstest.WaitFor(t, 10*time.Second, func() error {
		var err error
		if dead, err = dls.List(ctxTimeout(t, 5*time.Second), deadletter.Filter{}); err == nil && len(dead) != 1 {
			err = fmt.Errorf("%d dead letters", len(dead))
		}
		return err
	})

	// Not a callback record: refused, nothing stored.
	assert.ErrorIs(t, s.Restore(ctxTimeout(t, 5*time.Second), []byte(`{"id":""}`), "x", 0), intake.ErrInvalidRecord)
	assert.ErrorIs(t, s.Restore(ctxTimeout(t, 5*time.Second), []byte(`nope`), "x", 0), intake.ErrInvalidRecord)
	assert.ErrorIs(t, s.Restore(ctxTimeout(t, 5*time.Second), dead[0].Record, "bad\nid", 0), intake.ErrInvalidRecord)

	reject.Store(false)
	id := cb.ID + "/replay/" + strconv.FormatUint(dead[0].Seq, 10)
	require.NoError(t, s.Restore(ctxTimeout(t, 5*time.Second), dead[0].Record, id, dead[0].Seq))
	require.NoError(t, s.Restore(ctxTimeout(t, 5*time.Second), dead[0].Record, id, dead[0].Seq), "a repeat is a duplicate")
	natstest.WaitFor(t, 10*time.Second, func() error {
		left, err := dls.List(ctxTimeout(t, 5*time.Second), deadletter.Filter{})
		if err == nil && len(left) != 0 {
			err = fmt.Errorf("%d dead letters left", len(left))
		}
		return err
	})
	time.Sleep(100 * time.Millisecond) // bounded observation window, not synchronization
	assert.Equal(t, 2, rec.count(cb.ID), "dead once, handled once after the replay")
	assert.Equal(t, uint64(2), streamInfo(t, js).State.Msgs, "the original and one replay")
}
