package app_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

// cleanups are the names of the cleanups logs record as done, in order.
func cleanups(t *testing.T, logs string) []string {
	t.Helper()
	var names []string
	for line := range strings.Lines(logs) {
		var e struct{ Cleanup, Message string }
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		if e.Cleanup != "" {
			names = append(names, e.Cleanup+" "+strings.TrimPrefix(e.Message, "cleanup "))
		}
	}
	return names
}

// TestMain_Close: Close stops the parts in the order its doc gives,
// everything the pipeline needs stopped before NATS drains, and the
// admin listener last.
func TestMain_Close(t *testing.T) {
	cfg := testConfig(t, "1h", "3s", "")
	logs := &testlog.Buffer{}
	m := app.NewMain(cfg, zerolog.New(logs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, m.Open(ctx))
	require.NoError(t, m.Close(ctx))
	assert.Equal(t, []string{
		"readiness done", "http server done", "callback listener done", "pipeline done",
		"rule cache done", "corp registry watch done", "nats done", "admin listener done",
	}, cleanups(t, logs.String()))
	assert.ErrorIs(t, m.Ready(ctx), app.ErrDraining)
	assert.NoError(t, m.Close(ctx), "idempotent")
}

// TestMain_OpenFails: an Open that fails part-way closes what it had
// opened, in reverse: the callback listener it was given, and NATS, whose
// store a new Main then opens.
func TestMain_OpenFails(t *testing.T) {
	t.Run("AdminPortTaken", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer taken.Close()
		cfg := testConfig(t, "1h", "3s", "")
		cfg.Admin.Listen = taken.Addr().String()
		m, lis, logs := failedMain(t, cfg, "admin listen")
		assert.Equal(t, []string{
			"readiness done", "http server done", "pipeline done", "rule cache done",
			"corp registry watch done", "nats done", "callback listener done", "admin listener done",
		}, cleanups(t, logs.String()), "everything opened, closed in reverse")
		assert.ErrorIs(t, acceptNow(lis), net.ErrClosed, "the listener handed over is closed")
		assert.NoError(t, m.Close(t.Context()), "closing again is harmless")

		cfg.Admin.Listen = "127.0.0.1:0"
		again := app.NewMain(cfg, zerolog.Nop())
		require.NoError(t, again.Open(t.Context()), "the store was released")
		assert.NoError(t, again.Close(t.Context()))
	})
	t.Run("NATSFails", func(t *testing.T) {
		cfg := testConfig(t, "1h", "3s", "")
		cfg.NATS.StoreDir = filepath.Join(t.TempDir(), "a-file")
		require.NoError(t, os.WriteFile(cfg.NATS.StoreDir, nil, 0o600))
		_, lis, logs := failedMain(t, cfg, "")
		assert.Equal(t, []string{"callback listener done", "admin listener done"}, cleanups(t, logs.String()),
			"only what was opened")
		assert.ErrorIs(t, acceptNow(lis), net.ErrClosed, "the listener handed over is closed, though never served")
	})
}

// failedMain opens a Main for cfg on a listener of its own, which must
// fail with an error containing want.
func failedMain(t *testing.T, cfg *config.Config, want string) (*app.Main, net.Listener, *testlog.Buffer) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = lis.Close() })
	logs := &testlog.Buffer{}
	m := app.NewMain(cfg, zerolog.New(logs))
	m.UseListener(lis)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = m.Open(ctx)
	require.Error(t, err)
	require.ErrorContains(t, err, want)
	return m, lis, logs
}

// acceptNow is Accept's error on lis without waiting: net.ErrClosed once
// lis is closed, a timeout while it is open.
func acceptNow(lis net.Listener) error {
	_ = lis.(*net.TCPListener).SetDeadline(time.Now())
	c, err := lis.Accept()
	if err == nil {
		_ = c.Close()
	}
	return err
}
