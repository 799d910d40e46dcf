//go:build faults

package faults

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of size at dir, unmounted at cleanup (after the
// processes using it are killed: cleanups run last-registered first). It
// skips the test, saying why, where mounting is not permitted.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("needs a tmpfs mount, which this machine does not permit (mount: %v: %s); run as root or with CAP_SYS_ADMIN", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fill writes path until the file system is full and returns the bytes
// written.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for range 1 << 16 { // bounded: 4 GiB at most
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("fill: %v", err)
		}
	}
	t.Fatalf("fill: no ENOSPC after %d bytes", n)
	return n
}

// TestDiskFull: the embedded store on a small tmpfs, filled while traffic
// flows, then given room again. Callbacks answered success must be stored,
// and once there is room the receiver must store callbacks again without a
// restart (issue 15, finding 1).
func TestDiskFull(t *testing.T) {
	n := rounds(t)
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	mountTmpfs(t, mnt, "32m")
	c := newCreds()
	lb := newBalancer(t, where{})
	s := startSim(t, where{}, dir, c, lb.srv.URL+"/callback/"+appName, rate)
	rc := receiverConfig{dir: filepath.Join(dir, "r1")}
	cfg := writeReceiverConfig(t, rc, c, s.url)
	// The store lives on the tmpfs; the configuration does not.
	if err := os.Symlink(mnt, filepath.Join(rc.dir, "store")); err != nil {
		t.Fatal(err)
	}
	r := newReceiver("receiver", cfg)
	r.start(t)
	lb.set(r.http)

	var notRecovered []string
	for i := range n {
		runFor(t, 3*time.Second, r.p, s.p)
		filler := filepath.Join(mnt, "filler")
		size := fill(t, filler)
		fullAt := time.Now()
		t.Logf("round %d: store full (%d bytes of filler)", i+1, size)
		runFor(t, 15*time.Second, r.p, s.p)
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		freedAt := time.Now()
		// Recovered: a callback delivered after the space came back was
		// answered success.
		err := waitFor(time.Minute, time.Second, func() error {
			if r.p.exited() {
				return fmt.Errorf("%w: receiver exited: %v", errGiveUp, r.p.exitErr)
			}
			log, err := s.answers()
			if err != nil {
				return err
			}
			for _, a := range log.Answers {
				if a.Success && a.At.After(freedAt) {
					return nil
				}
			}
			return errors.New("no callback answered success since the store has room again")
		})
		if err != nil {
			notRecovered = append(notRecovered, fmt.Sprintf("round %d (full %s): %v", i+1, freedAt.Sub(fullAt).Round(time.Second), err))
			if r.p.exited() {
				t.Fatalf("%v; output:\n%s", err, r.p.tail(3000))
			}
		}
	}
	runFor(t, 3*time.Second, r.p, s.p)
	tl := settle(t, "store on a full tmpfs", n, s, r.connectEmbedded(t), nil)
	if len(notRecovered) > 0 {
		t.Errorf("issue 15 finding 1: the receiver did not recover on its own after the store had room again:\n%v", notRecovered)
	}
	check(t, tl)
}
