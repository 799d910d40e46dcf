package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/fetch"
)

// TestBackfillProgress: on a terminal a bar with pages, events, rate and
// an ETA; elsewhere a line per page.
func TestBackfillProgress(t *testing.T) {
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	since := now.Add(-10 * time.Hour)
	clock := now
	tick := func() time.Time { return clock }

	var lines strings.Builder
	p := newBackfillProgressTo(&lines, false, since, now, tick)
	p.page(fetch.Progress{Pages: 1, Messages: 100, Published: 40, Skipped: 2, LastSent: since.Add(time.Hour).Unix()})
	p.done()
	assert.Equal(t, "page 1: 100 messages read, 40 events published, 2 already stored, up to 2026-11-20T23:00:00Z\n", lines.String())

	var bar strings.Builder
	p = newBackfillProgressTo(&bar, true, since, now, tick)
	clock = clock.Add(2 * time.Second)
	p.page(fetch.Progress{Pages: 3, Messages: 300, Published: 100, Skipped: 20, LastSent: since.Add(5 * time.Hour).Unix()})
	// The bar throttles its drawing; Finish draws the last state.
	p.done()
	out := bar.String()
	assert.Contains(t, out, "3 pages, 120 events (100 new), 60 events/s")
	assert.Contains(t, out, "100%", "done fills the bar")
	assert.Contains(t, out, "\r", "a bar redraws its line")
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
	got, err := parseSince("6h", now)
	require.NoError(t, err)
	require.Equal(t, now.Add(-6*time.Hour), got)
	got, err = parseSince("2026-11-20T08:00:00+08:00", now)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), got.UTC())
	for _, bad := range []string{"", "-1h", "yesterday", "2027-01-01T00:00:00Z"} {
		_, err := parseSince(bad, now)
		require.Error(t, err, bad)
	}
}
