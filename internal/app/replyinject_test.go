package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// TestNATSRoles_ConsumerReplySubjects: a JetStream API request's reply
// subject is not checked against the requester's permissions (nats-server
// refuses only $JS. replies), and the server publishes the answer inside
// the requester's account. Were that the receiver's, its streams and
// buckets would store whatever reaches their subjects. A consumer-role
// client must not be able to use that to add callback records or
// overwrite KV entries: its account is its own (app.ConsumerAccount).
func TestNATSRoles_ConsumerReplySubjects(t *testing.T) {
	s := startSystem(t, "0s")
	_, err := s.sim.GenerateMessages(simCorp, 20)
	require.NoError(t, err)
	natstest.WaitFor(t, 20*time.Second, func() error {
		if hitsIn(t, s) == 0 {
			return fmt.Errorf("no hits yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	seed, err := os.ReadFile(broker.SeedFile(s.m.Cfg().NATS.RolesDir(), app.RoleConsumer))
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "consumer.nk")
	require.NoError(t, os.WriteFile(file, seed, 0o600))
	c := dialRole(t, s, file)

	rjs := s.m.Broker().JetStream()
	callbacks, err := rjs.Stream(ctx, intake.StreamName)
	require.NoError(t, err)
	before, err := callbacks.Info(ctx)
	require.NoError(t, err)
	cursors, err := rjs.KeyValue(ctx, fetch.CursorBucket)
	require.NoError(t, err)
	cursorKey := "archive." + simCorp
	// The cursor is saved once the page's hits are published.
	natstest.WaitFor(t, 20*time.Second, func() error {
		_, err := cursors.Get(ctx, cursorKey)
		return err
	})

	targets := []string{
		"wecom.callback.archive.hit_keyword",          // a forged callback record
		"$KV." + fetch.CursorBucket + "." + cursorKey, // a reset cursor: every hit fetched again
		"$KV." + wecom.TokenBucket + ".forged",
	}
	// The stream info request the consumer role may send (its API is under
	// app.ConsumerAPIPrefix), and the receiver's own API subject, which a
	// consumer's account does not reach.
	for _, subj := range []string{app.ConsumerAPIPrefix + ".STREAM.INFO." + publish.StreamName, "$JS.API.STREAM.INFO." + publish.StreamName} {
		for _, reply := range targets {
			require.NoError(t, c.nc.PublishRequest(subj, reply, nil))
		}
	}
	// A request the server answers after the others: once it is answered,
	// so are they.
	_, err = c.nc.RequestWithContext(ctx, app.ConsumerAPIPrefix+".STREAM.INFO."+publish.StreamName, nil)
	require.NoError(t, err)

	// The receiver itself may have moved on meanwhile; what must not be
	// stored anywhere is the server's answer.
	const answer = "io.nats.jetstream.api.v1.stream_info_response"
	after, err := callbacks.Info(ctx)
	require.NoError(t, err)
	for seq := before.State.LastSeq + 1; seq <= after.State.LastSeq; seq++ {
		m, err := callbacks.GetMsg(ctx, seq)
		require.NoError(t, err)
		assert.NotContains(t, string(m.Data), answer, "record %d of %s", seq, intake.StreamName)
	}
	now, err := cursors.Get(ctx, cursorKey)
	require.NoError(t, err)
	assert.NotContains(t, string(now.Value()), answer, "the cursor")
	tokens, err := rjs.KeyValue(ctx, wecom.TokenBucket)
	require.NoError(t, err)
	_, err = tokens.Get(ctx, "forged")
	assert.Error(t, err, "no token entry written")
}
