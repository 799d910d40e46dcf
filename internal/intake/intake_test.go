package intake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

const (
	prefix = "wecom"
	// Stand-ins for secrets, to check they never reach an error.
	secretToken = "TOKEN-ENjd8aQ2"
	secretRaw   = "<xml><Token><![CDATA[TOKEN-ENjd8aQ2]]></Token></xml>"
)

func testCallback(id string) *wecomhit.Callback {
	return &wecomhit.Callback{
		ID:         id,
		App:        "archive",
		Kind:       wecomhit.KindHitKeyword,
		Format:     "xml",
		CorpID:     "wwcorp",
		SuiteID:    "wwsuite",
		Token:      secretToken,
		EventTime:  1700000000,
		ReceivedAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Raw:        secretRaw,
	}
}

// ctxTimeout is a context for one step of a test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustSetup returns a Store whose stream is set up.
func mustSetup(t testing.TB, js jetstream.JetStream, opts ...intake.Option) *intake.Store {
	t.Helper()
	s := mustNew(t, js, prefix, opts...)
	require.NoError(t, s.Setup(ctxTimeout(t, 10*time.Second)))
	return s
}

// mustNew returns a Store; its stream is not set up.
func mustNew(t testing.TB, js jetstream.JetStream, prefix string, opts ...intake.Option) *intake.Store {
	t.Helper()
	s, err := intake.New(js, prefix, opts...)
	require.NoError(t, err)
	return s
}

func streamInfo(t testing.TB, js jetstream.JetStream) *jetstream.StreamInfo {
	t.Helper()
	st, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
	require.NoError(t, err)
	return st.CachedInfo()
}

func TestSubject(t *testing.T) {
	tests := []struct {
		prefix, app string
		kind        wecomhit.Kind
		want        string
	}{
		{"wecom", "archive", wecomhit.KindHitKeyword, "wecom.callback.archive.hit_keyword"},
		{"acme.wecom", "suite-1", wecomhit.KindSuiteTicket, "acme.wecom.callback.suite-1.suite_ticket"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, intake.Subject(tt.prefix, tt.app, tt.kind))
		})
	}
}

func TestStore_Setup(t *testing.T) {
	t.Run("DefaultsAndIdempotent", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		s := mustSetup(t, js)
		require.NoError(t, s.Setup(ctxTimeout(t, 5*time.Second)), "second run")

		cfg := streamInfo(t, js).Config
		assert.Equal(t, []string{"wecom.callback.>"}, cfg.Subjects)
		assert.Equal(t, jetstream.FileStorage, cfg.Storage)
		assert.Equal(t, jetstream.LimitsPolicy, cfg.Retention)
		assert.Equal(t, jetstream.DiscardNew, cfg.Discard, "a full stream refuses new callbacks, never drops stored ones")
		assert.Equal(t, intake.DefaultMaxAge, cfg.MaxAge)
		assert.Equal(t, intake.DefaultDuplicateWindow, cfg.Duplicates)
		assert.Equal(t, 1, cfg.Replicas)
	})

	t.Run("UpdatesMaxAge", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		s := mustSetup(t, js)
		require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("kept")))

		mustSetup(t, js, intake.WithMaxAge(time.Hour), intake.WithDuplicateWindow(time.Minute))
		info := streamInfo(t, js)
		assert.Equal(t, time.Hour, info.Config.MaxAge)
		assert.Equal(t, time.Minute, info.Config.Duplicates)
		assert.Equal(t, uint64(1), info.State.Msgs, "an update keeps the records")
	})

	t.Run("UpdatesReplicas", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a 3-node cluster")
		}
		servers := natstest.RunCluster(t, 3)
		_, js := natstest.ConnectURL(t, natstest.ClientURLs(servers...))
		mustSetup(t, js)
		assert.Equal(t, 1, streamInfo(t, js).Config.Replicas)

		s := mustSetup(t, js, intake.WithReplicas(3))
		natstest.WaitFor(t, 20*time.Second, func() error {
			st, err := js.Stream(ctxTimeout(t, time.Second), intake.StreamName)
			if err != nil {
				return err
			}
			info := st.CachedInfo()
			if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				return fmt.Errorf("replicas: config %d, cluster %+v", info.Config.Replicas, info.Cluster)
			}
			return nil
		})
		// The replicated stream takes records.
		require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("r3")))
	})

	t.Run("ErrReplicasOnSingleServer", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		mustSetup(t, js)
		err := mustNew(t, js, prefix, intake.WithReplicas(3)).Setup(ctxTimeout(t, 5*time.Second))
		require.Error(t, err)
		assert.Contains(t, err.Error(), intake.StreamName, "error names the stream")
		var apiErr *jetstream.APIError
		assert.ErrorAs(t, err, &apiErr, "the server's reason is kept")
	})

	t.Run("ErrInvalidOption", func(t *testing.T) {
		_, js := natstest.Connect(t, natstest.RunServer(t))
		tests := []struct {
			name   string
			prefix string
			opts   []intake.Option
		}{
			{"EmptyPrefix", "", []intake.Option{}},
			{"WildcardPrefix", "wecom.*", []intake.Option{}},
			{"EmptyPrefixToken", "wecom..x", []intake.Option{}},
			{"NegativeReplicas", prefix, []intake.Option{intake.WithReplicas(-1)}},
			{"TooManyReplicas", prefix, []intake.Option{intake.WithReplicas(7)}},
			{"NegativeMaxAge", prefix, []intake.Option{intake.WithMaxAge(-time.Hour)}},
			{"DuplicateWindowOverMaxAge", prefix, []intake.Option{intake.WithMaxAge(time.Minute), intake.WithDuplicateWindow(time.Hour)}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := intake.New(js, tt.prefix, tt.opts...)
				assert.ErrorIs(t, err, intake.ErrInvalidOption)
			})
		}
		_, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
		assert.ErrorIs(t, err, jetstream.ErrStreamNotFound, "nothing was created")
	})
}

