package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
)

// testlog.Buffer is a log sink the client's callback goroutine can write to

func testLogger() (zerolog.Logger, *testlog.Buffer) {
	buf := &testlog.Buffer{}
	return zerolog.New(buf).Level(zerolog.DebugLevel), buf
}

// mustOpen opens a broker and closes it in cleanup.
func mustOpen(t *testing.T, opts broker.Options, log zerolog.Logger) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := broker.Open(ctx, opts, log)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, b.Close(ctx))
	})
	return b
}

// roundTrip checks the JetStream context stores and acks a message.
func roundTrip(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err)
	ack, err := js.Publish(ctx, "t.1", []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, "T", ack.Stream)
}

func TestOpen_Embedded(t *testing.T) {
	t.Run("InProcessOnly", func(t *testing.T) {
		log, logs := testLogger()
		b := mustOpen(t, broker.Options{StoreDir: t.TempDir()}, log)

		assert.True(t, b.Embedded())
		assert.NoError(t, b.Ready())
		assert.Empty(t, b.ClientURL(), "no TCP listener, no client URL")
		assert.Nil(t, broker.ServerOf(b).Addr(), "server has no TCP listener")
		assert.Equal(t, "wecom-receiver", b.Conn().Opts.Name)
		roundTrip(t, b.JetStream())

		assert.Contains(t, logs.String(), `"component":"nats-server"`, "server log goes to zerolog")
		assert.Contains(t, logs.String(), "Server is ready")
	})

	t.Run("Listen", func(t *testing.T) {
		log, logs := testLogger()
		creds := t.TempDir()
		b := mustOpen(t, broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Name: "test-receiver",
			CredentialsDir: creds, Roles: []broker.Role{{Name: "client"}}}, log)

		u := b.ClientURL()
		require.NotEmpty(t, u)
		assert.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, u)
		assert.NotEqual(t, "nats://127.0.0.1:0", u, "the picked port, not 0")
		assert.NotContains(t, logs.String(), "non-loopback")

		// A second, plain TCP client sees what the broker's connection publishes.
		other, _ := natstest.ConnectURL(t, u, seedOption(t, broker.SeedFile(creds, "client")))
		sub, err := other.SubscribeSync("hello")
		require.NoError(t, err)
		require.NoError(t, other.Flush())
		require.NoError(t, b.Conn().Publish("hello", []byte("world")))
		msg, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, "world", string(msg.Data))
		roundTrip(t, b.JetStream())
	})

	t.Run("StoreSurvivesReopen", func(t *testing.T) {
		dir := t.TempDir()
		log, _ := testLogger()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()

		b, err := broker.Open(ctx, broker.Options{StoreDir: dir, SyncAlways: true}, log)
		require.NoError(t, err)
		roundTrip(t, b.JetStream())
		require.NoError(t, b.Close(ctx))

		b = mustOpen(t, broker.Options{StoreDir: dir}, log)
		st, err := b.JetStream().Stream(ctx, "T")
		require.NoError(t, err)
		assert.Equal(t, uint64(1), st.CachedInfo().State.Msgs)
	})
}

func TestOpen_External(t *testing.T) {
	s := natstest.RunServer(t)
	log, _ := testLogger()
	b := mustOpen(t, broker.Options{URLs: []string{s.ClientURL()}}, log)

	assert.False(t, b.Embedded())
	assert.NoError(t, b.Ready())
	assert.Equal(t, s.ClientURL(), b.ClientURL())
	roundTrip(t, b.JetStream())
}

func TestOpen_ExternalRedactsUserInfo(t *testing.T) {
	s := natstest.RunServer(t)
	port := natstest.Port(t, s)

	t.Run("OK", func(t *testing.T) {
		// The test server has no auth, so it accepts any user and password.
		log, logs := testLogger()
		url := "nats://alice:s3cret-pw@127.0.0.1:" + strconv.Itoa(port)
		b := mustOpen(t, broker.Options{URLs: []string{url}}, log)
		assert.Equal(t, s.ClientURL(), b.ClientURL())
		assert.NotContains(t, logs.String(), "s3cret-pw")
		assert.NotContains(t, logs.String(), "alice")
	})

	t.Run("ErrConnect", func(t *testing.T) {
		free := freePort(t)
		log, logs := testLogger()
		url := "nats://tok3n-secret@127.0.0.1:" + strconv.Itoa(free)
		_, err := broker.Open(t.Context(), broker.Options{URLs: []string{url}, ConnectTimeout: time.Second}, log)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "tok3n-secret")
		assert.Contains(t, err.Error(), "127.0.0.1:"+strconv.Itoa(free))
		assert.NotContains(t, logs.String(), "tok3n-secret")
	})
}

