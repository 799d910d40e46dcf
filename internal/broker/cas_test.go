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

func TestUpdateKey(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	ctx := natstest.Context(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "update"})
	require.NoError(t, err)
	appendByte := func(b byte) func(jetstream.KeyValueEntry) ([]byte, error) {
		return func(cur jetstream.KeyValueEntry) ([]byte, error) {
			if cur == nil {
				return []byte{b}, nil
			}
			return append(append([]byte(nil), cur.Value()...), b), nil
		}
	}
	value := func(key string) string {
		t.Helper()
		e, err := kv.Get(ctx, key)
		require.NoError(t, err)
		return string(e.Value())
	}

	t.Run("CreatesThenUpdates", func(t *testing.T) {
		rev, err := broker.UpdateKey(ctx, kv, "k1", 3, appendByte('a'))
		require.NoError(t, err)
		rev2, err := broker.UpdateKey(ctx, kv, "k1", 3, appendByte('b'))
		require.NoError(t, err)
		assert.Greater(t, rev2, rev)
		assert.Equal(t, "ab", value("k1"))
	})

	t.Run("NilLeavesTheKey", func(t *testing.T) {
		rev, err := broker.UpdateKey(ctx, kv, "k2", 3, func(jetstream.KeyValueEntry) ([]byte, error) { return nil, nil })
		require.NoError(t, err)
		assert.Zero(t, rev)
		_, err = kv.Get(ctx, "k2")
		assert.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	})

	t.Run("ChangeError", func(t *testing.T) {
		errStop := errors.New("stop")
		_, err := broker.UpdateKey(ctx, kv, "k1", 3, func(jetstream.KeyValueEntry) ([]byte, error) { return []byte("x"), errStop })
		assert.Same(t, errStop, err, "returned as it is")
		assert.Equal(t, "ab", value("k1"), "nothing written")
	})

	// Another writer between the read and the write: the update is applied
	// again to what that writer stored, and neither write is lost.
	t.Run("ConflictRereads", func(t *testing.T) {
		calls := 0
		_, err := broker.UpdateKey(ctx, kv, "k1", 3, func(cur jetstream.KeyValueEntry) ([]byte, error) {
			calls++
			if calls == 1 {
				_, err := kv.Put(ctx, "k1", append(append([]byte(nil), cur.Value()...), 'x'))
				require.NoError(t, err)
			}
			return appendByte('c')(cur)
		})
		require.NoError(t, err)
		assert.Equal(t, 2, calls)
		assert.Equal(t, "abxc", value("k1"))
	})

	t.Run("ConflictOnCreate", func(t *testing.T) {
		calls := 0
		_, err := broker.UpdateKey(ctx, kv, "k3", 3, func(cur jetstream.KeyValueEntry) ([]byte, error) {
			calls++
			if calls == 1 {
				_, err := kv.Create(ctx, "k3", []byte("other"))
				require.NoError(t, err)
			}
			return appendByte('!')(cur)
		})
		require.NoError(t, err)
		assert.Equal(t, "other!", value("k3"))
	})

	t.Run("ErrCASGaveUp", func(t *testing.T) {
		calls := 0
		_, err := broker.UpdateKey(ctx, kv, "k1", 3, func(cur jetstream.KeyValueEntry) ([]byte, error) {
			calls++
			_, err := kv.Put(ctx, "k1", []byte("moved"))
			require.NoError(t, err)
			return []byte("never"), nil
		})
		assert.ErrorIs(t, err, broker.ErrCASGaveUp)
		assert.Equal(t, 3, calls)
		assert.Equal(t, "moved", value("k1"))
	})
}
