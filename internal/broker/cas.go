package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// CASConflict reports whether err is a compare-and-set conflict on a KV
// key: the key exists already, or its revision moved since it was read.
// A single server and a replicated stream report these with different
// codes (10071, 10164), and nats.go maps them to ErrKeyExists or
// ErrKeyRevisionMismatch on some paths only (a Create that finds a deleted
// key and retries returns the raw API error), so all four are checked.
//
// It lives here, next to the connection, so that every package keeping
// state in a KV bucket (fetch, wecom, corps) reads a conflict the same way;
// UpdateKey is the update loop built on it.
func CASConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// ErrCASGaveUp: UpdateKey met a conflicting write on every try.
var ErrCASGaveUp = errors.New("broker: compare-and-set: gave up after conflicting writes")

// KeyValueCAS is the part of a KV bucket UpdateKey uses; a
// jetstream.KeyValue is one.
type KeyValueCAS interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// UpdateKey is the one read-modify-write of a KV key: it reads key, asks
// change for the value to store, and writes it only if the key is still as
// read (created if it had no value, updated at the read revision
// otherwise). Another writer in between is a conflict (CASConflict): then
// UpdateKey reads again and asks change again, at most tries times in
// all, after which the error wraps ErrCASGaveUp. change gets the entry read,
// nil if the key has none (or was deleted); it returns the new value, or
// nil to leave the key as it is (UpdateKey then returns 0 and nil). Each
// call of change must start from the entry it gets: an earlier call's
// result is void.
//
// It returns the revision written. An error from change is returned as it
// is; reading or writing errors are wrapped with the key, which must hold
// nothing secret.
func UpdateKey(ctx context.Context, kv KeyValueCAS, key string, tries int, change func(cur jetstream.KeyValueEntry) ([]byte, error)) (uint64, error) {
	for range tries {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			e = nil
		case err != nil:
			return 0, fmt.Errorf("read %s: %w", key, err)
		}
		next, err := change(e)
		if err != nil || next == nil {
			return 0, err
		}
		var rev uint64
		if e == nil {
			rev, err = kv.Create(ctx, key, next)
		} else {
			rev, err = kv.Update(ctx, key, next, e.Revision())
		}
		switch {
		case err == nil:
			return rev, nil
		case !CASConflict(err):
			return 0, fmt.Errorf("write %s: %w", key, err)
		}
	}
	return 0, fmt.Errorf("%w: %s: %d tries", ErrCASGaveUp, key, tries)
}
