package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

func ensureStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: "ENSURE", Description: "ensure test", Subjects: []string{"ensure.>"},
		Storage: jetstream.FileStorage, Discard: jetstream.DiscardNew,
		MaxAge: time.Hour, MaxBytes: 1 << 20, MaxMsgSize: -1, Duplicates: time.Minute, Replicas: 3,
	}
}

func ensureKVConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: "ensure_kv", Description: "ensure test", TTL: 30 * time.Second,
		Storage: jetstream.FileStorage, Replicas: 3, MaxBytes: 1 << 20,
	}
}

// TestEnsure_ReplicasTogether: four replicas, each on its own connection
// to one of three nodes, set up the same stream and bucket at the same
// moment on a fresh cluster (nats.go's CreateOrUpdateStream times out for
// every one of them here). All succeed, and the stream and bucket exist
// once, with the config asked for.
func TestEnsure_ReplicasTogether(t *testing.T) {
	srvs := natstest.RunCluster(t, 3)
	const replicas = 4
	start := make(chan struct{})
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		_, js := natstest.Connect(t, srvs[i%len(srvs)])
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			<-start
			if _, err := broker.EnsureStream(ctx, js, ensureStreamConfig()); err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = broker.EnsureKeyValue(ctx, js, ensureKVConfig())
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "replica %d", i)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, srvs[0])
	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	assert.ElementsMatch(t, []string{"ENSURE", "KV_ensure_kv"}, names)
	s, err := js.Stream(ctx, "ENSURE")
	require.NoError(t, err)
	got := s.CachedInfo().Config
	assert.Equal(t, 3, got.Replicas)
	assert.Equal(t, int64(1<<20), got.MaxBytes)
	assert.Equal(t, jetstream.DiscardNew, got.Discard)
	kv, err := js.KeyValue(ctx, "ensure_kv")
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, st.TTL())
	assert.Equal(t, 3, st.Config().Replicas)
}

// TestEnsureStream_UpdatesOlderConfig: a stream made by an older release
// (smaller limits) is updated in place, its messages kept; the same config
// again changes nothing.
func TestEnsureStream_UpdatesOlderConfig(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	old := ensureStreamConfig()
	old.Replicas, old.MaxAge, old.MaxBytes = 1, 10*time.Minute, 1<<19
	_, err := js.CreateStream(ctx, old)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "ensure.a", []byte("kept"))
	require.NoError(t, err)

	want := ensureStreamConfig()
	want.Replicas = 1
	log := &testlog.Buffer{}
	lctx := zerolog.New(log).WithContext(ctx)
	s, err := broker.EnsureStream(lctx, js, want)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, info.Config.MaxAge)
	assert.Equal(t, int64(1<<20), info.Config.MaxBytes)
	assert.Equal(t, uint64(1), info.State.Msgs, "the update keeps the stream's messages")
	assert.Contains(t, log.String(), "updating stream config")
	assert.Contains(t, log.String(), "max_bytes")

	again := &testlog.Buffer{}
	_, err = broker.EnsureStream(zerolog.New(again).WithContext(ctx), js, want)
	require.NoError(t, err)
	assert.NotContains(t, again.String(), "updating", "an unchanged config is not updated")
}

// TestEnsureKeyValue_UpdatesOlderConfig: a bucket with an older TTL gets the
// new one and keeps its keys.
func TestEnsureKeyValue_UpdatesOlderConfig(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	old := ensureKVConfig()
	old.Replicas, old.TTL = 1, time.Minute
	kv, err := js.CreateKeyValue(ctx, old)
	require.NoError(t, err)
	_, err = kv.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)

	want := ensureKVConfig()
	want.Replicas = 1
	kv, err = broker.EnsureKeyValue(ctx, js, want)
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, st.TTL())
	e, err := kv.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(e.Value()))

	again := &testlog.Buffer{}
	_, err = broker.EnsureKeyValue(zerolog.New(again).WithContext(ctx), js, want)
	require.NoError(t, err)
	assert.NotContains(t, again.String(), "updating", "an unchanged config is not updated")
}

// TestEnsureStream_WaitsForJetStream: a server whose JetStream comes up a
// second after the first attempt (as on a cluster still forming) gets its
// stream; one whose JetStream never comes fails at ctx's deadline, not
// before, with the last error.
func TestEnsureStream_WaitsForJetStream(t *testing.T) {
	start := func(t *testing.T) *server.Server {
		srv, err := server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		})
		require.NoError(t, err)
		srv.Start()
		t.Cleanup(srv.Shutdown)
		require.True(t, srv.ReadyForConnections(5*time.Second))
		return srv
	}
	cfg := ensureStreamConfig()
	cfg.Replicas = 1

	t.Run("OK", func(t *testing.T) {
		srv := start(t)
		_, js := natstest.Connect(t, srv)
		go func() {
			time.Sleep(time.Second)
			_ = srv.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()})
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		_, err := broker.EnsureStream(ctx, js, cfg)
		require.NoError(t, err)
	})
	t.Run("ErrDeadline", func(t *testing.T) {
		srv := start(t)
		_, js := natstest.Connect(t, srv)
		const budget = 1500 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), budget)
		defer cancel()
		began := time.Now()
		_, err := broker.EnsureStream(ctx, js, cfg)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorIs(t, err, nats.ErrNoResponders, "the last real error is kept")
		assert.GreaterOrEqual(t, time.Since(began), budget-50*time.Millisecond, "gave up before the deadline")
	})
}

// TestEnsureStream_ErrPermanent: a config the server refuses fails at
// once, without retries.
func TestEnsureStream_ErrPermanent(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cfg := ensureStreamConfig() // replicas 3 on a single server
	_, err := broker.EnsureStream(ctx, js, cfg)
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.DeadlineExceeded), "not retried until the deadline: %v", err)
}

// TestEnsureBatchedStream: the stream takes fast batches when asked to and
// says so; asked without, it reports false and the setting is off.
func TestEnsureBatchedStream(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cfg := ensureStreamConfig()
	cfg.Replicas = 1
	cfg.AllowBatchPublish = true
	s, batched, err := broker.EnsureBatchedStream(ctx, js, cfg)
	require.NoError(t, err)
	assert.True(t, batched)
	assert.True(t, s.CachedInfo().Config.AllowBatchPublish)

	cfg.AllowBatchPublish = false
	s, batched, err = broker.EnsureBatchedStream(ctx, js, cfg)
	require.NoError(t, err)
	assert.False(t, batched)
	assert.False(t, s.CachedInfo().Config.AllowBatchPublish, "the setting is turned off again")
}

// TestRefusedBatchSetting: the answer nats-server 2.12 and 2.13 give a
// stream config with allow_batched (strict mode's unknown field; its text
// built as 2.15.3's unmarshalRequest and NewJSInvalidJSONError build it),
// and nothing else, makes EnsureBatchedStream retry without the setting.
func TestRefusedBatchSetting(t *testing.T) {
	refused := &jetstream.APIError{Code: 400, ErrorCode: 10025,
		Description: `invalid JSON: json: unknown field "allow_batched"`}
	assert.True(t, broker.RefusedBatchSetting(fmt.Errorf("set up stream X: %w", refused)))
	for _, err := range []error{
		nil,
		errors.New(`unknown field "allow_batched"`),
		&jetstream.APIError{Code: 400, ErrorCode: 10025, Description: `invalid JSON: json: unknown field "metadata"`},
		&jetstream.APIError{Code: 500, ErrorCode: 10049, Description: "stream configuration for allow_batched is invalid"},
	} {
		assert.False(t, broker.RefusedBatchSetting(err), "%v", err)
	}
}
