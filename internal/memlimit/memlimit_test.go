package memlimit

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		{"BelowTheFloor", Sample{Live: 40 * mib, Other: 9 * mib}, 64 * mib}, // 45 / 0.97 + 9 = 55.4 MiB
		{"LargeHeap", Sample{Live: 60 * mib, Other: 8 * mib}, 81356525},     // 67.5 MiB / 0.97 + 8 MiB
		{"OtherCounts", Sample{Live: 60 * mib, Other: 20 * mib}, 93939437},  // 67.5 MiB / 0.97 + 20 MiB
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, Target(64*mib, c.s))
		})
	}
}

// testGovernor is a Governor on a fake clock whose heap the test sets,
// and which records the limits it sets.
type testGovernor struct {
	*Governor
	next Sample
	set  []int64
	logs testlog.Buffer
	now  time.Time
}

func newTestGovernor(floor int64) *testGovernor {
	tg := &testGovernor{now: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	tg.Governor = newGovernor(floor, zerolog.New(&tg.logs),
		func() Sample { return tg.next },
		func(v int64) int64 { tg.set = append(tg.set, v); return 0 },
		func() time.Time { return tg.now })
	tg.current = floor
	return tg
}

// tick sets the heap to live MiB (and 4 MiB of other memory), lets a
// look go by, and returns the limits that look set.
func (tg *testGovernor) tick(live float64) []int64 {
	tg.set = nil
	tg.next = Sample{Live: uint64(live * mib), Other: 4 * mib}
	tg.now = tg.now.Add(every)
	tg.step()
	return tg.set
}

func TestGovernor_Step(t *testing.T) {
	g := newTestGovernor(64 * mib)
	target := func(live float64) int64 { return Target(64*mib, Sample{Live: uint64(live * mib), Other: 4 * mib}) }
	assert.Nil(t, g.tick(10), "well under the floor")
	assert.Nil(t, g.tick(50), "62 MiB: still under the floor")
	assert.Equal(t, []int64{target(56)}, g.tick(56), "past the floor: raised at once")
	assert.Equal(t, []int64{target(57)}, g.tick(57), "raised again, however little")
	assert.Nil(t, g.tick(54), "less than an eighth below: kept")
	assert.Equal(t, []int64{target(80)}, g.tick(80))
	assert.Equal(t, []int64{64 * mib}, g.tick(30), "back to the floor")
	assert.Nil(t, g.tick(31))
	out := g.logs.String()
	assert.Contains(t, out, "the live heap outgrew memory_limit_bytes")
	assert.Equal(t, 1, strings.Count(out, "\n"), "the way back is within logEvery of the way up: not logged")
}

// TestGovernor_StepAtTheBoundary: a heap that sits where the floor ends,
// breathing a few percent either way, moves the limit once and logs once
// (R7: it used to reset the limit and log at every look).
func TestGovernor_StepAtTheBoundary(t *testing.T) {
	g := newTestGovernor(64 * mib)
	sets := 0
	for i := range 40 {
		live := 50.0 // 62 MiB: the floor
		if i%2 == 1 {
			live = 53.5 // 66 MiB
		}
		sets += len(g.tick(live))
	}
	assert.LessOrEqual(t, sets, 2)
	assert.Equal(t, 1, strings.Count(g.logs.String(), "\n"))
}

// TestStart holds a heap larger than a small floor in this process and
// sees the runtime's own limit set to the floor, rise above it, then come
// back to the limit found before Start once stopped.
func TestStart(t *testing.T) {
	const found = 1 << 40
	prev := debug.SetMemoryLimit(found)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	const floor = 8 * mib
	held := make([]byte, 48*mib)
	for i := range held {
		held[i] = byte(i)
	}
	runtime.GC()

	stop := Start(floor, zerolog.Nop())
	// Its first look is a tick away.
	assert.Equal(t, int64(floor), debug.SetMemoryLimit(-1), "the floor, as Start returns")
	deadline := time.Now().Add(10 * time.Second)
	// Past 48 MiB plus an eighth.
	for l := debug.SetMemoryLimit(-1); l < 54*mib; l = debug.SetMemoryLimit(-1) {
		require.True(t, time.Now().Before(deadline), "the limit did not follow a 48 MiB heap: %d", l)
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	require.Equal(t, int64(found), debug.SetMemoryLimit(-1), "the limit found before Start, once stopped")
	runtime.KeepAlive(held)
}
