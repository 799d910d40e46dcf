package intake_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// BenchmarkDuplicateWindowHeap measures what WECOM_CALLBACKS' duplicate
// window costs in memory: nats-server keeps every Nats-Msg-Id stored
// within the window in a map, so the heap grows with callbacks per
// second × the window, whatever the soft memory limit. It stores b.N
// records with distinct 32-character ids (the length of a callback id)
// and reports the live heap they left, per record, after a GC: with the
// default 1h window, and with a 1s window whose ids have expired by the
// time the heap is read. The difference is the ids' cost. The embedded
// server runs in this process, so its heap is this heap.
//
//	go test ./internal/intake -run '^$' -bench DuplicateWindowHeap -benchtime 200000x
func BenchmarkDuplicateWindowHeap(b *testing.B) {
	for _, window := range []time.Duration{time.Hour, time.Second} {
		b.Run("window="+window.String(), func(b *testing.B) {
			srv := natstest.RunServer(b)
			nc, _ := natstest.Connect(b, srv, nats.InProcessServer(srv))
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
			require.NoError(b, err)
			mustSetup(b, js, intake.WithDuplicateWindow(window), intake.WithBatching(false))
			data := make([]byte, 600)
			before := liveHeap()
			b.ResetTimer()
			for i := range b.N {
				_, err := js.PublishMsgAsync(&nats.Msg{Subject: prefix + ".callback.archive.hit_keyword", Data: data},
					jetstream.WithMsgID(fmt.Sprintf("%032x", i)))
				require.NoError(b, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				b.Fatal("publishes not acked within a minute")
			}
			b.StopTimer()
			if window < time.Hour {
				// The server sweeps expired ids on a timer of about the window.
				time.Sleep(3 * window)
			}
			b.ReportMetric(float64(liveHeap()-before)/float64(b.N), "heap-B/record")
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
