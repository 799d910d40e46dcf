package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
)

// State is what the KV buckets say about one (app, corp), for status
// reports: read from NATS, so it describes every replica, not just this one.
type State struct {
	Cursor wecomhit.Cursor
	// HitTokenExpires is when the newest stored hit token (or notify id)
	// stops being used; zero when there is none.
	HitTokenExpires time.Time
	// Fetching is true while a replica holds the (app, corp)'s lease.
	Fetching bool
	// Health is how its fetches have been going (health.go).
	Health Health
}

// ReadState reads an (app, corp)'s cursor, newest hit token, lease and
// health. It needs no running Fetcher; a bucket that does not exist yet
// reads as empty.
func ReadState(ctx context.Context, js jetstream.KeyValueManager, app, corp string) (State, error) {
	st := State{Cursor: wecomhit.Cursor{App: app, CorpID: corp}}
	k := key(app, corp)
	get := func(bucket string) ([]byte, bool, error) {
		kv, err := js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("fetch: bucket %s: %w", bucket, err)
		}
		e, err := kv.Get(ctx, k)
		if kvNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("fetch: %s %s: %w", bucket, k, err)
		}
		return e.Value(), true, nil
	}
	if v, ok, err := get(CursorBucket); err != nil {
		return st, err
	} else if ok {
		if err := json.Unmarshal(v, &st.Cursor); err != nil {
			return st, fmt.Errorf("fetch: decode cursor: %w", err)
		}
	}
	if v, ok, err := get(TokenBucket); err != nil {
		return st, err
	} else if ok {
		var t hitToken
		if json.Unmarshal(v, &t) == nil {
			st.HitTokenExpires = t.ExpiresAt
		}
	}
	if v, ok, err := get(HealthBucket); err != nil {
		return st, err
	} else if ok {
		if err := json.Unmarshal(v, &st.Health); err != nil {
			return st, fmt.Errorf("fetch: decode health: %w", err)
		}
	}
	_, held, err := get(LeaseBucket)
	if err != nil {
		return st, err
	}
	st.Fetching = held
	return st, nil
}
