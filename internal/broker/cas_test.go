package broker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestCASConflict(t *testing.T) {
	t.Run("Errors", func(t *testing.T) {
		for _, err := range []error{
			jetstream.ErrKeyExists,
			jetstream.ErrKeyRevisionMismatch,
			fmt.Errorf("wrapped: %w", jetstream.ErrKeyExists),
			&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence},
			// What a replicated bucket answers, unmapped on some nats.go paths.
			&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant},
			fmt.Errorf("put cursor: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}),
		} {
			assert.True(t, broker.CASConflict(err), "%v", err)
		}
		for _, err := range []error{
			nil,
			errors.New("timeout"),
			jetstream.ErrKeyNotFound,
			&jetstream.APIError{Code: 503, ErrorCode: 10008},
		} {
			assert.False(t, broker.CASConflict(err), "%v", err)
		}
	})

	// What a real server answers to each kind of lost race.
	t.Run("Server", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cas"})
		require.NoError(t, err)
		rev, err := kv.Create(ctx, "k", []byte("a"))
		require.NoError(t, err)
		_, err = kv.Update(ctx, "k", []byte("b"), rev)
		require.NoError(t, err)

		_, err = kv.Create(ctx, "k", []byte("c"))
		assert.True(t, broker.CASConflict(err), "create of an existing key: %v", err)
		_, err = kv.Update(ctx, "k", []byte("c"), rev)
		assert.True(t, broker.CASConflict(err), "update at a stale revision: %v", err)
		err = kv.Delete(ctx, "k", jetstream.LastRevision(rev))
		assert.True(t, broker.CASConflict(err), "delete at a stale revision: %v", err)

		_, err = kv.Get(ctx, "missing")
		assert.False(t, broker.CASConflict(err), "get of a missing key: %v", err)
	})
}
