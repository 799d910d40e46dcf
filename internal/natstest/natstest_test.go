package natstest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestRunServer(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		s := natstest.RunServer(t)
		assert.True(t, s.JetStreamEnabled())
		nc, js := natstest.Connect(t, s)
		assert.True(t, nc.IsConnected())

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
		require.NoError(t, err)
		ack, err := js.Publish(ctx, "t.1", []byte("x"))
		require.NoError(t, err)
		assert.Equal(t, "T", ack.Stream)
	})

	t.Run("RestartSamePortAndStore", func(t *testing.T) {
		dir := t.TempDir()
		s := natstest.RunServer(t, natstest.WithStoreDir(dir))
		port := natstest.Port(t, s)
		nc, js := natstest.Connect(t, s)

		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
		require.NoError(t, err)
		_, err = js.Publish(ctx, "t.1", []byte("x"))
		require.NoError(t, err)

		s.Shutdown()
		s.WaitForShutdown()
		natstest.WaitFor(t, 5*time.Second, func() error {
			if nc.IsConnected() {
				return errors.New("client still connected")
			}
			return nil
		})
		assert.Equal(t, port, natstest.Port(t, s), "port is still known after shutdown")

		s2 := natstest.RunServer(t, natstest.WithStoreDir(dir), natstest.WithPort(port))
		assert.Equal(t, port, natstest.Port(t, s2))
		natstest.WaitFor(t, 5*time.Second, func() error {
			if !nc.IsConnected() {
				return fmt.Errorf("client %s", nc.Status())
			}
			return nil
		})
		st, err := js.Stream(ctx, "T")
		require.NoError(t, err)
		assert.Equal(t, uint64(1), st.CachedInfo().State.Msgs, "stream survives the restart")
	})
}

func TestRunServer_ListensOnLoopbackOnly(t *testing.T) {
	s := natstest.RunServer(t)
	addr, ok := s.Addr().(*net.TCPAddr)
	require.True(t, ok)
	assert.True(t, addr.IP.IsLoopback(), "listens on %s", addr)
}

func TestRunCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	servers := natstest.RunCluster(t, 3)
	_, js := natstest.ConnectURL(t, natstest.ClientURLs(servers...))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
	require.NoError(t, err)
	info := st.CachedInfo()
	assert.Equal(t, 3, info.Config.Replicas)
}

// TestRunCluster_PortTaken: a cluster port that another socket takes
// between the pick and the server's start costs an attempt, not the test.
func TestRunCluster_PortTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3-node clusters")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = taken.Close() })
	picks := 0
	reserve := func() (net.Listener, error) {
		picks++
		if picks == 2 {
			return keptOpen{taken}, nil // the second server's port is not free
		}
		return net.Listen("tcp", "127.0.0.1:0")
	}
	servers := natstest.RunClusterWith(t, 3, reserve, time.Second)
	require.Len(t, servers, 3)
	assert.Equal(t, 6, picks, "a second attempt picked a fresh set of ports")
	for _, s := range servers {
		assert.NotEqual(t, taken.Addr().String(), s.ClusterAddr().String())
	}
	_, js := natstest.ConnectURL(t, natstest.ClientURLs(servers...))
	_, err = js.CreateStream(natstest.Context(t), jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
	require.NoError(t, err)
}

// keptOpen is a listener whose Close leaves it open: the port stays taken.
type keptOpen struct{ net.Listener }

func (keptOpen) Close() error { return nil }

func TestConnect_OptionsOverrideDefaults(t *testing.T) {
	s := natstest.RunServer(t)
	nc, _ := natstest.Connect(t, s, nats.Name("custom"))
	assert.Equal(t, "custom", nc.Opts.Name)
	assert.Equal(t, -1, nc.Opts.MaxReconnect)
}

func TestWaitFor(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		n := 0
		natstest.WaitFor(t, 5*time.Second, func() error {
			n++
			if n < 3 {
				return errors.New("not yet")
			}
			return nil
		})
		assert.Equal(t, 3, n)
	})

	t.Run("TimeoutReportsLastError", func(t *testing.T) {
		rec := &fatalRecorder{TB: t}
		n := 0
		natstest.WaitFor(rec, 50*time.Millisecond, func() error {
			n++
			return errors.New("attempt " + strconv.Itoa(n))
		})
		require.True(t, rec.failed)
		assert.Contains(t, rec.msg, "attempt "+strconv.Itoa(n))
		assert.Greater(t, n, 1, "polls more than once")
	})
}

func TestEventually(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		n := 0
		natstest.Eventually(t, 5*time.Second, "three calls", func() bool { n++; return n == 3 })
		assert.Equal(t, 3, n)
	})
	t.Run("TimeoutSaysWhat", func(t *testing.T) {
		rec := &fatalRecorder{TB: t}
		natstest.Eventually(rec, 30*time.Millisecond, "the moon", func() bool { return false })
		require.True(t, rec.failed)
		assert.Contains(t, rec.msg, "waiting for the moon")
	})
}

func TestContext(t *testing.T) {
	var ctx context.Context
	t.Run("Test", func(t *testing.T) {
		ctx = natstest.Context(t)
		deadline, ok := ctx.Deadline()
		require.True(t, ok)
		assert.WithinDuration(t, time.Now().Add(natstest.Timeout), deadline, 5*time.Second)
		t.Cleanup(func() { assert.NoError(t, ctx.Err(), "live in the test's cleanups") })
	})
	assert.ErrorIs(t, ctx.Err(), context.Canceled, "ended with the test")
}

// fatalRecorder records Fatalf instead of stopping the test, so WaitFor's
// failure path can be checked.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
}
