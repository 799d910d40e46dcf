package intake_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// BenchmarkDuplicateWindowHeap measures what WECOM_CALLBACKS' duplicate
// window costs in memory. With the server de-duplicating (Nats-Msg-Id),
// nats-server keeps every id stored within the window in a map, so the
// heap grows with callbacks per second × the window, whatever the soft
// memory limit; with WithLocalDedup the Store keeps them (dedup.go). It
// stores b.N callbacks with distinct ids (CallbackID's 32 hex digits)
// from 64 goroutines and reports the live heap they left, per record,
// after a GC: server de-duplication with the default 1h window, and with
// a 1s window whose ids have expired by the time the heap is read (the
// difference is the server's ids' cost), and local de-duplication with
// the 1h window. The embedded server runs in this process, so its heap is
// this heap.
//
//	go test ./internal/intake -run '^$' -bench DuplicateWindowHeap -benchtime 200000x
func BenchmarkDuplicateWindowHeap(b *testing.B) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		local  bool
	}{
		{"server/window=1h", time.Hour, false},
		{"server/window=1s", time.Second, false},
		{"local/window=1h", time.Hour, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := natstest.RunServer(b)
			_, js := natstest.Connect(b, srv, nats.InProcessServer(srv))
			s := mustSetup(b, js, intake.WithDuplicateWindow(tc.window), intake.WithLocalDedup(tc.local))
			cb := testCallback("")
			cb.Raw = strings.Repeat("x", 600)
			before := liveHeap()
			b.ResetTimer()
			var (
				next atomic.Int64
				wg   sync.WaitGroup
			)
			for range 64 {
				c := *cb
				wg.Go(func() {
					for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
						c.ID = fmt.Sprintf("%032x", i)
						if err := s.Store(context.Background(), &c); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if tc.window < time.Hour {
				// The server sweeps expired ids on a timer of about the window.
				time.Sleep(3 * tc.window)
			}
			b.ReportMetric(float64(liveHeap()-before)/float64(b.N), "heap-B/record")
			runtime.KeepAlive(s)
		})
	}
}

// liveHeap is the heap in use after two collections.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
