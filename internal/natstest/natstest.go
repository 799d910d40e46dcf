// Package natstest runs real embedded NATS JetStream servers for tests,
// and bounds the waits of tests that use them (Context, WaitFor).
//
// Servers listen on 127.0.0.1 only, keep their store in t.TempDir() unless
// told otherwise, and are shut down in t.Cleanup. There is no fake here: acks,
// dedup and stream limits are the server's own.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readyTimeout bounds how long a test waits for a server to accept clients.
// Generous: the race detector on a 2-core machine is slow.
const readyTimeout = 10 * time.Second

// Option changes how RunServer configures a server.
type Option func(*server.Options)

// WithStoreDir keeps the JetStream store in dir instead of a fresh
// t.TempDir(). With WithPort it lets a test stop a server and start its
// successor on the same address and data, as a NATS restart.
func WithStoreDir(dir string) Option {
	return func(o *server.Options) { o.StoreDir = dir }
}

// WithPort listens on port instead of a random one (-1).
func WithPort(port int) Option {
	return func(o *server.Options) { o.Port = port }
}

// WithSyncAlways makes the server fsync every JetStream write, as the
// receiver's nats.sync_always does; for measuring its cost.
func WithSyncAlways() Option {
	return func(o *server.Options) { o.SyncAlways = true }
}

// RunServer starts a JetStream-enabled server on 127.0.0.1 and a random port,
// waits until it accepts clients, and shuts it down (and waits for that) in
// t.Cleanup. Shutting it down earlier in the test is fine.
func RunServer(t testing.TB, opts ...Option) *server.Server {
	t.Helper()
	o := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		NoLog:     true,
		NoSigs:    true,
	}
	for _, opt := range opts {
		opt(o)
	}
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	return start(t, o)
}

func start(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s, err := startReady(t, o, readyTimeout)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return s
}

// startReady starts a server and waits up to ready for its listeners. A
// server that does not get ready is shut down, and the error says so.
func startReady(t testing.TB, o *server.Options, ready time.Duration) (*server.Server, error) {
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	s.Start()
	// Registered before the readiness check so a server that never gets
	// ready is still stopped.
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(ready) {
		s.Shutdown()
		return nil, fmt.Errorf("server %s not ready for connections after %s", o.ServerName, ready)
	}
	return s, nil
}

// Port returns the client port s listens (or listened) on; it still answers
// after s is shut down, for starting a successor WithPort.
func Port(t testing.TB, s *server.Server) int {
	t.Helper()
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatalf("natstest: parse client url: %v", err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("natstest: client port: %v", err)
	}
	return p
}

// RunCluster starts n JetStream servers routed into one cluster on
// 127.0.0.1, and waits until the meta leader sees them all, so replicated
// streams can be placed at once. Each server is shut down in t.Cleanup.
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	return runCluster(t, n, reservePort, readyTimeout)
}

// clusterAttempts bounds RunCluster's tries. Routes must name every peer
// before any starts, so the cluster ports are picked up front: each is
// held by a listener until just before its server starts, but another
// process can still take it in between, and the server then never gets
// ready. A fresh set of ports makes that a retry instead of a failed test.
const clusterAttempts = 3

// reservePort holds a free port on 127.0.0.1 until the listener is closed.
func reservePort() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func runCluster(t testing.TB, n int, reserve func() (net.Listener, error), ready time.Duration) []*server.Server {
	t.Helper()
	var (
		servers []*server.Server
		errs    []error
	)
	for attempt := 1; servers == nil; attempt++ {
		var err error
		if servers, err = startCluster(t, n, reserve, ready); err != nil {
			errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
			if attempt == clusterAttempts {
				t.Fatalf("natstest: cluster of %d: %v", n, errors.Join(errs...))
				return nil // for a testing.TB whose Fatalf does not stop the goroutine
			}
		}
	}
	// Ready for placement: the meta leader sees every peer online with
	// JetStream and stats (else "no suitable peers for placement"), and each
	// peer is current with it.
	WaitFor(t, 30*time.Second, func() error {
		var leader *server.Server
		for _, s := range servers {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("server %s is not current with the meta leader", s.Name())
			}
			if s.JetStreamIsLeader() {
				leader = s
			}
		}
		if leader == nil {
			return errors.New("no JetStream meta leader yet")
		}
		if peers := leader.JetStreamClusterPeers(); len(peers) != n {
			return fmt.Errorf("meta leader sees %d of %d peers: %v", len(peers), n, peers)
		}
		return nil
	})
	return servers
}

// startCluster starts one attempt's servers, shutting down those it
// started if one does not get ready.
func startCluster(t testing.TB, n int, reserve func() (net.Listener, error), ready time.Duration) ([]*server.Server, error) {
	held := make([]net.Listener, n)
	defer func() {
		for _, l := range held {
			if l != nil {
				_ = l.Close()
			}
		}
	}()
	routes := make([]*url.URL, n)
	for i := range held {
		l, err := reserve()
		if err != nil {
			return nil, fmt.Errorf("pick cluster port: %w", err)
		}
		held[i] = l
		routes[i] = &url.URL{Scheme: "nats", Host: l.Addr().String()}
	}
	servers := make([]*server.Server, 0, n)
	for i, l := range held {
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close() // the server takes the port over now
		held[i] = nil
		s, err := startReady(t, &server.Options{
			ServerName: "S-" + strconv.Itoa(i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name: "natstest",
				Host: "127.0.0.1",
				Port: port,
			},
			Routes: routes,
		}, ready)
		if err != nil {
			for _, s := range servers {
				s.Shutdown()
			}
			return nil, fmt.Errorf("cluster port %d: %w", port, err)
		}
		servers = append(servers, s)
	}
	return servers, nil
}

// ClientURLs joins the client URLs of servers for nats.Connect.
func ClientURLs(servers ...*server.Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Connect connects to s over TCP and returns the connection and a JetStream
// context on it; the connection is closed in t.Cleanup.
//
// It reconnects forever, every 25ms, so a test that restarts a server on the
// same port sees the client come back quickly. opts are applied after these
// defaults.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return ConnectURL(t, s.ClientURL(), opts...)
}

// ConnectURL is Connect for a URL list such as ClientURLs returns.
func ConnectURL(t testing.TB, urls string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	all := append([]nats.Option{
		nats.Name("natstest"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(25 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
	}, opts...)
	nc, err := nats.Connect(urls, all...)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Timeout bounds the I/O of one step of a test (Context): long enough for a
// loaded machine, short enough that a hung call fails the test rather than
// the whole run.
const Timeout = 30 * time.Second

// Context returns a context that ends after Timeout, or once the test and
// its cleanups are done: the context of a test's calls to NATS or a
// simulator. Unlike t.Context it is still live in t.Cleanup functions,
// which close servers and simulators with it.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// WaitFor calls f every 10ms until it returns nil, and fails the test with
// f's last error if that has not happened within timeout. f should bound
// its own I/O (e.g. a context with a short timeout) so one slow attempt
// cannot outlast the deadline by much.
//
// Call it from the test goroutine only: it uses t.Fatalf.
func WaitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: condition not met after %s: %v", timeout, err)
			return // for a testing.TB whose Fatalf does not stop the goroutine
		}
		<-tick.C
	}
}

// Eventually is WaitFor for a condition without an error to tell: it fails
// the test with what it waited for.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("waiting for %s", what)
	})
}
