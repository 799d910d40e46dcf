package wecom

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// ticketStore returns a store whose clock reads now.
func ticketStore(t *testing.T, now time.Time) *TicketStore {
	s := mustStores(t).Tickets
	s.now = func() time.Time { return now }
	return s
}

func TestTicketStore_Put(t *testing.T) {
	now := time.Unix(1717000000, 0)
	t.Run("KeepsNewest", func(t *testing.T) {
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		_, err := s.Get(ctx, "suite1")
		require.ErrorIs(t, err, ErrNoSuiteTicket)

		t0 := now.Add(-time.Hour)
		require.NoError(t, s.Put(ctx, "suite1", "T2", t0.Add(10*time.Minute), t0.Add(10*time.Minute)))
		require.NoError(t, s.Put(ctx, "suite1", "T1", t0, t0), "a late redelivery of an older ticket")
		got, err := s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "T2", got)

		require.NoError(t, s.Put(ctx, "suite1", "T3", t0.Add(20*time.Minute), t0.Add(20*time.Minute)))
		got, err = s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "T3", got)

		_, err = s.Get(ctx, "suite2")
		require.ErrorIs(t, err, ErrNoSuiteTicket, "per suite")
	})
	t.Run("FutureStampLoses", func(t *testing.T) {
		// Received first but stamped an hour ahead: the genuine ticket
		// received after it is current, whatever its stamp says.
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		require.NoError(t, s.Put(ctx, "suite1", "FUTURE", now.Add(-time.Minute), now.Add(time.Hour)))
		require.NoError(t, s.Put(ctx, "suite1", "GENUINE", now, now))
		got, err := s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "GENUINE", got)
	})
	t.Run("Clamped", func(t *testing.T) {
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		require.NoError(t, s.Put(ctx, "suite1", "T", now.Add(24*time.Hour), now.Add(48*time.Hour)))
		st, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, now.Add(ticketSkew), st.ReceivedAt)
		assert.Equal(t, now.Add(ticketSkew), st.IssuedAt)
		// A ticket received a minute from now (a replica's clock a little
		// ahead) is still newer than a clamped one stamped far ahead.
		require.NoError(t, s.Put(ctx, "suite1", "NEXT", now.Add(ticketSkew), now.Add(ticketSkew+time.Second)))
		got, err := s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "NEXT", got)
	})
	t.Run("ZeroTimesAreNow", func(t *testing.T) {
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		require.NoError(t, s.Put(ctx, "suite1", "T", time.Time{}, time.Time{}))
		st, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, TicketStatus{Present: true, ReceivedAt: now, IssuedAt: now}, st)
	})
	t.Run("LegacyValue", func(t *testing.T) {
		// A value written before received_at existed still reads, and is
		// ordered by its issued time.
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		_, err := s.kv.Put(ctx, kvKey("suite1"), []byte(`{"ticket":"OLD","issued_at":1716990000}`))
		require.NoError(t, err)
		got, err := s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "OLD", got)
		require.NoError(t, s.Put(ctx, "suite1", "NEW", now, now))
		st, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.True(t, st.HasPrevious)
		assert.Equal(t, now, st.ReceivedAt)
	})
	t.Run("ErrValidation", func(t *testing.T) {
		s := ticketStore(t, now)
		assert.ErrorIs(t, s.Put(natstest.Context(t), "suite1", "", now, now), ErrValidation)
		assert.ErrorIs(t, s.Put(natstest.Context(t), "", "T", now, now), ErrValidation)
		st, err := s.Status(natstest.Context(t), "suite1")
		require.NoError(t, err)
		assert.Equal(t, TicketStatus{}, st, "nothing stored")
	})
}

