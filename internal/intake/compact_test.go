package intake_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// kindConsumer creates a durable on one kind's records, as the intake
// consumers split by kind are.
func kindConsumer(t *testing.T, js jetstream.JetStream, name string, kind wecomhit.Kind) jetstream.Consumer {
	t.Helper()
	c, err := js.CreateOrUpdateConsumer(ctxTimeout(t, 5*time.Second), intake.StreamName, jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: intake.Subject(prefix, "archive", kind),
	})
	require.NoError(t, err)
	return c
}

// handle fetches n records of c and acks them (or, with nak, naks the last
// one), returning their ids.
func handle(t *testing.T, c jetstream.Consumer, n int, nakLast bool) {
	t.Helper()
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
	require.NoError(t, err)
	got := 0
	for m := range batch.Messages() {
		got++
		if nakLast && got == n {
			require.NoError(t, m.NakWithDelay(time.Hour))
			continue
		}
		require.NoError(t, m.DoubleAck(ctxTimeout(t, 5*time.Second)))
	}
	require.NoError(t, batch.Error())
	require.Equal(t, n, got)
}

func storeKind(t *testing.T, s *intake.Store, id string, kind wecomhit.Kind, raw string) {
	t.Helper()
	cb := testCallback(id)
	cb.Kind, cb.Raw = kind, raw
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))
}

// A stream of handled records is compacted before it fills, so a busy
// deployment keeps taking callbacks; records a consumer has not handled
// stay, and so do the ids in the duplicate window.
func TestStore_Compact(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithMaxBytes(1<<20))
	hits := kindConsumer(t, js, "hits", wecomhit.KindHitKeyword)
	tickets := kindConsumer(t, js, "tickets", wecomhit.KindSuiteTicket)
	// A kind that never comes: its consumer has nothing to hold back.
	kindConsumer(t, js, "rare", wecomhit.KindMsgAuditNotify)
	durables := []string{"hits", "tickets", "rare"}
	raw := bigRaw(50 << 10)
	ctx := ctxTimeout(t, 30*time.Second)

	// Below the threshold nothing goes, handled or not.
	storeKind(t, s, "h-0", wecomhit.KindHitKeyword, raw)
	handle(t, hits, 1, false)
	n, err := s.Compact(ctx, durables, intake.DefaultCompactAt)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, uint64(1), streamInfo(t, js).State.Msgs)

	// Seq 2..11: hits and tickets; every ticket is handled, the hits up to
	// h-4, and h-5 is waiting for a redelivery.
	for i := 1; i <= 5; i++ {
		storeKind(t, s, fmt.Sprintf("h-%d", i), wecomhit.KindHitKeyword, raw)
		storeKind(t, s, fmt.Sprintf("t-%d", i), wecomhit.KindSuiteTicket, raw)
	}
	handle(t, tickets, 5, false)
	handle(t, hits, 5, true) // h-1..h-4 acked, h-5 nak'd
	require.Greater(t, float64(streamInfo(t, js).State.Bytes), 0.5*float64(1<<20))

	// A consumer it cannot see: nothing is purged.
	_, err = s.Compact(ctx, append(durables, "gone"), intake.DefaultCompactAt)
	require.ErrorIs(t, err, intake.ErrNoConsumer)
	assert.Equal(t, uint64(11), streamInfo(t, js).State.Msgs)

	n, err = s.Compact(ctx, durables, intake.DefaultCompactAt)
	require.NoError(t, err)
	// h-5 is seq 10: 1..9 go, and so does t-5 (seq 11), which the ticket
	// consumer has handled: a hit waiting for a retry holds back hits only.
	assert.Equal(t, uint64(10), n)
	info := streamInfo(t, js)
	assert.Equal(t, uint64(10), info.State.FirstSeq)
	assert.Equal(t, uint64(1), info.State.Msgs)

	// A purged id is still a duplicate: WeCom's retry is not stored again.
	storeKind(t, s, "h-1", wecomhit.KindHitKeyword, raw)
	assert.Equal(t, uint64(1), streamInfo(t, js).State.Msgs)

	// Twice the stream's size in handled records: every one is taken.
	for i := range 40 {
		id := fmt.Sprintf("more-%d", i)
		storeKind(t, s, id, wecomhit.KindSuiteTicket, raw)
		handle(t, tickets, 1, false)
		_, err := s.Compact(ctx, durables, intake.DefaultCompactAt)
		require.NoError(t, err)
	}
	// h-5 was never handled: still there.
	st, err := js.Stream(ctx, intake.StreamName)
	require.NoError(t, err)
	m, err := st.GetMsg(ctx, 10)
	require.NoError(t, err)
	assert.Contains(t, string(m.Data), `"h-5"`)
}

// Without compaction the same traffic fills the stream: what Compact is
// for. Also: a stream without MaxBytes is left alone.
func TestStore_CompactNeeded(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithMaxBytes(1<<20))
	tickets := kindConsumer(t, js, "tickets", wecomhit.KindSuiteTicket)
	raw := bigRaw(50 << 10)
	var err error
	for i := 0; i < 40 && err == nil; i++ {
		cb := testCallback(fmt.Sprintf("t-%d", i))
		cb.Kind, cb.Raw = wecomhit.KindSuiteTicket, raw
		if err = s.Store(ctxTimeout(t, 5*time.Second), cb); err == nil {
			handle(t, tickets, 1, false)
		}
	}
	require.ErrorIs(t, err, intake.ErrStoreFull, "handled records fill an uncompacted stream")

	_, js2 := natstest.Connect(t, natstest.RunServer(t))
	s2 := mustSetup(t, js2)
	kindConsumer(t, js2, "tickets", wecomhit.KindSuiteTicket)
	storeKind(t, s2, "t-0", wecomhit.KindSuiteTicket, raw)
	n, err := s2.Compact(ctxTimeout(t, 5*time.Second), []string{"tickets"}, 0)
	require.NoError(t, err)
	assert.Zero(t, n)

	_, err = s2.Compact(ctxTimeout(t, 5*time.Second), nil, 0)
	assert.ErrorIs(t, err, intake.ErrInvalidOption)
}

// A durable the caller did not name, on the same records, holds them back
// too: a list that misses a consumer costs no records.
func TestStore_CompactRespectsOtherDurables(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js, intake.WithMaxBytes(1<<20))
	tickets := kindConsumer(t, js, "tickets", wecomhit.KindSuiteTicket)
	other, err := js.CreateOrUpdateConsumer(ctxTimeout(t, 5*time.Second), intake.StreamName, jetstream.ConsumerConfig{
		Durable: "audit", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: []string{prefix + ".callback.*.suite_ticket", prefix + ".callback.*.msgaudit_notify"},
	})
	require.NoError(t, err)
	raw := bigRaw(50 << 10)
	for i := range 12 {
		storeKind(t, s, fmt.Sprintf("t-%d", i), wecomhit.KindSuiteTicket, raw)
	}
	handle(t, tickets, 12, false)
	ctx := ctxTimeout(t, 10*time.Second)
	n, err := s.Compact(ctx, []string{"tickets"}, intake.DefaultCompactAt)
	require.NoError(t, err)
	assert.Zero(t, n, "audit has handled none")

	handle(t, other, 6, false)
	n, err = s.Compact(ctx, []string{"tickets"}, intake.DefaultCompactAt)
	require.NoError(t, err)
	assert.Equal(t, uint64(6), n)
	assert.Equal(t, uint64(7), streamInfo(t, js).State.FirstSeq)
}
