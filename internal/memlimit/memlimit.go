// Package memlimit keeps the Go runtime's soft memory limit where it saves
// memory without starving the collector.
//
// A fixed soft limit has the wrong shape for this service. The receiver's
// largest live structure is one it cannot shrink: the ids of the
// callbacks stored within WECOM_CALLBACKS' duplicate window (about 48
// bytes per callback, kept by intake with the embedded server; and the
// embedded server's own map of hit events' ids, about 110 bytes each),
// which grows with the rate and is freed only as the window passes. Once
// the live heap nears a fixed limit, the runtime collects again and again
// and frees almost nothing: at full load on one core, before intake kept
// the callback ids itself, half of the process's CPU.
//
// So the configured limit (memory_limit_bytes) is a floor. While the heap
// is small the runtime collects by that limit, which keeps a quiet
// receiver small. When what the heap holds would leave the collector less
// than an eighth of it to allocate into, the Governor raises the limit to
// the live heap plus that eighth, plus the runtime's memory that holds
// no live objects (stacks, metadata, the unused part of heap spans), and
// lowers it again (never under the floor) as the ids expire. Above the
// floor that is about the trade GOGC=12 makes, for a heap the limit would
// otherwise squeeze.
//
// What this package leaves to others: the floor comes from the
// configuration (internal/config), and the decision whether to govern at
// all (not when GOMEMLIMIT is set) from the serve command (internal/cli).
// A hard cap belongs to the container or to GOMEMLIMIT.
package memlimit

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/rs/zerolog"
)

// every is how often a Governor looks at the heap: often enough that the limit
// follows a heap growing by a few MB a second (30,000 callbacks a second
// add about 1.5 MB of ids each second) before the collector runs short of
// room; a look costs about a microsecond.
const every = 250 * time.Millisecond

// headroomDiv sets the room the collector gets above the live heap: an
// eighth of it. A quarter took a further 2-3 µs off a callback at full
// load and raised the benchmark's peak RSS from 81 to 92-96 MiB, against
// issue 14's 96 MiB (BENCHMARKS.md, "The soft limit follows the heap").
const headroomDiv = 8

// Sample is what Target needs of the runtime, in bytes.
type Sample struct {
	// Live is the heap the last collection found live
	// (/gc/heap/live:bytes).
	Live uint64
	// Other is the runtime's memory that counts against the limit but
	// is not heap objects: stacks, the collector's metadata, buffers, and
	// the unused part of the heap's spans (the runtime's total minus what
	// it released, its free spans and its objects). The runtime takes it
	// off the limit before it sets the heap's goal.
	Other uint64
}

// Target is the soft limit for a runtime in state s: floor, or what the
// live heap plus an eighth needs when that is more. The runtime keeps 3%
// of the limit's heap share as its own margin (runtime/mgcpacer.go,
// memoryLimitHeapGoalHeadroomPercent), so the heap's share is grossed up
// by it. floor must be > 0.
func Target(floor int64, s Sample) int64 {
	heap := (s.Live + s.Live/headroomDiv) * 100 / 97
	if need := heap + s.Other; need > uint64(floor) {
		return int64(need)
	}
	return floor
}

// The runtime/metrics samples a reader takes, by index.
const (
	sampleLive = iota
	sampleTotal
	sampleReleased
	sampleObjects
	sampleFree
	sampleCount
)

// reader reads Samples from the runtime, reusing its buffer (one reader
// serves one goroutine).
type reader struct {
	samples []metrics.Sample
}

func newReader() *reader {
	names := [sampleCount]string{
		sampleLive:     "/gc/heap/live:bytes",
		sampleTotal:    "/memory/classes/total:bytes",
		sampleReleased: "/memory/classes/heap/released:bytes",
		sampleObjects:  "/memory/classes/heap/objects:bytes",
		sampleFree:     "/memory/classes/heap/free:bytes",
	}
	r := &reader{samples: make([]metrics.Sample, sampleCount)}
	for i, n := range names {
		r.samples[i].Name = n
	}
	return r
}

// read samples the runtime now.
func (r *reader) read() Sample {
	metrics.Read(r.samples)
	var v [sampleCount]uint64
	for i, s := range r.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	held := v[sampleReleased] + v[sampleObjects] + v[sampleFree]
	var other uint64
	if v[sampleTotal] > held {
		other = v[sampleTotal] - held
	}
	return Sample{Live: v[sampleLive], Other: other}
}

// Governor moves the runtime's soft memory limit to Target as the heap
// changes.
type Governor struct {
	floor int64
	log   zerolog.Logger
	// read and set are the runtime's (reader.read, debug.SetMemoryLimit);
	// a test gives its own to drive step with chosen heaps.
	read func() Sample
	set  func(int64) int64
	now  func() time.Time
	// current is the limit last set; logged when the last line about it
	// was written.
	current int64
	logged  time.Time
}

// logEvery spaces the lines that say the limit left the floor or came
// back to it: a heap that sits at the boundary would cross it often.
const logEvery = 10 * time.Minute

func newGovernor(floor int64, log zerolog.Logger, read func() Sample, set func(int64) int64, now func() time.Time) *Governor {
	return &Governor{floor: floor, log: log, read: read, set: set, now: now}
}

// Start sets floor (> 0) as the runtime's soft memory limit before it
// returns, then has a Governor follow the heap every 250 ms in a goroutine
// of its own. stop ends it, waits for it, and puts back the limit found
// before Start.
func Start(floor int64, log zerolog.Logger) (stop func()) {
	g := newGovernor(floor, log.With().Str("component", "memlimit").Logger(), newReader().read, debug.SetMemoryLimit, time.Now)
	found := g.set(floor)
	g.current = floor
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(ctx)
	}()
	return func() {
		cancel()
		<-done
		g.set(found)
	}
}

// run follows the heap until ctx ends.
func (g *Governor) run(ctx context.Context) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.step()
		}
	}
}

// step moves the limit towards Target of the runtime's state now. It
// raises the limit as soon as Target passes it, since a limit below what
// the heap needs is what makes the collector spin; it lowers it only once
// Target is an eighth below it, so that a heap breathing around one size
// does not move the limit at every look. Leaving the
// floor and coming back to it are logged, at most once per logEvery.
func (g *Governor) step() {
	want := Target(g.floor, g.read())
	switch {
	case want > g.current:
	case want < g.current-g.current/8:
	default:
		return
	}
	if now := g.now(); (g.current == g.floor || want == g.floor) && now.Sub(g.logged) >= logEvery {
		g.logged = now
		if want == g.floor {
			g.log.Info().Int64("memory_limit_bytes", g.floor).
				Msg("the soft memory limit is back at memory_limit_bytes")
		} else {
			g.log.Info().Int64("memory_limit_bytes", g.floor).Int64("limit", want).
				Msg("the live heap outgrew memory_limit_bytes: the soft memory limit follows it")
		}
	}
	g.set(want)
	g.current = want
}
