package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// TestCallbackRoom_FailedReading: a storage reading that fails (a timeout
// on a busy machine) does not fail readiness while a good reading is
// recent; once the good reading is older than roomStale, it does. A full
// store fails it at once.
func TestCallbackRoom_FailedReading(t *testing.T) {
	cfg := &config.Config{}
	cfg.HTTP.MaxBodyBytes = 65536
	need := uint64(intake.RecordLimit(cfg.HTTP.MaxBodyBytes))
	roomy := health.Storage{Streams: []health.StreamStorage{{Stream: intake.StreamName, MaxBytes: 1 << 30}}}
	full := health.Storage{Streams: []health.StreamStorage{{Stream: intake.StreamName, Bytes: 1<<30 - need/2, MaxBytes: 1 << 30}}}
	errTimeout := errors.New("storage reading: context deadline exceeded")

	var (
		reading health.Storage
		readErr error
	)
	m := &Main{cfg: cfg}
	m.room.read = func(context.Context) (health.Storage, error) { return reading, readErr }
	expire := func() { m.room.at = time.Now().Add(-roomCacheTTL - time.Millisecond) }
	ctx := context.Background()

	reading = roomy
	require.NoError(t, m.callbackRoom(ctx))

	expire()
	readErr = errTimeout
	assert.NoError(t, m.callbackRoom(ctx), "a failed reading right after a good one")

	expire()
	m.room.goodAt = time.Now().Add(-roomStale - time.Second)
	assert.ErrorIs(t, m.callbackRoom(ctx), errTimeout, "the last good reading is too old")

	expire()
	reading, readErr = full, nil
	assert.ErrorIs(t, m.callbackRoom(ctx), health.ErrNoRoom)

	expire()
	readErr = errTimeout
	assert.ErrorIs(t, m.callbackRoom(ctx), health.ErrNoRoom, "the last good reading said full")
}
