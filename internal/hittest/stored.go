package hittest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// Stored reads every hit event WECOM_HITS holds (subjects wecom.hit.>),
// counting each Nats-Msg-Id's repeats (a test of exactly-once wants
// each to be 1), and returns the events by that id.
func Stored(tb testing.TB, js jetstream.StreamManager) (counts map[string]int, events map[string]wecomhit.HitEvent) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counts, events = map[string]int{}, map[string]wecomhit.HitEvent{}
	s, err := js.Stream(ctx, publish.StreamName)
	require.NoError(tb, err)
	info, err := s.Info(ctx)
	require.NoError(tb, err)
	if info.State.Msgs == 0 {
		return counts, events
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wecom.hit.>"}})
	require.NoError(tb, err)
	batch, err := cons.FetchNoWait(int(info.State.Msgs))
	require.NoError(tb, err)
	for msg := range batch.Messages() {
		id := msg.Headers().Get(jetstream.MsgIDHeader)
		counts[id]++
		var ev wecomhit.HitEvent
		require.NoError(tb, json.Unmarshal(msg.Data(), &ev))
		events[id] = ev
	}
	require.NoError(tb, batch.Error())
	return counts, events
}
