package cli

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
	"github.com/wecomhit/wecomhit/internal/testlog"
)

// TestHitReader_Print: the stream's events in order, a line each (or their
// JSON), something that is no event named, the limit kept; and Print
// returns when its context ends.
func TestHitReader_Print(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx := t.Context()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: publish.StreamName, Subjects: []string{"wecom.hit.>"}})
	require.NoError(t, err)
	ev := wecomhit.HitEvent{CorpID: "wwCorp", RuleID: "r1", RuleName: "敏感词", FetchedAt: time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)}
	data, err := json.Marshal(ev)
	require.NoError(t, err)
	for _, d := range [][]byte{data, []byte("not json"), data} {
		_, err := js.Publish(ctx, "wecom.hit.wwCorp.r1", d)
		require.NoError(t, err)
	}
	all := jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wecom.hit.>"}}

	r, err := ReadHits(ctx, js, all)
	require.NoError(t, err)
	var out strings.Builder
	n, err := r.Print(ctx, &out, Table, time.UTC, 3)
	r.Stop()
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, "2026-11-21 08:00:00  wwCorp  敏感词", lines[0])
	assert.Contains(t, lines[1], "(not a hit event on wecom.hit.wwCorp.r1")
	assert.Equal(t, lines[0], lines[2])

	r, err = ReadHits(ctx, js, all)
	require.NoError(t, err)
	out.Reset()
	n, err = r.Print(ctx, &out, JSON, time.UTC, 1)
	r.Stop()
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.JSONEq(t, string(data), out.String())

	// No limit: Print runs until its context ends, then returns what it
	// printed, without an error.
	r, err = ReadHits(ctx, js, all)
	require.NoError(t, err)
	var live testlog.Buffer
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		n, err := r.Print(pctx, &live, JSON, time.UTC, 0)
		assert.NoError(t, err)
		done <- n
	}()
	natstest.WaitFor(t, 10*time.Second, func() error {
		if strings.Count(live.String(), "\n") < 3 {
			return assert.AnError
		}
		return nil
	})
	cancel()
	assert.Equal(t, 3, <-done)
}

func TestReadHits_NoStream(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	_, err := ReadHits(t.Context(), js, jetstream.OrderedConsumerConfig{})
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	assert.Contains(t, err.Error(), "is the receiver running?")
}
