package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFile is the file in the store dir that the embedded server's owner
// holds an exclusive lock on, and in which it writes its pid and start time.
const LockFile = "receiver.lock"

// ErrStoreLocked: another process holds the store dir's lock. Two
// JetStream servers on one store would corrupt it.
var ErrStoreLocked = errors.New("broker: store dir in use by another process")

// storeLock is an exclusive flock on <store dir>/receiver.lock. The kernel
// drops it when the process dies, however it dies, so a crash never leaves
// a stale lock behind; the file itself stays, holding the last owner's pid.
type storeLock struct {
	f *os.File
}

// lockStore takes the store dir's lock without waiting, creating the
// directory if need be. When another process holds it, the error wraps
// ErrStoreLocked and names the directory and what the holder wrote (its
// pid and start time).
func lockStore(dir string) (*storeLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("broker: store dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	// O_CLOEXEC is Go's default: a child process does not inherit the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("broker: store lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by %s", ErrStoreLocked, dir, holder)
		}
		return nil, fmt.Errorf("broker: store lock %s: %w", path, err)
	}
	info := fmt.Sprintf("pid=%d started=%s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := writeHolder(f, info); err != nil {
		f.Close() // releases the lock
		return nil, fmt.Errorf("broker: store lock %s: %w", path, err)
	}
	return &storeLock{f: f}, nil
}

func writeHolder(f *os.File, info string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(info), 0)
	return err
}

// readHolder returns the holder's "pid=N started=T", or a placeholder when
// the file is empty or unreadable (the holder may not have written yet).
func readHolder(f *os.File) string {
	buf := make([]byte, 128)
	n, _ := f.ReadAt(buf, 0)
	s := strings.TrimSpace(string(buf[:n]))
	pid, _, _ := strings.Cut(strings.TrimPrefix(s, "pid="), " ")
	if _, err := strconv.Atoi(pid); err != nil || !strings.HasPrefix(s, "pid=") {
		return "another process (pid unknown)"
	}
	return s
}

// release drops the lock. The file stays: removing it would let a third
// process lock a new file while a second still waits on the old one.
func (l *storeLock) release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}
