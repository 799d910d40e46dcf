package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestPublishRetry(t *testing.T) {
	streamCfg := jetstream.StreamConfig{Name: "RETRY", Subjects: []string{"retry.>"}, Duplicates: time.Minute}
	msg := func(id string) *nats.Msg {
		m := nats.NewMsg("retry.x")
		m.Data = []byte(id)
		m.Header.Set(jetstream.MsgIDHeader, id)
		return m
	}

	// The stream cannot answer at first (here it does not exist yet, as
	// while its leader is elected): PublishRetry keeps trying within its
	// deadline and the message is stored once.
	t.Run("StreamAppearsLate", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		created := make(chan error, 1)
		go func() {
			time.Sleep(500 * time.Millisecond)
			_, err := js.CreateStream(natstest.Context(t), streamCfg)
			created <- err
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		ack, err := broker.PublishRetry(ctx, js, msg("late-1"), jetstream.WithExpectStream("RETRY"))
		require.NoError(t, err)
		require.NoError(t, <-created)
		assert.Equal(t, "RETRY", ack.Stream)
		s, err := js.Stream(natstest.Context(t), "RETRY")
		require.NoError(t, err)
		assert.Equal(t, uint64(1), s.CachedInfo().State.Msgs)
	})

	t.Run("ErrNoStreamAtDeadline", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := broker.PublishRetry(ctx, js, msg("none-1"))
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, jetstream.ErrNoStreamResponse, "the last real error is kept")
	})

	// A refusal that retrying cannot change is returned at once.
	t.Run("ErrPermanent", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		_, err := js.CreateStream(natstest.Context(t), streamCfg)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err = broker.PublishRetry(ctx, js, msg("wrong-1"), jetstream.WithExpectStream("OTHER"))
		var apiErr *jetstream.APIError
		require.ErrorAs(t, err, &apiErr)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.NoError(t, ctx.Err(), "returned before the deadline")
	})
}
