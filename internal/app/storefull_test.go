package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// smallStore caps the embedded store at 8 MiB, with stream and bucket
// limits that fit in it.
const smallStore = ", max_store_bytes: 8388608, callbacks_max_bytes: 2097152, hits_max_bytes: 2097152," +
	" dead_letters_max_bytes: 1048576, kv_max_bytes: 65536"

// TestPipeline_StoreFull: with the store full, callbacks get 503 store_full
// and /readyz fails; once room is made, without a restart, every callback
// that got success is handled and every hit arrives exactly once.
func TestPipeline_StoreFull(t *testing.T) {
	s := startSystemNATS(t, "0s", smallStore, "")
	js := s.m.Broker().JetStream()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	generate := func(n int) {
		t.Helper()
		_, err := s.sim.GenerateMessages(simCorp, n)
		require.NoError(t, err)
		s.sim.Advance(6 * time.Second) // past the callback coalescing interval
	}
	allPublished := func() error {
		want := s.hitIDs()
		counts, err := hitCounts(js)
		if err != nil {
			return err
		}
		for id := range want {
			if counts[id] != 1 {
				return fmt.Errorf("hit %s published %d times; %d of %d hits published", id, counts[id], len(counts), len(want))
			}
		}
		if len(counts) != len(want) {
			return fmt.Errorf("%d events for %d hits", len(counts), len(want))
		}
		return nil
	}
	generate(40)
	natstest.WaitFor(t, 20*time.Second, allPublished)

	// A stream of the test's own takes what room is left, so every write
	// on the store fails, whatever the stream.
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILLER", Subjects: []string{"filler"}})
	require.NoError(t, err)
	payload := make([]byte, 64<<10)
	for i := 0; ; i++ {
		require.Less(t, i, 200, "8 MiB took 12 MiB")
		if _, err = js.Publish(ctx, "filler", payload); err != nil {
			break
		}
	}
	var apiErr *jetstream.APIError
	require.ErrorAs(t, err, &apiErr)

	generate(40)
	natstest.WaitFor(t, 20*time.Second, func() error {
		if n := rejections(t, s.m, "store_full"); n == 0 {
			return errors.New("no callback answered 503 store_full")
		}
		return nil
	})
	natstest.WaitFor(t, 5*time.Second, func() error {
		if status, body := send(t, http.MethodGet, "http://"+s.m.Addr()+"/readyz", ""); status != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz: %d %s", status, body)
		}
		return nil
	})
	status, body := send(t, http.MethodGet, "http://"+s.m.Addr()+"/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "not ready\n", body, "no internal detail on the public port")
	// Readiness is a metric too: a replica out of the load balancer
	// answers no 503s to count.
	assert.Equal(t, 0.0, readyMetric(t, s.m))
	// status says why, with the same facts /readyz went by.
	code, out := adminGet(t, s.m, "/api/status", testAdminToken)
	require.Equal(t, http.StatusOK, code, out)
	var rep health.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Equal(t, health.StatusStalled, rep.Verdict.Status, out)
	assert.True(t, slices.ContainsFunc(rep.Verdict.Reasons, func(r health.Reason) bool { return r.Code == health.ReasonStorageFull }), out)

	// Room again: the next callback's fetch starts from the cursor the
	// failed pages left unmoved.
	require.NoError(t, js.DeleteStream(ctx, "FILLER"))
	natstest.WaitFor(t, 10*time.Second, func() error {
		if status, body := send(t, http.MethodGet, "http://"+s.m.Addr()+"/readyz", ""); status != http.StatusOK {
			return fmt.Errorf("readyz: %d %s", status, body)
		}
		return nil
	})
	assert.Equal(t, 1.0, readyMetric(t, s.m))
	generate(40)
	natstest.WaitFor(t, 30*time.Second, allPublished)
	// Every stored callback has been handled and acked.
	natstest.WaitFor(t, 10*time.Second, func() error {
		c, err := js.Consumer(ctx, intake.StreamName, "receiver")
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("intake consumer: %d pending, %d unacked", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// readyMetric is wecom_receiver_ready as scraped.
func readyMetric(t testing.TB, m *app.Main) float64 {
	t.Helper()
	mf := scrape(t, m)["wecom_receiver_ready"]
	require.NotNil(t, mf)
	require.Len(t, mf.GetMetric(), 1)
	return mf.GetMetric()[0].GetGauge().GetValue()
}

// rejections is the callback rejections counter for reason, summed over apps.
func rejections(t testing.TB, m *app.Main, reason string) float64 {
	t.Helper()
	mf := scrape(t, m)["wecom_receiver_callback_rejections_total"]
	require.NotNil(t, mf)
	sum := 0.0
	for _, mt := range mf.GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "reason" && l.GetValue() == reason {
				sum += mt.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestPipeline_DiskFull fills the file system under the embedded store (a
// tmpfs), so the store's writes fail with ENOSPC, which nats-server keeps
// failing until the stream is reloaded. Callbacks get 503 and /readyz
// fails; once the disk has room, the receiver recovers on its own and every
// hit arrives exactly once. Needs root (mount); skipped otherwise.
func TestPipeline_DiskFull(t *testing.T) {
	dir := mountTmpfs(t, 48<<20)
	s := startSystemNATS(t, "0s", smallStore, filepath.Join(dir, "nats"))
	js := s.m.Broker().JetStream()
	generate := func(n int) {
		t.Helper()
		_, err := s.sim.GenerateMessages(simCorp, n)
		require.NoError(t, err)
		s.sim.Advance(6 * time.Second)
	}
	allPublished := func() error {
		want := s.hitIDs()
		counts, err := hitCounts(js)
		if err != nil {
			return err
		}
		for id := range want {
			if counts[id] != 1 {
				return fmt.Errorf("hit %s published %d times; %d of %d hits published", id, counts[id], len(counts), len(want))
			}
		}
		if len(counts) != len(want) {
			return fmt.Errorf("%d events for %d hits", len(counts), len(want))
		}
		return nil
	}
	generate(40)
	natstest.WaitFor(t, 20*time.Second, allPublished)

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler, 64<<10)
	unavailable := func() float64 {
		return rejections(t, s.m, "store_timeout") + rejections(t, s.m, "store_failed") + rejections(t, s.m, "store_full")
	}
	before := unavailable()
	natstest.WaitFor(t, 30*time.Second, func() error {
		generate(20)
		if unavailable() == before {
			return errors.New("no callback refused on a full disk")
		}
		return nil
	})
	natstest.WaitFor(t, 10*time.Second, func() error {
		if status, body := send(t, http.MethodGet, "http://"+s.m.Addr()+"/readyz", ""); status != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz: %d %s", status, body)
		}
		return nil
	})

	require.NoError(t, os.Remove(filler))
	natstest.WaitFor(t, 30*time.Second, func() error {
		if status, body := send(t, http.MethodGet, "http://"+s.m.Addr()+"/readyz", ""); status != http.StatusOK {
			return fmt.Errorf("readyz: %d %s", status, body)
		}
		return nil
	})
	generate(40)
	natstest.WaitFor(t, 60*time.Second, allPublished)
}

// mountTmpfs mounts a tmpfs of size bytes on a temporary directory, or
// skips the test where mounting is not permitted.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", dir).CombinedOutput()
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

// fillDisk writes path until its file system has about leave bytes free.
func fillDisk(t *testing.T, path string, leave uint64) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		require.NoError(t, syscall.Statfs(filepath.Dir(path), &st))
		if st.Bavail*uint64(st.Bsize) <= leave+uint64(len(chunk)) {
			return
		}
		if _, err := f.Write(chunk); err != nil {
			return // full already
		}
	}
}

// hitCounts counts the events in WECOM_HITS by Nats-Msg-Id. Unlike
// eventIDs it returns its errors, for conditions polled while JetStream
// may be reloading, and reads message by message rather than through a
// consumer, so that polling creates no consumers.
func hitCounts(js jetstream.JetStream) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, publish.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(msg.Subject, "wecom.hit.") {
			counts[msg.Header.Get(jetstream.MsgIDHeader)]++
		}
	}
	return counts, nil
}
