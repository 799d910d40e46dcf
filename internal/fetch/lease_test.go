package fetch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// takeoverBound is how soon after a lease holder's last renewal another
// replica fetches, with the default lease_ttl, as README and docs/deploy.md
// promise: the TTL (10 s), the server's expiry check, and the waiting
// replica's next try (at most half a second apart), with room for a loaded
// machine.
const takeoverBound = 12 * time.Second

// TestFetch_DeadHolderTakenOver: a replica holding an (app, corp)'s lease
// dies mid-fetch (kill -9: no release, no more renewals; here its last
// renewal is written by hand). A callback's fetch on another replica waits
// for the lease, never fetching alongside, and takes over within
// takeoverBound of the dead holder's last renewal. With the former 30 s
// TTL it waited 30 s.
func TestFetch_DeadHolderTakenOver(t *testing.T) {
	e := newEnv(t, wecomsim.Options{})
	r := e.startReceiver(nil, fetch.WithPageSize(100))
	_, err := e.sim.GenerateMessages(corpID, 150)
	require.NoError(t, err)

	kv, err := e.js.KeyValue(natstest.Context(t), fetch.LeaseBucket)
	require.NoError(t, err)
	_, err = kv.Create(natstest.Context(t), appName+"."+corpID, []byte("a-replica-killed-mid-fetch"))
	require.NoError(t, err)
	died := time.Now()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), takeoverBound+10*time.Second)
		defer cancel()
		tok, err := e.sim.IssueHitToken(corpID)
		if err != nil {
			done <- err
			return
		}
		done <- r.f.Handle(ctx, &wecomhit.Callback{ID: tok, App: appName, Kind: wecomhit.KindHitKeyword,
			CorpID: corpID, SuiteID: suiteID, Token: tok, ReceivedAt: time.Now()})
	}()
	natstest.WaitFor(t, takeoverBound, func() error {
		if e.sim.Requests("get_hit_msg_list") == 0 {
			return errors.New("no replica has fetched since the holder died")
		}
		return nil
	})
	took := time.Since(died)
	t.Logf("another replica fetched %s after the holder's last renewal", took.Round(10*time.Millisecond))
	assert.GreaterOrEqual(t, took, fetch.DefaultLeaseTTL-time.Second, "fetched while the dead holder's lease was live")
	require.NoError(t, <-done)
	e.requireExactlyTruth()
}
