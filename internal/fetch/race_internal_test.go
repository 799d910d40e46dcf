package fetch

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestStart_CallbackJoinsPollBeforeItStarts (review R5): step reads its
// ticket's source (a poll) under mu, then start checks the lease without
// it. A callback that joins the ticket in between turns it into a
// callback's ticket, yet start goes on as a poll: it finds another
// replica's lease, takes the ticket, and finish ends it with nil. The
// callback's Handle then returns nil, so its record is acked, although no
// fetch began after it arrived (the other replica's may have been on its
// last page): its hits wait for the next poll. Expected: the ticket keeps
// waiting for the lease, as a callback's does, or ends with an error so
// that the record is retried.
func TestStart_CallbackJoinsPollBeforeItStarts(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	f, err := New(js, []App{{Name: "a", API: noLister{}, Corps: []string{"c1"}}}, noLister{})
	require.NoError(t, err)
	ctx := natstest.Context(t)
	require.NoError(t, f.Setup(ctx))
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	f.mu.Lock()
	f.ctx = runCtx // as Run does; no worker runs
	c := f.corpLocked("a", "c1")
	polled := c.trigger(wecomhit.SourcePoll) // the poller's ticket
	source := polled.source                  // what step read under mu
	f.mu.Unlock()

	// Another replica is fetching c1.
	_, err = f.leases.Create(ctx, c.key, []byte("another replica"))
	require.NoError(t, err)

	// A callback arrives now, after step read the source, before start
	// takes the ticket: it joins it (Handle stored its token first).
	f.mu.Lock()
	tk, first := c.join()
	f.mu.Unlock()
	require.True(t, first)
	require.Same(t, polled, tk)

	out, err := f.start(ctx, c, tk, source)
	if out == stepDone {
		f.finish(ctx, c, tk, err) // as step does
	}
	select {
	case <-tk.done:
		assert.Error(t, tk.err, "the callback was told its fetch is done, but no fetch began after it")
	default:
		// Still c's next ticket, waiting for the lease: right.
	}
}
