package fetch_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// TestFetch_Backfill re-reads from a time: it adds only what is missing,
// marks it "backfill", and leaves the fetch cursor alone.
func TestFetch_Backfill(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	pub := e.publisher()
	r := e.startReceiver(pub, fetch.WithPageSize(200))
	since := e.sim.Now().Add(-time.Minute)

	_, err := e.sim.GenerateMessages(corpID, 800)
	require.NoError(t, err)
	e.callback(r, 1)
	first, _ := e.events()
	cur, err := r.f.Cursor(natstest.Context(t), appName, corpID)
	require.NoError(t, err)

	// Hits whose callbacks were lost and which no poll has fetched yet.
	_, err = e.sim.GenerateMessages(corpID, 400)
	require.NoError(t, err)

	var reports []fetch.Progress
	p, err := r.f.Backfill(natstest.Context(t), appName, corpID, since, pub, func(p fetch.Progress) { reports = append(reports, p) })
	require.NoError(t, err)
	assert.True(t, p.Done)
	assert.Equal(t, len(first), p.Skipped, "what the stream held is skipped")
	assert.Equal(t, len(e.truth())-len(first), p.Published)
	require.NotEmpty(t, reports)
	assert.True(t, reports[len(reports)-1].Done)
	n := e.requireExactlyTruth()
	assert.Greater(t, n, len(first))

	got, _ := e.events()
	for k, ev := range got {
		if _, old := first[k]; old {
			assert.Equal(t, wecomhit.SourceCallback, ev.Source)
		} else {
			assert.Equal(t, wecomhit.SourceBackfill, ev.Source)
			assert.False(t, ev.UsedHitToken, "backfill never has a token")
		}
	}
	after, err := r.f.Cursor(natstest.Context(t), appName, corpID)
	require.NoError(t, err)
	assert.Equal(t, cur, after, "backfill does not move the fetch cursor")

	// Running it again publishes nothing.
	p, err = r.f.Backfill(natstest.Context(t), appName, corpID, since, pub, nil)
	require.NoError(t, err)
	assert.Zero(t, p.Published)
	e.requireExactlyTruth()
}

// TestFetch_BackfillBadInput: an app or corp the fetcher does not serve is
// refused before WeCom is asked or anything is published.
func TestFetch_BackfillBadInput(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r := e.startReceiver(nil)
	_, err := e.sim.GenerateMessages(corpID, 10)
	require.NoError(t, err)
	since := e.sim.Now().Add(-time.Hour)
	for _, tc := range []struct{ name, app, corp string }{
		{"ErrUnknownApp", "other", corpID},
		{"ErrUnknownCorp", appName, "wwNotOurs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.f.Backfill(natstest.Context(t), tc.app, tc.corp, since, r.pub.inner.(fetch.Existing), nil)
			require.Error(t, err)
		})
	}
	assert.Zero(t, e.sim.Requests("get_hit_msg_list"))
	got, _ := e.events()
	assert.Empty(t, got)
}
