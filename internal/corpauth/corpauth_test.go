package corpauth_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/corpauth"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// announcements records the lifecycle events a Handler publishes.
type announcements struct {
	mu  sync.Mutex
	evs []wecomhit.CorpLifecycleEvent
}

func (a *announcements) PublishCorp(_ context.Context, ev wecomhit.CorpLifecycleEvent, _ time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evs = append(a.evs, ev)
	return nil
}

// TestAnnounce_ErasesAfterOwnCancel: the replica that handled a
// cancel_auth erases the corp's data again when its own registry watch
// sees the cancellation. The handler's erase can run before that watch has
// stopped this replica's fetches (the watch lags the write), and a fetch
// that ran in between writes the corp's events, cursor and lease again;
// only the erase after the watch's stop is sure to come after all of them.
func TestAnnounce_ErasesAfterOwnCancel(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.RunServer(t, natstest.WithStoreDir(t.TempDir())))
	keys, err := corps.NewKeyring(map[string][]byte{"k1": bytes.Repeat([]byte{1}, corps.KeySize)}, "k1")
	require.NoError(t, err)
	reg, err := corps.Open(ctx, js, keys)
	require.NoError(t, err)
	const app, corp = "archive", "wwCorpA"
	_, err = reg.Seed(ctx, app, []corps.Seed{{CorpID: corp, PermanentCode: "PERMANENT-CODE-A"}})
	require.NoError(t, err)

	var mu sync.Mutex
	erased := 0
	ann := &announcements{}
	h, err := corpauth.New(reg, map[string]corpauth.Suite{}, ann, []corpauth.Eraser{{
		Data: []string{wecomhit.CorpDataHitEvents},
		Erase: func(_ context.Context, a, c string) error {
			mu.Lock()
			defer mu.Unlock()
			if a == app && c == corp {
				erased++
			}
			return nil
		},
	}})
	require.NoError(t, err)

	at := time.Unix(1717000000, 0).UTC()
	require.NoError(t, h.Cancel(ctx, app, corp, at, corps.CauseCancelAuth))
	c, err := reg.Get(ctx, app, corp)
	require.NoError(t, err)
	require.Equal(t, corps.Cancelled, c.State)
	mu.Lock()
	require.Equal(t, 1, erased)
	mu.Unlock()

	// This replica's watch delivers the change after its fetches stopped.
	require.NoError(t, h.Announce(ctx, corps.Change{Corp: c}))
	mu.Lock()
	assert.Equal(t, 2, erased, "erased again after this replica's own stop")
	mu.Unlock()
	ann.mu.Lock()
	defer ann.mu.Unlock()
	require.Len(t, ann.evs, 2, "the event again, with the same id (JetStream de-duplicates it)")
	assert.Equal(t, wecomhit.CorpCancelled, ann.evs[1].Type)
}
