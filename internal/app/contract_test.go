package app_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// requireContract checks every event in the stream against the consumer
// contract (docs/events.md): the schema, the rules the schema cannot
// express, and headers that agree with the payload. It returns how many
// events it checked.
func requireContract(t testing.TB, js jetstream.JetStream) int {
	t.Helper()
	c := hittest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, publish.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	if info.State.Msgs == 0 {
		return 0
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wecom.hit.>"}})
	require.NoError(t, err)
	batch, err := cons.FetchNoWait(int(info.State.Msgs))
	require.NoError(t, err)
	n := 0
	for msg := range batch.Messages() {
		n++
		require.NoError(t, c.Check(msg.Data()), "%s", msg.Data())
		h := msg.Headers()
		var ev wecomhit.HitEvent
		require.NoError(t, json.Unmarshal(msg.Data(), &ev))
		id := publish.MsgID(ev.CorpID, ev.MsgID, ev.RuleID)
		require.Equal(t, id, h.Get(jetstream.MsgIDHeader))
		ceID, err := url.PathUnescape(h.Get(publish.HeaderCEID))
		require.NoError(t, err)
		require.Equal(t, id, ceID)
		require.Equal(t, ev.Source, h.Get(publish.HeaderSource))
		require.Equal(t, strconv.FormatBool(ev.UsedHitToken), h.Get(publish.HeaderUsedHitToken))
		require.Equal(t, publish.CESpecVersion, h.Get(publish.HeaderCESpecVersion))
	}
	require.NoError(t, batch.Error())
	return n
}