func TestStore_Store(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustSetup(t, js)
	stream, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
	require.NoError(t, err)

	msgs := func(t *testing.T) uint64 {
		t.Helper()
		info, err := stream.Info(ctxTimeout(t, 5*time.Second))
		require.NoError(t, err)
		return info.State.Msgs
	}
	purge := func(t *testing.T) {
		t.Helper()
		require.NoError(t, stream.Purge(ctxTimeout(t, 5*time.Second)))
	}

	t.Run("OK", func(t *testing.T) {
		purge(t)
		cb := testCallback("cb-ok")
		require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))

		subject := "wecom.callback.archive.hit_keyword"
		require.Equal(t, subject, intake.Subject(prefix, cb.App, cb.Kind))
		m, err := stream.GetLastMsgForSubject(ctxTimeout(t, 5*time.Second), subject)
		require.NoError(t, err)
		assert.Equal(t, subject, m.Subject)
		assert.Equal(t, "cb-ok", m.Header.Get(jetstream.MsgIDHeader))
		assert.Equal(t, "application/json", m.Header.Get("Content-Type"))

		var got wecomhit.Callback
		require.NoError(t, json.Unmarshal(m.Data, &got))
		assert.Equal(t, *cb, got)
		assert.Equal(t, uint64(1), msgs(t))
	})

	t.Run("NoDeadline", func(t *testing.T) {
		purge(t)
		require.NoError(t, s.Store(t.Context(), testCallback("cb-no-deadline")))
		assert.Equal(t, uint64(1), msgs(t))
	})

	t.Run("DuplicateIDStoredOnce", func(t *testing.T) {
		purge(t)
		for i := range 3 {
			cb := testCallback("cb-dup")
			cb.ReceivedAt = cb.ReceivedAt.Add(time.Duration(i) * time.Second) // a retry differs in detail
			require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb), "attempt %d", i)
		}
		assert.Equal(t, uint64(1), msgs(t))
	})

	t.Run("DistinctIDs", func(t *testing.T) {
		purge(t)
		for _, id := range []string{"cb-a", "cb-b", "cb-c"} {
			require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback(id)))
		}
		assert.Equal(t, uint64(3), msgs(t))
	})

	t.Run("SubjectPerAppAndKind", func(t *testing.T) {
		purge(t)
		cb := testCallback("cb-ticket")
		cb.App, cb.Kind = "suite-2", wecomhit.KindSuiteTicket
		require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), cb))
		m, err := stream.GetLastMsgForSubject(ctxTimeout(t, 5*time.Second), "wecom.callback.suite-2.suite_ticket")
		require.NoError(t, err)
		assert.Equal(t, "cb-ticket", m.Header.Get(jetstream.MsgIDHeader))
	})

	t.Run("ErrInvalidRecord", func(t *testing.T) {
		purge(t)
		tests := []struct {
			name   string
			mutate func(*wecomhit.Callback)
		}{
			{"EmptyID", func(cb *wecomhit.Callback) { cb.ID = "" }},
			{"IDWithNewline", func(cb *wecomhit.Callback) { cb.ID = "a\r\nNats-Expected-Stream: X" }},
			{"EmptyApp", func(cb *wecomhit.Callback) { cb.App = "" }},
			{"AppWithDot", func(cb *wecomhit.Callback) { cb.App = "a.b" }},
			{"AppWildcard", func(cb *wecomhit.Callback) { cb.App = "*" }},
			{"AppWithSpace", func(cb *wecomhit.Callback) { cb.App = "a b" }},
			{"EmptyKind", func(cb *wecomhit.Callback) { cb.Kind = "" }},
			{"KindWildcard", func(cb *wecomhit.Callback) { cb.Kind = ">" }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cb := testCallback("cb-bad")
				tt.mutate(cb)
				err := s.Store(ctxTimeout(t, 5*time.Second), cb)
				require.ErrorIs(t, err, intake.ErrInvalidRecord)
				assertNoSecrets(t, err)
			})
		}
		t.Run("Nil", func(t *testing.T) {
			assert.ErrorIs(t, s.Store(ctxTimeout(t, 5*time.Second), nil), intake.ErrInvalidRecord)
		})
		assert.Equal(t, uint64(0), msgs(t), "nothing stored")
	})
}

