package broker

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ErrStoreWrite: a stream or consumer of the embedded server failed to
// write (typically a full disk); until the server reloads it, every write
// to it fails. Ready wraps it while it lasts.
var ErrStoreWrite = errors.New("broker: jetstream store write failed")

// Store watch pacing. nats-server keeps a stream's write error until the
// stream is loaded again, even once the disk has room: the watch notices
// the error, waits for room, and reloads JetStream (all streams, from
// disk), at most once per storeRestartEvery so a disk that stays full
// does not make it churn.
const (
	storeCheckEvery   = time.Second
	storeRestartEvery = 10 * time.Second
	// storeMinFree is the free space below which a reload would only fail
	// again: a few message blocks' worth.
	storeMinFree = 4 << 20
)

// watchStore runs until ctx is done, checking the embedded server's streams
// for write errors, recording the state for Ready, and reloading JetStream
// once the store dir's file system has room again.
func (b *Broker) watchStore(ctx context.Context, storeDir string) {
	t := time.NewTicker(storeCheckEvery)
	defer t.Stop()
	var lastRestart time.Time
	logged := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		werr := storeWriteError(b.srv)
		if werr == "" {
			if b.storeErr.Swap(false) {
				b.log.Info().Msg("jetstream store writes again")
			}
			logged = false
			continue
		}
		b.storeErr.Store(true)
		free, err := freeBytes(storeDir)
		switch {
		case err != nil || free < storeMinFree:
			if !logged {
				b.log.Error().Str("error", werr).Uint64("free_bytes", free).
					Msg("jetstream store cannot write; waiting for disk space")
				logged = true
			}
			continue
		case time.Since(lastRestart) < storeRestartEvery:
			continue
		}
		lastRestart = time.Now()
		b.log.Warn().Str("error", werr).Uint64("free_bytes", free).
			Msg("jetstream store has room again; reloading jetstream")
		if err := restartJetStream(b.srv); err != nil {
			b.log.Error().Err(err).Msg("reloading jetstream failed; will retry")
			continue
		}
		b.restarts.Add(1)
	}
}

// storeWriteError returns the first write error the server reports on a
// stream or consumer, "" if none.
func storeWriteError(srv *server.Server) string {
	hs := srv.Healthz(&server.HealthzOptions{Details: true})
	if hs == nil {
		return ""
	}
	for _, e := range hs.Errors {
		if strings.Contains(e.Error, "write error") {
			return e.Error
		}
	}
	return ""
}

// restartJetStream shuts JetStream down and enables it again with the same
// settings: every stream and consumer is loaded afresh from disk, without
// the write errors their previous instances kept. Clients stay connected;
// their requests fail (and are retried) while it runs.
func restartJetStream(srv *server.Server) error {
	cfg := srv.JetStreamConfig()
	if cfg == nil {
		return errors.New("jetstream is not enabled")
	}
	// The running config's StoreDir ends in "jetstream", which
	// EnableJetStream appends again: hand it the parent it was given.
	if filepath.Base(cfg.StoreDir) == server.JetStreamStoreDir {
		cfg.StoreDir = filepath.Dir(cfg.StoreDir)
	}
	if err := srv.ShutdownJetStream(); err != nil {
		return err
	}
	return srv.EnableJetStream(cfg)
}

// freeBytes is the space an unprivileged process may still use on dir's
// file system.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// StoreRestarts counts the times the embedded server's JetStream was
// reloaded to clear a write error.
func (b *Broker) StoreRestarts() uint64 { return b.restarts.Load() }
