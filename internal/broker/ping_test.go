package broker_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// freezer is a TCP proxy on loopback that can stop passing bytes, both
// ways, while keeping its connections open: a link cut by a partition,
// which neither end sees closed.
type freezer struct {
	lis    net.Listener
	target string
	frozen atomic.Bool
	// stalled stops the proxy reading at all, so that a writer's socket
	// buffers fill and its writes block: a peer cut off while data was
	// on its way to it.
	stalled atomic.Bool
	mu      sync.Mutex
	conns   []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &freezer{lis: lis, target: target}
	t.Cleanup(f.close)
	go f.serve()
	return f
}

func (f *freezer) URL() string { return "nats://" + f.lis.Addr().String() }

func (f *freezer) serve() {
	for {
		c, err := f.lis.Accept()
		if err != nil {
			return
		}
		f.track(c)
		if f.frozen.Load() {
			continue // held open, never answered
		}
		up, err := net.Dial("tcp", f.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		f.track(up)
		go f.pipe(up, c)
		go f.pipe(c, up)
	}
}

// pipe copies src to dst until either closes, dropping what it reads
// while frozen.
func (f *freezer) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		for f.stalled.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		n, err := src.Read(buf)
		if n > 0 && !f.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) track(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = append(f.conns, c)
}

func (f *freezer) close() {
	f.stalled.Store(false) // or its pipes would wait on, closed
	_ = f.lis.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		_ = c.Close()
	}
}

// TestOpen_ConnOptions: the connection pings, reconnects forever and in
// random order, with the defaults when none are given.
func TestOpen_ConnOptions(t *testing.T) {
	srv := natstest.RunServer(t)
	log, _ := testLogger()
	b := mustOpen(t, broker.Options{URLs: []string{srv.ClientURL()}}, log)
	o := b.Conn().Opts
	assert.Equal(t, broker.DefaultPingInterval, o.PingInterval)
	assert.Equal(t, broker.DefaultMaxPingsOutstanding, o.MaxPingsOut)
	assert.True(t, o.AllowReconnect)
	assert.Equal(t, -1, o.MaxReconnect)
	assert.False(t, o.NoRandomize, "servers are tried in random order")
	assert.Positive(t, o.ReconnectWait)
	assert.Equal(t, 4*broker.DefaultPingInterval, o.FlusherTimeout)

	b = mustOpen(t, broker.Options{URLs: []string{srv.ClientURL()}, PingInterval: time.Second, MaxPingsOutstanding: 5}, log)
	assert.Equal(t, time.Second, b.Conn().Opts.PingInterval)
	assert.Equal(t, 5, b.Conn().Opts.MaxPingsOut)
	assert.Equal(t, 6*time.Second, b.Conn().Opts.FlusherTimeout, "a write may take as long as the pings allow")

	b = mustOpen(t, broker.Options{URLs: []string{srv.ClientURL()}, PingInterval: 100 * time.Millisecond, MaxPingsOutstanding: 1}, log)
	assert.Equal(t, 5*time.Second, b.Conn().Opts.FlusherTimeout, "but never less than 5 s")
	assert.True(t, b.Conn().Opts.ReconnectOnFlusherError)

	_, err := broker.Open(t.Context(), broker.Options{URLs: []string{srv.ClientURL()}, PingInterval: -time.Second}, log)
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
}

// TestOpen_FrozenLinkDetected: a receiver reaches one node of a cluster
// through a link that then stops passing bytes without closing (a
// partition). The pings notice within PingInterval x (MaxPingsOutstanding
// + 1), and the client reconnects to another node, which the cluster
// announced. Without pings (nats.go's 2 minutes x 2) the receiver would sit
// on the dead link for minutes.
func TestOpen_FrozenLinkDetected(t *testing.T) {
	srvs := natstest.RunCluster(t, 2)
	proxy := newFreezer(t, srvs[0].Addr().String())
	log, logs := testLogger()
	const (
		ping  = 200 * time.Millisecond
		pings = 2
	)
	b := mustOpen(t, broker.Options{
		URLs: []string{proxy.URL()}, PingInterval: ping, MaxPingsOutstanding: pings,
		ConnectTimeout: time.Second,
	}, log)
	require.NoError(t, b.Ready())
	require.Equal(t, proxy.URL(), b.Conn().ConnectedUrl())

	proxy.frozen.Store(true)
	// The bound: the pings' own (3 x 200ms), one reconnect attempt at the
	// frozen proxy (ConnectTimeout), and slack for a loaded machine. Far
	// below what nats.go's default pings allow.
	natstest.WaitFor(t, 10*time.Second, func() error {
		if err := b.Ready(); err != nil {
			return err
		}
		if u := b.Conn().ConnectedUrl(); u == proxy.URL() {
			return errors.New("still on the frozen link")
		}
		return nil
	})
	assert.Contains(t, logs.String(), "nats disconnected")
	assert.Contains(t, logs.String(), "stale connection")
}

// TestOpen_StalledWriteReconnects: the node stops reading while the
// receiver is writing to it (a partition with data in flight), so the
// receiver's writes block with its socket buffers full. The client still
// leaves for another node: the blocked write times out (FlusherTimeout,
// here its 5 s floor) and the client reconnects. With nats.go's
// one-minute write timeout, the blocked writer held the client's lock and
// the pings never ran. (The writes here are publish's own, at the write
// buffer's limit; ReconnectOnFlusherError, for the flusher's, is checked
// by TestOpen_ConnOptions.)
func TestOpen_StalledWriteReconnects(t *testing.T) {
	srvs := natstest.RunCluster(t, 2)
	proxy := newFreezer(t, srvs[0].Addr().String())
	log, logs := testLogger()
	b := mustOpen(t, broker.Options{
		URLs: []string{proxy.URL()}, PingInterval: 200 * time.Millisecond, MaxPingsOutstanding: 2,
		ConnectTimeout: time.Second,
	}, log)
	require.NoError(t, b.Ready())
	nc := b.Conn()
	require.Equal(t, proxy.URL(), nc.ConnectedUrl())

	proxy.stalled.Store(true)
	proxy.frozen.Store(true) // and nothing comes back either
	// Fill the socket's buffers: publish until the writes block, and on
	// while they fail, until the test ends.
	done := make(chan struct{})
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		data := make([]byte, 64<<10)
		for {
			select {
			case <-done:
				return
			default:
			}
			if nc.Publish("stall.test", data) != nil {
				time.Sleep(10 * time.Millisecond) // reconnecting: no need to fill its buffer
			}
		}
	}()
	defer func() {
		proxy.stalled.Store(false) // a writer still blocked gets going
		close(done)
		<-writer
	}()

	natstest.WaitFor(t, 20*time.Second, func() error {
		if u := nc.ConnectedUrl(); u == "" || u == proxy.URL() {
			return errors.New("still on the stalled link")
		}
		return nil
	})
	assert.Contains(t, logs.String(), "nats disconnected")
}
