package natstest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SlowPublishes is a real JetStream whose PublishMsg reaches the server
// only after Delay (or fails with its ctx's error if ctx ends first): a
// server whose answers are late, for tests of what a publisher does while
// it waits. Everything else, and the publish itself, is the server's own.
type SlowPublishes struct {
	jetstream.JetStream
	Delay time.Duration
	// Calls counts PublishMsg calls.
	Calls atomic.Int32
}

// PublishMsg waits Delay, then publishes m.
func (s *SlowPublishes) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	s.Calls.Add(1)
	t := time.NewTimer(s.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.JetStream.PublishMsg(ctx, m, opts...)
}
