package broker_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// mountTmpfs mounts a tmpfs of size bytes on a temporary directory, or
// skips the test where mounting is not permitted (not root, no
// CAP_SYS_ADMIN, a container without it).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+itoa(size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("full-disk test needs to mount a tmpfs (root or CAP_SYS_ADMIN): mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestBroker_RecoversFromFullDisk fills the file system under the store
// (not the store's limit: the disk itself), so the stream's writes fail
// with ENOSPC; once a filler file is removed, the broker must write again
// without a restart, and be not ready only in between.
func TestBroker_RecoversFromFullDisk(t *testing.T) {
	dir := mountTmpfs(t, 48<<20)
	log, logs := testLogger()
	// A listener with a role in an account of its own: the receiver's
	// JetStream, enabled apart (broker.go), must come back too.
	b := mustOpen(t, broker.Options{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0",
		CredentialsDir: t.TempDir(), Roles: []broker.Role{{Name: "guest", Account: guestAccount()}}}, log)
	js := b.JetStream()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}})
	require.NoError(t, err)

	// Leave about 2 MiB free, then publish past it.
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler, 2<<20)
	payload := make([]byte, 64<<10)
	var pubErr error
	for range 200 {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, pubErr = js.Publish(pctx, "t", payload)
		pcancel()
		if pubErr != nil {
			break
		}
	}
	require.Error(t, pubErr, "a 2 MiB disk took 12 MiB")
	natstest.WaitFor(t, 10*time.Second, func() error {
		if !errors.Is(b.Ready(), broker.ErrStoreWrite) {
			return errors.New("ready despite a failed write")
		}
		return nil
	})

	require.NoError(t, os.Remove(filler))
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	natstest.WaitFor(t, 30*time.Second, func() error {
		if err := b.Ready(); err != nil {
			return err
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		_, err := js.Publish(pctx, "t", payload)
		return err
	})
	assert.GreaterOrEqual(t, b.StoreRestarts(), uint64(1))
	assert.Contains(t, logs.String(), "reloading jetstream")
}

// fillDisk writes path until the file system has about leave bytes free.
func fillDisk(t *testing.T, path string, leave uint64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 256<<10)
	for {
		free, err := broker.FreeBytes(filepath.Dir(path))
		require.NoError(t, err)
		if free <= leave+uint64(len(chunk)) {
			return
		}
		_, err = f.Write(chunk)
		require.NoError(t, err)
	}
}
