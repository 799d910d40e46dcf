package broker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
)

func TestOpen_StoreLocked(t *testing.T) {
	log, _ := testLogger()
	dir := t.TempDir()
	mustOpen(t, broker.Options{StoreDir: dir}, log)

	_, err := broker.Open(t.Context(), broker.Options{StoreDir: dir}, log)
	require.ErrorIs(t, err, broker.ErrStoreLocked)
	assert.Contains(t, err.Error(), dir)
	assert.Contains(t, err.Error(), fmt.Sprintf("pid=%d ", os.Getpid()))
}

func TestOpen_StoreLockReleased(t *testing.T) {
	log, _ := testLogger()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := broker.Open(ctx, broker.Options{StoreDir: dir}, log)
	require.NoError(t, err)
	require.NoError(t, b.Close(ctx))
	// Closed: the next owner gets the store.
	mustOpen(t, broker.Options{StoreDir: dir}, log)
}

// TestOpen_StoreLockedProcess runs the second owner as a real process: the
// test binary, re-run to only open the broker.
func TestOpen_StoreLockedProcess(t *testing.T) {
	if dir := os.Getenv("BROKER_LOCK_CHILD_DIR"); dir != "" {
		log, _ := testLogger()
		_, err := broker.Open(context.Background(), broker.Options{StoreDir: dir}, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	log, _ := testLogger()
	dir := t.TempDir()
	mustOpen(t, broker.Options{StoreDir: dir}, log)

	cmd := exec.Command(os.Args[0], "-test.run=^TestOpen_StoreLockedProcess$")
	cmd.Env = append(os.Environ(), "BROKER_LOCK_CHILD_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output: %s", out)
	assert.Equal(t, 3, ee.ExitCode())
	assert.Contains(t, string(out), "store dir in use by another process: "+dir)
	assert.Contains(t, string(out), fmt.Sprintf("pid=%d ", os.Getpid()))
	b, err := os.ReadFile(filepath.Join(dir, broker.LockFile))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), fmt.Sprintf("pid=%d started=", os.Getpid())), "lock file: %q", b)
}