func TestBroker_Ready(t *testing.T) {
	dir := t.TempDir()
	s := natstest.RunServer(t, natstest.WithStoreDir(dir))
	port := natstest.Port(t, s)
	log, logs := testLogger()
	b := mustOpen(t, broker.Options{URLs: []string{s.ClientURL()}}, log)
	require.NoError(t, b.Ready())

	s.Shutdown()
	s.WaitForShutdown()
	natstest.WaitFor(t, 10*time.Second, func() error {
		if err := b.Ready(); !errors.Is(err, broker.ErrNotConnected) {
			return fmt.Errorf("Ready() = %v, want ErrNotConnected", err)
		}
		return nil
	})
	assert.Empty(t, b.ClientURL(), "no URL while disconnected")
	waitLog(t, logs, "nats disconnected")

	natstest.RunServer(t, natstest.WithStoreDir(dir), natstest.WithPort(port))
	natstest.WaitFor(t, 10*time.Second, b.Ready)
	waitLog(t, logs, "nats reconnected")
	roundTrip(t, b.JetStream())
}

func TestBroker_Close(t *testing.T) {
	t.Run("EmbeddedIdempotent", func(t *testing.T) {
		log, _ := testLogger()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b, err := broker.Open(ctx, broker.Options{StoreDir: t.TempDir()}, log)
		require.NoError(t, err)

		require.NoError(t, b.Close(ctx))
		assert.NoError(t, b.Close(ctx))
		assert.True(t, b.Conn().IsClosed())
		assert.False(t, broker.ServerOf(b).Running(), "embedded server shut down")
		assert.ErrorIs(t, b.Ready(), broker.ErrNotConnected)
	})

	t.Run("ExternalIdempotent", func(t *testing.T) {
		s := natstest.RunServer(t)
		log, logs := testLogger()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b, err := broker.Open(ctx, broker.Options{URLs: []string{s.ClientURL()}}, log)
		require.NoError(t, err)

		// A publish in flight when Close starts is flushed by the drain.
		other, _ := natstest.Connect(t, s)
		sub, err := other.SubscribeSync("last")
		require.NoError(t, err)
		require.NoError(t, other.Flush())
		require.NoError(t, b.Conn().Publish("last", []byte("words")))

		require.NoError(t, b.Close(ctx))
		assert.NoError(t, b.Close(ctx))
		assert.True(t, b.Conn().IsClosed())
		assert.True(t, s.Running(), "an external server is left alone")
		_, err = sub.NextMsg(5 * time.Second)
		assert.NoError(t, err)
		assert.NotContains(t, logs.String(), `"level":"warn"`, "our own close is no outage")
	})

	t.Run("WhileDisconnected", func(t *testing.T) {
		s := natstest.RunServer(t)
		log, _ := testLogger()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b, err := broker.Open(ctx, broker.Options{URLs: []string{s.ClientURL()}}, log)
		require.NoError(t, err)
		s.Shutdown()
		s.WaitForShutdown()
		natstest.WaitFor(t, 10*time.Second, func() error {
			if b.Ready() == nil {
				return errors.New("still connected")
			}
			return nil
		})

		assert.NoError(t, b.Close(ctx))
		assert.True(t, b.Conn().IsClosed())
	})
}

func TestOpen_Errors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	require.NoError(t, os.WriteFile(file, nil, 0o600))

	tests := []struct {
		name    string
		opts    broker.Options
		invalid bool   // wraps ErrInvalidOption
		msg     string // in the error
	}{
		{"ErrStoreDirRequired", broker.Options{}, true, "store dir"},
		{"ErrListenNoPort", broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1"}, true, "listen"},
		{"ErrListenBadPort", broker.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:http"}, true, "bad port"},
		{"ErrCertWithoutKey", broker.Options{URLs: []string{"nats://127.0.0.1:4222"}, TLSCertFile: "c.pem"}, true, "cert and key"},
		// The server's own start-up failure ends Open at once, with its reason.
		{"ErrStoreDirIsFile", broker.Options{StoreDir: file}, false, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, _ := testLogger()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			b, err := broker.Open(ctx, tt.opts, log)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.Equal(t, tt.invalid, errors.Is(err, broker.ErrInvalidOption), "err: %v", err)
			assert.ErrorContains(t, err, tt.msg)
		})
	}

	t.Run("ErrContextDone", func(t *testing.T) {
		log, _ := testLogger()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := broker.Open(ctx, broker.Options{StoreDir: t.TempDir()}, log)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:pw@host:4222", "nats://host:4222"},
		{"tls://tok3n@host:4222", "tls://host:4222"},
		{"alice:pw@host:4222", "nats://host:4222"},
		{"host:4222", "nats://host:4222"},
		{"nats://a:pw@host:4222/%zz", "(unparseable url)"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, broker.RedactURL(tt.in))
		})
	}
}

// waitLog waits for the client's callback goroutine, which runs the
// connection handlers after the state has changed, to log msg.
func waitLog(t *testing.T, logs *testlog.Buffer, msg string) {
	t.Helper()
	natstest.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), msg) {
			return fmt.Errorf("no %q in log", msg)
		}
		return nil
	})
}

// freePort returns a loopback port nothing listens on (right now).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}
