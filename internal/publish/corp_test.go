package publish_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// readAll reads every message of stream through an ordered consumer
// without a subject filter, as a consumer that filters nothing would.
func readAll(t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	var out []jetstream.Msg
	for range info.State.Msgs {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

// TestPublisher_CorpEvents: lifecycle events go to WECOM_CORP_EVENTS, once
// each however often they are published, and a consumer of WECOM_HITS
// without a filter sees hit events only (issue 13).
func TestPublisher_CorpEvents(t *testing.T) {
	_, js, p := setup(t)
	ctx := context.Background()
	require.NoError(t, p.SetupCorp(ctx))
	require.NoError(t, p.SetupCorp(ctx), "idempotent")
	o := publish.Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	at := time.Unix(1764216000, 0)
	authorized := wecomhit.CorpLifecycleEvent{Type: wecomhit.CorpAuthorized, App: "archive", CorpID: "wwCorp", CorpName: "Acme", Cause: "create_auth"}
	require.NoError(t, p.PublishCorp(ctx, authorized, at))
	res, err := p.Publish(ctx, hitPage(o, page()))
	require.NoError(t, err)
	require.Equal(t, 4, res.Published)
	cancelled := wecomhit.CorpLifecycleEvent{Type: wecomhit.CorpCancelled, App: "archive", CorpID: "wwCorp",
		Cause: "cancel_auth", Deleted: []string{wecomhit.CorpDataHitEvents}}
	for range 2 { // every replica announces it
		require.NoError(t, p.PublishCorp(ctx, cancelled, at.Add(time.Hour)))
	}

	hits := readAll(t, js, publish.StreamName)
	require.Len(t, hits, 4)
	for _, m := range hits {
		assert.True(t, strings.HasPrefix(m.Subject(), "wecom.hit.wwCorp."), m.Subject())
		assert.Equal(t, wecomhit.HitSchema, m.Headers().Get(publish.HeaderSchema))
	}
	corp := readAll(t, js, publish.CorpStreamName)
	require.Len(t, corp, 2, "each event once")
	var types []string
	for _, m := range corp {
		var ev wecomhit.CorpLifecycleEvent
		require.NoError(t, json.Unmarshal(m.Data(), &ev))
		assert.Equal(t, publish.CorpSubject(prefix, "wwCorp", ev.Type), m.Subject())
		assert.Equal(t, wecomhit.CorpEventSchema, m.Headers().Get(publish.HeaderSchema))
		types = append(types, ev.Type)
	}
	assert.Equal(t, []string{wecomhit.CorpAuthorized, wecomhit.CorpCancelled}, types)

	// Purging the corp's hits leaves its lifecycle events.
	require.NoError(t, p.PurgeCorp(ctx, "wwCorp"))
	assert.Empty(t, readAll(t, js, publish.StreamName))
	assert.Len(t, readAll(t, js, publish.CorpStreamName), 2)

	// Another corp, authorized and never cancelled.
	other := authorized
	other.CorpID, other.CorpName = "wwOther", "Other Co"
	require.NoError(t, p.PublishCorp(ctx, other, at))

	// Purging the authorized events (after the cancelled one, twice as
	// replicas do) leaves the cancelled event once and nothing that
	// names the cancelled corp; the other corp's event stays.
	for range 2 {
		require.NoError(t, p.PurgeCorpAuthorized(ctx, "wwCorp"))
	}
	require.NoError(t, p.PurgeCorpAuthorized(ctx, "wwOther"), "no cancelled event: nothing to purge")
	assertCorpEvents := func(want ...string) {
		t.Helper()
		var got []string
		for _, m := range readAll(t, js, publish.CorpStreamName) {
			assert.NotContains(t, string(m.Data()), "Acme", m.Subject())
			got = append(got, m.Subject())
		}
		assert.Equal(t, want, got)
	}
	cancelledSubj := publish.CorpSubject(prefix, "wwCorp", wecomhit.CorpCancelled)
	otherSubj := publish.CorpSubject(prefix, "wwOther", wecomhit.CorpAuthorized)
	assertCorpEvents(cancelledSubj, otherSubj)

	// A replica announcing the old authorization late is de-duplicated:
	// the purge leaves the server's record of its id.
	require.NoError(t, p.PublishCorp(ctx, authorized, at))
	assertCorpEvents(cancelledSubj, otherSubj)

	// Authorized again after the cancellation: a late purge spares it.
	again := authorized
	again.CorpName = "Acme Again"
	require.NoError(t, p.PublishCorp(ctx, again, at.Add(2*time.Hour)))
	require.NoError(t, p.PurgeCorpAuthorized(ctx, "wwCorp"))
	evs := readAll(t, js, publish.CorpStreamName)
	require.Len(t, evs, 3)
	assert.Equal(t, publish.CorpSubject(prefix, "wwCorp", wecomhit.CorpAuthorized), evs[2].Subject())
	assert.Contains(t, string(evs[2].Data()), "Acme Again")
	assert.Error(t, p.PurgeCorpAuthorized(ctx, ""))

	s, err := js.Stream(ctx, publish.CorpStreamName)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	assert.Equal(t, []string{prefix + ".corp.>"}, cfg.Subjects)
	assert.Equal(t, jetstream.FileStorage, cfg.Storage)
	assert.Equal(t, jetstream.DiscardNew, cfg.Discard)
	assert.Equal(t, publish.DefaultCorpMaxAge, cfg.MaxAge)
	assert.Equal(t, int64(publish.DefaultCorpMaxBytes), cfg.MaxBytes)
	assert.Equal(t, publish.DefaultCorpDuplicateWindow, cfg.Duplicates)
}

// TestPublisher_CorpOptions: bad corp stream options fail SetupCorp and
// create nothing.
func TestPublisher_CorpOptions(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	for name, opt := range map[string]publish.Option{
		"ErrNegativeMaxBytes": publish.WithCorpMaxBytes(-1),
		"ErrShortMaxAge":      publish.WithCorpMaxAge(time.Hour),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := publish.New(js, prefix, opt)
			require.ErrorIs(t, err, publish.ErrInvalidOption)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = js.Stream(ctx, publish.CorpStreamName)
			require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		})
	}
}
