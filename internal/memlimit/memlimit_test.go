package memlimit

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

const mib = 1 << 20

func TestTarget(t *testing.T) {
	cases := []struct {
		name string
		s    Sample
		want int64
	}{
		{"SmallHeap", Sample{Live: 20 * mib, Other: 8 * mib}, 64 * mib},
		{"AtTheFloor", Sample{Live: 44 * mib, Other: 9 * mib}, 64 * mib}, // 44 + 11 + 9 = 64
		{"LargeHeap", Sample{Live: 60 * mib, Other: 8 * mib}, 83 * mib},  // 60 + 15 + 8
		{"OtherCounts", Sample{Live: 60 * mib, Other: 20 * mib}, 95 * mib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, Target(64*mib, c.s))
		})
	}
}

// TestGovernor_Step drives step with chosen heaps and records each limit
// set.
func TestGovernor_Step(t *testing.T) {
	var next Sample
	var set []int64
	var logs testlog.Buffer
	g := newGovernor(64*mib, zerolog.New(&logs), func() Sample { return next }, func(v int64) int64 {
		set = append(set, v)
		return 0
	})
	g.apply(g.floor)
	steps := []struct {
		live int64
		want []int64 // limits set by this step
	}{
		{10 * mib, nil},               // well under the floor
		{50 * mib, nil},               // 50 + 12.5 + 4 = 66.5: within a sixteenth of the floor
		{60 * mib, []int64{79 * mib}}, // 60 + 15 + 4
		{62 * mib, nil},               // 81.5: within a sixteenth of 79
		{80 * mib, []int64{104 * mib}},
		{30 * mib, []int64{64 * mib}}, // back to the floor
		{31 * mib, nil},
	}
	for i, s := range steps {
		set = nil
		next = Sample{Live: uint64(s.live), Other: 4 * mib}
		g.step()
		assert.Equal(t, s.want, set, "step %d (live %d MiB)", i, s.live/mib)
	}
	out := logs.String()
	assert.Contains(t, out, "the live heap outgrew memory_limit_bytes")
	assert.Contains(t, out, "the soft memory limit is back at memory_limit_bytes")
}

// TestGovernor_Run holds a heap larger than a small floor in this process
// and sees the runtime's own limit rise above it, then come back to the
// floor when Run ends.
func TestGovernor_Run(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	const floor = 8 * mib
	held := make([]byte, 48*mib)
	for i := range held {
		held[i] = byte(i)
	}
	runtime.GC()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g := New(floor, zerolog.Nop())
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	natstest.Eventually(t, 10*time.Second, "the limit to follow a 48 MiB heap", func() bool {
		return debug.SetMemoryLimit(-1) >= 60*mib // 48 + 12, plus the runtime's own
	})
	cancel()
	<-done
	require.Equal(t, int64(floor), debug.SetMemoryLimit(-1), "the floor again once Run returned")
	runtime.KeepAlive(held)
}
