package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLifecycle_Close(t *testing.T) {
	var logs bytes.Buffer
	l := Lifecycle{Log: zerolog.New(&logs)}
	var ran []string
	step := func(name string, err error) {
		l.OnClose(name, func(context.Context) error {
			ran = append(ran, name)
			return err
		})
	}
	errBroker, errHTTP := errors.New("drain timed out"), errors.New("shutdown timed out")
	step("admin listener", nil)
	step("nats", errBroker)
	step("pipeline", nil)
	step("http server", errHTTP)
	step("readiness grace", nil)

	err := l.Close(context.Background())
	assert.Equal(t, []string{"readiness grace", "http server", "pipeline", "nats", "admin listener"}, ran,
		"last registered first; a failing step does not stop the rest")
	require.ErrorIs(t, err, errBroker)
	require.ErrorIs(t, err, errHTTP)
	assert.Equal(t, "http server: shutdown timed out\nnats: drain timed out", err.Error(), "each error names its step")

	var failed []string
	for line := range bytes.Lines(logs.Bytes()) {
		var e struct{ Level, Cleanup, Error, Message string }
		require.NoError(t, json.Unmarshal(line, &e))
		if e.Level == "warn" {
			assert.Equal(t, "cleanup failed", e.Message)
			failed = append(failed, e.Cleanup+": "+e.Error)
		}
	}
	assert.Equal(t, []string{"http server: shutdown timed out", "nats: drain timed out"}, failed, "each failure logged with its name")

	t.Run("Idempotent", func(t *testing.T) {
		ran = nil
		err := l.Close(context.Background())
		assert.Empty(t, ran, "nothing runs twice")
		assert.ErrorIs(t, err, errBroker, "the first close's errors stand")
		step("late", nil)
		require.ErrorIs(t, l.Close(context.Background()), errHTTP)
		assert.Equal(t, []string{"late"}, ran, "only what was registered since")
	})
}

func TestLifecycle_CloseEmpty(t *testing.T) {
	var l Lifecycle
	assert.NoError(t, l.Close(context.Background()))
}