func TestStore_StoreWithoutStream(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix) // no Setup
	// Store retries until its deadline (TestStore_ErrNoStreamAtDeadline):
	// a short one keeps this test short.
	err := s.Store(ctxTimeout(t, time.Second), testCallback("cb-1"))
	require.Error(t, err)
	assertNoSecrets(t, err)
}

// TestStore_NoAckNoSuccess: a subscriber that takes the message but never
// acks it (no stream behind the subject) is not a store; Store waits for an
// ack until its deadline and fails.
func TestStore_NoAckNoSuccess(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix) // no Setup: no stream
	got := make(chan struct{}, 1)
	sub, err := nc.Subscribe(prefix+".callback.>", func(*nats.Msg) {
		select {
		case got <- struct{}{}:
		default:
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, nc.Flush())

	err = s.Store(ctxTimeout(t, 300*time.Millisecond), testCallback("cb-1"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	select {
	case <-got:
	default:
		t.Fatal("the message was not sent")
	}
}

// TestStore_NATSOutage stops the server under a connected Store, checks
// Store fails within its deadline, then restarts the server on the same
// port and store and checks the retry lands exactly once, although the
// failed attempt sat in the client's reconnect buffer and may have been
// sent after the reconnect.
func TestStore_NATSOutage(t *testing.T) {
	dir := t.TempDir()
	srv := natstest.RunServer(t, natstest.WithStoreDir(dir))
	port := natstest.Port(t, srv)
	nc, js := natstest.Connect(t, srv)
	s := mustSetup(t, js)
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("before")))

	srv.Shutdown()
	srv.WaitForShutdown()
	natstest.WaitFor(t, 5*time.Second, func() error {
		if nc.IsConnected() {
			return errors.New("client still connected")
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Store(ctx, testCallback("during"))
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, elapsed, 5*time.Second, "Store keeps to its context's deadline")
	assertNoSecrets(t, err)
	assert.Error(t, s.Ready(ctxTimeout(t, 300*time.Millisecond)), "not ready while NATS is down")

	natstest.RunServer(t, natstest.WithStoreDir(dir), natstest.WithPort(port))
	natstest.WaitFor(t, 10*time.Second, func() error {
		if !nc.IsConnected() {
			return fmt.Errorf("client %s", nc.Status())
		}
		return nil
	})
	// The endpoint answered 5xx, so WeCom retries the same callback.
	require.NoError(t, s.Store(ctxTimeout(t, 5*time.Second), testCallback("during")))
	require.NoError(t, s.Ready(ctxTimeout(t, 5*time.Second)))

	stream, err := js.Stream(ctxTimeout(t, 5*time.Second), intake.StreamName)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), stream.CachedInfo().State.Msgs, `"before" and "during", each once`)
}

func TestStore_Ready(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	s := mustNew(t, js, prefix)

	t.Run("ErrStreamNotFound", func(t *testing.T) {
		err := s.Ready(t.Context())
		assert.ErrorIs(t, err, jetstream.ErrStreamNotFound)
		assert.Contains(t, err.Error(), intake.StreamName)
	})

	t.Run("OK", func(t *testing.T) {
		require.NoError(t, s.Setup(ctxTimeout(t, 5*time.Second)))
		assert.NoError(t, s.Ready(t.Context()), "no deadline: the default applies")
		assert.NoError(t, s.Ready(ctxTimeout(t, time.Second)))
	})
}

func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	for _, secret := range []string{secretToken, "CDATA", "wwcorp", "wwsuite"} {
		assert.NotContains(t, err.Error(), secret)
	}
}