func TestTicketStore_HandleCallback(t *testing.T) {
	now := time.Unix(1717000000, 0)
	ticket := func(suite, tk string, eventTime int64) *wecomhit.Callback {
		return &wecomhit.Callback{App: "archive", Kind: wecomhit.KindSuiteTicket, SuiteID: suite,
			SuiteTicket: tk, EventTime: eventTime, ReceivedAt: now.Add(-time.Minute)}
	}
	t.Run("OK", func(t *testing.T) {
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		require.NoError(t, s.HandleCallback(ctx, ticket("suite1", "T1", now.Add(-2*time.Minute).Unix())))
		got, err := s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "T1", got)
		st, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, now.Add(-time.Minute), st.ReceivedAt, "received when the callback was stored")
		assert.Equal(t, now.Add(-2*time.Minute), st.IssuedAt, "issued at the body's TimeStamp")
	})
	t.Run("NoTimeStamp", func(t *testing.T) {
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		require.NoError(t, s.HandleCallback(ctx, ticket("suite1", "T1", 0)))
		st, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, now.Add(-time.Minute), st.IssuedAt, "the receipt stands in")
	})
	for name, cb := range map[string]*wecomhit.Callback{
		"ErrNoSuite":  ticket("", "T1", 0),
		"ErrNoTicket": ticket("suite1", "", 0),
		"ErrNotATicket": {App: "archive", Kind: wecomhit.KindHitKeyword, SuiteID: "suite1",
			SuiteTicket: "T1", ReceivedAt: now},
	} {
		t.Run(name, func(t *testing.T) {
			s := ticketStore(t, now)
			ctx := natstest.Context(t)
			err := s.HandleCallback(ctx, cb)
			require.ErrorIs(t, err, ErrValidation)
			assert.NotContains(t, err.Error(), "T1", "the ticket stays out of errors")
			st, err := s.Status(ctx, "suite1")
			require.NoError(t, err)
			assert.Equal(t, TicketStatus{}, st, "nothing stored")
		})
	}
}

func TestTicketStore_Reject(t *testing.T) {
	now := time.Unix(1717000000, 0)
	t.Run("FallsBack", func(t *testing.T) {
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		require.NoError(t, s.Put(ctx, "suite1", "GOOD", now.Add(-10*time.Minute), now.Add(-10*time.Minute)))
		require.NoError(t, s.Put(ctx, "suite1", "BAD", now, now))
		fellBack, err := s.Reject(ctx, "suite1", "BAD")
		require.NoError(t, err)
		assert.True(t, fellBack)
		got, err := s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "GOOD", got)
		st, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, TicketStatus{
			Present: true, ReceivedAt: now.Add(-10 * time.Minute), IssuedAt: now.Add(-10 * time.Minute),
			RejectedAt: now, Rejections: 1,
		}, st)

		// A second replica that got the same 40085 changes nothing more.
		fellBack, err = s.Reject(ctx, "suite1", "BAD")
		require.NoError(t, err)
		assert.True(t, fellBack, "a usable ticket is there")
		st2, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, st, st2)

		// A redelivery of the rejected ticket is not stored again.
		require.NoError(t, s.Put(ctx, "suite1", "BAD", now, now))
		got, err = s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "GOOD", got)

		// Pushed again after the rejection, it is taken.
		require.NoError(t, s.Put(ctx, "suite1", "BAD", now.Add(time.Second), now.Add(time.Second)))
		got, err = s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "BAD", got)
	})
	t.Run("WaitsForPush", func(t *testing.T) {
		s := ticketStore(t, now)
		ctx := natstest.Context(t)
		require.NoError(t, s.Put(ctx, "suite1", "BAD", now, now))
		fellBack, err := s.Reject(ctx, "suite1", "BAD")
		require.NoError(t, err)
		assert.False(t, fellBack)
		_, err = s.Get(ctx, "suite1")
		require.ErrorIs(t, err, ErrNoSuiteTicket)
		assert.NotContains(t, err.Error(), "BAD")
		st, err := s.Status(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, TicketStatus{RejectedAt: now, Rejections: 1}, st)

		// The next push heals it, even if stamped earlier than the bad one.
		require.NoError(t, s.Put(ctx, "suite1", "NEXT", now.Add(time.Second), now.Add(-time.Hour)))
		got, err := s.Get(ctx, "suite1")
		require.NoError(t, err)
		assert.Equal(t, "NEXT", got)
	})
	t.Run("NoneStored", func(t *testing.T) {
		s := ticketStore(t, now)
		fellBack, err := s.Reject(natstest.Context(t), "suite1", "X")
		require.NoError(t, err)
		assert.False(t, fellBack)
		st, err := s.Status(natstest.Context(t), "suite1")
		require.NoError(t, err)
		assert.Equal(t, TicketStatus{}, st)
	})
}
