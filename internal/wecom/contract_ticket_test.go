package wecom_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// TestContract_SuiteTicketHeals runs get_suite_token against the
// simulator, which answers 40085 for a ticket it did not issue, with
// tickets stored as the receiver stores them.
func TestContract_SuiteTicketHeals(t *testing.T) {
	archive := transportCase{name: "Archive"}
	// setup returns stores without a ticket and a client on them, logging
	// into log.
	setup := func(t *testing.T, e *env) (*wecom.Stores, *wecom.Client, *bytes.Buffer) {
		t.Helper()
		_, js := natstest.Connect(t, e.nats)
		stores, err := wecom.OpenStores(natstest.Context(t), js, wecom.StoreConfig{})
		require.NoError(t, err)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		var log bytes.Buffer
		c, err := wecom.New(e.app(), stores, append(fastOptions(),
			wecom.WithHTTPClient(&http.Client{Transport: tr}),
			wecom.WithLogger(zerolog.New(&log)))...)
		require.NoError(t, err)
		return stores, c, &log
	}
	const forged = "FORGED-TICKET-NEVER-ISSUED"

	t.Run("FutureStampedThenGenuine", func(t *testing.T) {
		e := newEnv(t, archive)
		stores, c, _ := setup(t, e)
		ctx := natstest.Context(t)
		now := time.Now()
		// Stamped a day ahead (a fast simulator, a skewed clock, a forged
		// record), received a minute before WeCom's genuine push.
		require.NoError(t, stores.Tickets.Put(ctx, ctSuiteID, forged, now.Add(-time.Minute), now.Add(24*time.Hour)))
		require.NoError(t, stores.Tickets.Put(ctx, ctSuiteID, e.sim.SuiteTicket(), now, e.sim.Now()))

		before := e.requests()
		_, err := collect(c.ListRules(ctx, e.corp, 0))
		require.NoError(t, err)
		assert.Equal(t, 1, e.requests()["get_suite_token"]-before["get_suite_token"], "the genuine ticket, first time")
	})

	t.Run("RejectedFallsBackToPrevious", func(t *testing.T) {
		e := newEnv(t, archive)
		stores, c, log := setup(t, e)
		ctx := natstest.Context(t)
		now := time.Now()
		require.NoError(t, stores.Tickets.Put(ctx, ctSuiteID, e.sim.SuiteTicket(), now.Add(-time.Minute), e.sim.Now()))
		require.NoError(t, stores.Tickets.Put(ctx, ctSuiteID, forged, now, now))

		before := e.requests()
		_, err := collect(c.ListRules(ctx, e.corp, 0))
		require.NoError(t, err)
		assert.Equal(t, 2, e.requests()["get_suite_token"]-before["get_suite_token"], "rejected, then the previous ticket")

		st, err := stores.Tickets.Status(ctx, ctSuiteID)
		require.NoError(t, err)
		assert.True(t, st.Present)
		assert.False(t, st.HasPrevious, "the previous ticket is now current")
		assert.Equal(t, 1, st.Rejections)
		assert.False(t, st.RejectedAt.IsZero())
		got, err := stores.Tickets.Get(ctx, ctSuiteID)
		require.NoError(t, err)
		assert.Equal(t, e.sim.SuiteTicket(), got)

		assert.Contains(t, log.String(), "falling back to the previous ticket")
		assert.Contains(t, log.String(), `"level":"warn"`)
		assert.NotContains(t, log.String(), forged)
		assert.NotContains(t, log.String(), e.sim.SuiteTicket())
	})

	t.Run("RejectedWaitsForNextPush", func(t *testing.T) {
		e := newEnv(t, archive)
		stores, c, log := setup(t, e)
		ctx := natstest.Context(t)
		received := time.Now()
		require.NoError(t, stores.Tickets.Put(ctx, ctSuiteID, forged, received, received))

		before := e.requests()
		_, err := collect(c.ListRules(ctx, e.corp, 0))
		require.ErrorIs(t, err, wecom.ErrSuiteTicketInvalid)
		assert.NotContains(t, err.Error(), forged)
		assert.Contains(t, log.String(), "waiting for WeCom's next push")

		// Until the next push, no call goes out with the dropped ticket.
		_, err = collect(c.ListRules(ctx, e.corp, 0))
		require.ErrorIs(t, err, wecom.ErrNoSuiteTicket)
		assert.Equal(t, 1, e.requests()["get_suite_token"]-before["get_suite_token"])
		st, err := stores.Tickets.Status(ctx, ctSuiteID)
		require.NoError(t, err)
		assert.False(t, st.Present)
		assert.Equal(t, 1, st.Rejections)

		// A redelivery of the rejected callback (the same record, so the
		// same receipt time) does not bring it back; the next genuine push
		// heals the suite.
		require.NoError(t, stores.Tickets.Put(ctx, ctSuiteID, forged, received, received))
		_, err = collect(c.ListRules(ctx, e.corp, 0))
		require.ErrorIs(t, err, wecom.ErrNoSuiteTicket)
		require.NoError(t, stores.Tickets.Put(ctx, ctSuiteID, e.sim.SuiteTicket(), time.Now(), e.sim.Now()))
		_, err = collect(c.ListRules(ctx, e.corp, 0))
		require.NoError(t, err)
	})
}