// BenchmarkStore measures one durable callback write (publish and PubAck),
// with the server's default durability and with sync_always (fsync per write).
func BenchmarkStore(b *testing.B) {
	for _, sync := range []bool{false, true} {
		var opts []natstest.Option
		name := "sync=false"
		if sync {
			opts, name = append(opts, natstest.WithSyncAlways()), "sync=true"
		}
		b.Run(name, func(b *testing.B) { benchmarkStore(b, opts...) })
	}
}

func benchmarkStore(b *testing.B, opts ...natstest.Option) {
	_, js := natstest.Connect(b, natstest.RunServer(b, opts...))
	s := mustNew(b, js, prefix)
	require.NoError(b, s.Setup(ctxTimeout(b, 10*time.Second)))

	for _, size := range []int{512, 4096} {
		b.Run("raw="+strconv.Itoa(size), func(b *testing.B) {
			cb := testCallback("")
			cb.Raw = strings.Repeat("x", size)
			data, err := json.Marshal(cb)
			require.NoError(b, err)
			b.SetBytes(int64(len(data)))
			ctx := b.Context()
			// IDs differ per iteration, as real callbacks do, so each is
			// stored rather than deduplicated; the ID's own allocation is in
			// the count.
			idPrefix := "bench-" + strconv.Itoa(size) + "-"
			id := make([]byte, 0, 32)
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				id = strconv.AppendInt(append(id[:0], idPrefix...), int64(n), 10)
				cb.ID = string(id)
				if err := s.Store(ctx, cb); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStoreParallel measures Store as the endpoint drives it: 32
// callbacks in flight at once, on an in-process connection as the embedded
// server's, with the broker's async ack timeout. publish=async is the
// lever BENCHMARKS.md tried and did not keep: the same record published
// with PublishMsgAsync, each caller waiting for its own ack (encoded once,
// outside the loop, which favours it by the encoding's cost). cpu-ns/op is
// the process's CPU time (client and server) per callback, which a busy
// machine disturbs less than ns/op. Run it with -cpu 1 for the pinned case.
func BenchmarkStoreParallel(b *testing.B) {
	srv := natstest.RunServer(b)
	nc, _ := natstest.Connect(b, srv, nats.InProcessServer(srv))
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	require.NoError(b, err)
	s := mustSetup(b, js)
	cb := testCallback("")
	cb.Raw = strings.Repeat("x", 600)
	data, err := json.Marshal(cb)
	require.NoError(b, err)
	subject := intake.Subject(prefix, cb.App, cb.Kind)
	store := map[string]func(ctx context.Context, c *wecomhit.Callback) error{
		"store": s.Store,
		"async": func(ctx context.Context, c *wecomhit.Callback) error {
			paf, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data, Header: nats.Header{}},
				jetstream.WithMsgID(c.ID), jetstream.WithExpectStream(intake.StreamName), jetstream.WithRetryAttempts(0))
			if err != nil {
				return err
			}
			select {
			case <-paf.Ok():
				return nil
			case err := <-paf.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}
	for _, mode := range []string{"store", "async"} {
		b.Run("publish="+mode, func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(32)
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			b.RunParallel(func(pb *testing.PB) {
				c := *cb
				ctx := context.Background()
				for pb.Next() {
					c.ID = mode + "-" + strconv.FormatInt(n.Add(1), 10)
					if err := store[mode](ctx, &c); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
