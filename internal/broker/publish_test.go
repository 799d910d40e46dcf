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
	// deadline and the message is stored once; so does PublishAwait.
	for name, publish := range map[string]func(context.Context, jetstream.Publisher, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error){
		"Retry": broker.PublishRetry, "Await": broker.PublishAwait,
	} {
		t.Run("StreamAppearsLate/"+name, func(t *testing.T) {
			_, js := natstest.Connect(t, natstest.RunServer(t))
			created := make(chan error, 1)
			go func() {
				time.Sleep(500 * time.Millisecond)
				_, err := js.CreateStream(natstest.Context(t), streamCfg)
				created <- err
			}()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			ack, err := publish(ctx, js, msg("late-1"), jetstream.WithExpectStream("RETRY"))
			require.NoError(t, err)
			require.NoError(t, <-created)
			assert.Equal(t, "RETRY", ack.Stream)
			s, err := js.Stream(natstest.Context(t), "RETRY")
			require.NoError(t, err)
			assert.Equal(t, uint64(1), s.CachedInfo().State.Msgs)
		})
	}

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

// TestPublishAwait: where an answer is later than half the time left,
// PublishRetry sends again (an attempt gets half the time left, at least
// 750ms), and PublishAwait waits for it: one publish, so one record of a
// message without a Nats-Msg-Id.
func TestPublishAwait(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	_, err := js.CreateStream(natstest.Context(t), jetstream.StreamConfig{Name: "AWAIT", Subjects: []string{"await.>"}})
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		publish func(context.Context, jetstream.Publisher, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error)
		calls   int32
	}{
		{"Await", broker.PublishAwait, 1},
		{"Retry", broker.PublishRetry, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &natstest.SlowPublishes{JetStream: js, Delay: 1500 * time.Millisecond}
			ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
			defer cancel()
			_, err := tc.publish(ctx, p, &nats.Msg{Subject: "await." + tc.name, Data: []byte("x")})
			if tc.calls == 1 {
				require.NoError(t, err)
				assert.Equal(t, int32(1), p.Calls.Load())
				return
			}
			// Each attempt gave up before the late answer: 1.25 s, then
			// the 750 ms least, then what was left.
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.GreaterOrEqual(t, p.Calls.Load(), tc.calls)
		})
	}
}
