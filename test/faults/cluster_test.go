//go:build faults

package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// cluster is a three-node JetStream cluster of nats-server processes on
// loopback, each on its own store.
type cluster struct {
	w      where // where the test's connections to the nodes are made
	nodes  []*natsServer
	routes []string
}

// nodeConf writes node i's configuration. Ports "-1" let the server pick;
// a restarted node is given the ports it had, so that the receivers' URLs
// and the other nodes' routes stay valid.
func (c *cluster) writeConf(t testing.TB, i int, clientPort, clusterPort string, routes []string) {
	t.Helper()
	n := c.nodes[i]
	var quoted []string
	for _, r := range routes {
		quoted = append(quoted, fmt.Sprintf("%q", r))
	}
	writeFile(t, n.conf, fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%s
jetstream { store_dir: %q }
cluster {
  name: faults
  listen: 127.0.0.1:%s
  routes: [%s]
}
`, n.name, clientPort, filepath.Join(n.dir, "store"), clusterPort, strings.Join(quoted, ", ")))
}

// startCluster starts three nodes routed to each other and waits until
// JetStream answers through every node.
func startCluster(t testing.TB, dir string) *cluster {
	t.Helper()
	c := &cluster{}
	// JetStream refuses to start a clustered node without configured
	// routes, so the route ports must be known before any node starts: the
	// one place these tests pick ports themselves. The three listeners stay
	// open until all three are picked: closed one by one, the kernel may
	// hand the same port out twice (a 20-round run once gave two nodes
	// one route port). A port taken by someone else between the close and
	// a node's start still shows as a node failing to start, not as a
	// wrong result.
	var routes []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		routes = append(routes, "nats-route://"+ln.Addr().String())
		n := &natsServer{name: fmt.Sprintf("nats-%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("nats-%d", i+1))}
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		n.conf = filepath.Join(n.dir, "nats.conf")
		c.nodes = append(c.nodes, n)
	}
	c.routes = routes
	for _, ln := range lns {
		_ = ln.Close()
	}
	lns = nil
	for i, n := range c.nodes {
		c.writeConf(t, i, "-1", port(routes[i]), routes)
		n.start(t)
	}
	c.awaitJetStream(t)
	return c
}

func (c *cluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.client)
	}
	return strings.Join(u, ",")
}

// awaitJetStream waits until every node answers a JetStream request, which
// needs a meta leader, and until a stream of three replicas can be placed,
// which needs every node in the meta group: a receiver started earlier
// fails with "no suitable peers for placement".
func (c *cluster) awaitJetStream(t testing.TB) {
	t.Helper()
	for _, n := range c.nodes {
		r := connect(t, n.client, c.w.natsOptions()...)
		err := waitFor(2*time.Minute, 250*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := r.js.AccountInfo(ctx)
			return err
		})
		r.nc.Close()
		if err != nil {
			t.Fatalf("%s: JetStream not available: %v", n.name, err)
		}
	}
	r := connect(t, c.urls(), c.w.natsOptions()...)
	defer r.nc.Close()
	err := waitFor(2*time.Minute, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "FAULTS_PROBE",
			Subjects: []string{"faults.probe"}, Replicas: 3, Storage: jetstream.MemoryStorage}); err != nil {
			return err
		}
		return r.js.DeleteStream(ctx, "FAULTS_PROBE")
	})
	if err != nil {
		t.Fatalf("cluster cannot place three replicas: %v", err)
	}
}

// restart starts node i again on its ports and store.
func (c *cluster) restart(t testing.TB, i int) {
	t.Helper()
	c.writeConf(t, i, port(c.nodes[i].client), port(c.routes[i]), c.routes)
	c.nodes[i].start(t)
}

// leader returns the index of the node leading stream.
func (c *cluster) leader(r *streamReader, stream string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, stream)
	if err != nil {
		return -1, err
	}
	ci := s.CachedInfo().Cluster
	if ci == nil || ci.Leader == "" {
		return -1, fmt.Errorf("stream %s has no leader", stream)
	}
	for i, n := range c.nodes {
		if n.name == ci.Leader {
			return i, nil
		}
	}
	return -1, fmt.Errorf("stream %s: leader %q is not a node of the cluster", stream, ci.Leader)
}

func (c *cluster) procs() []*proc {
	var p []*proc
	for _, n := range c.nodes {
		p = append(p, n.p)
	}
	return p
}

// TestClusterLeaderKill: a three-node cluster, replicas 3, two receivers;
// each round kills with -9 the node leading WECOM_CALLBACKS (odd rounds)
// or WECOM_HITS (even rounds), and restarts it.
//
// Issue 15 finding 4: while WECOM_CALLBACKS elects a new leader a
// callback's write used to give up after nats.go's 2 x 250 ms, so WeCom's
// deliveries, a second apart, ran out during one election. The write now
// tries until ack_timeout, so no callback may need the last delivery, nor
// go without success. The arithmetic behind that: nats-server's raft waits
// 4 to 9 s without a leader before electing, and a receiver on the killed
// node reconnects meanwhile, so a write can wait about 10 s. The receivers
// here use ack_timeout 4 s, so the first three deliveries cover 0-4, 5-9
// and 10-14 s. With the default 3 s they cover 0-3, 4-7 and 8-11 s, and in
// two of four 20-round runs one or two of some 150 callbacks needed the
// fourth delivery (still answered success and stored). The build without
// the fix fails either way: its writes give up after 0.5 s. The simulator
// coalesces hits into a callback every second here (-speed 5), so that
// callbacks land inside each election.
func TestClusterLeaderKill(t *testing.T) {
	n := rounds(t)
	dir := t.TempDir()
	cl := startCluster(t, dir)
	c := newCreds()
	lb := newBalancer(t, where{})
	s := startSimSpeed(t, where{}, dir, c, lb.srv.URL+"/callback/"+appName, rate, 5)
	rs := []*receiver{
		newReceiver("receiver-a", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "ra"), natsURL: cl.urls(), replicas: 3, ackTimeout: 4 * time.Second}, c, s.url)),
		newReceiver("receiver-b", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "rb"), natsURL: cl.urls(), replicas: 3, ackTimeout: 4 * time.Second}, c, s.url)),
	}
	// One after the other: a simultaneous start is TestClusterSimultaneousStart.
	for _, r := range rs {
		r.start(t)
	}
	lb.set(rs[0].http, rs[1].http)
	reader := connect(t, cl.urls())

	for i := range n {
		runFor(t, randDur(2*time.Second, 6*time.Second), append(cl.procs(), rs[0].p, rs[1].p, s.p)...)
		stream := "WECOM_CALLBACKS"
		if i%2 == 1 {
			stream = "WECOM_HITS"
		}
		var li int
		err := waitFor(time.Minute, 500*time.Millisecond, func() error {
			var err error
			li, err = cl.leader(reader, stream)
			return err
		})
		if err != nil {
			t.Fatalf("round %d: %v", i+1, err)
		}
		cl.nodes[li].p.kill()
		t.Logf("round %d: killed %s, the leader of %s", i+1, cl.nodes[li].name, stream)
		runFor(t, 3*time.Second, rs[0].p, rs[1].p, s.p)
		cl.restart(t, li)
	}
	cl.awaitJetStream(t)
	runFor(t, 3*time.Second, append(cl.procs(), rs[0].p, rs[1].p, s.p)...)
	tl := settle(t, "cluster leader kill -9", n, s, reader, nil)
	check(t, tl)
	if tl.lastTry > 0 || tl.gaveUp > 0 {
		t.Errorf("issue 15 finding 4: through leader elections %d callbacks were answered success only on WeCom's last delivery and %d on none (want 0 and 0): a callback write gives up before ack_timeout", tl.lastTry, tl.gaveUp)
	}
}

// TestClusterSimultaneousStart: two receivers started at the same moment
// against a fresh cluster must both come up and stay up (issue 15, finding
// 2: both used to exit while setting up streams and buckets).
func TestClusterSimultaneousStart(t *testing.T) {
	n := rounds(t)
	var failures []string
	for i := range n {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("try-%d", i+1))
		cl := startCluster(t, dir)
		c := newCreds()
		lb := newBalancer(t, where{})
		s := startSim(t, where{}, dir, c, lb.srv.URL+"/callback/"+appName, rate)
		rs := []*receiver{
			newReceiver("receiver-a", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "ra"), natsURL: cl.urls(), replicas: 3}, c, s.url)),
			newReceiver("receiver-b", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "rb"), natsURL: cl.urls(), replicas: 3}, c, s.url)),
		}
		for _, r := range rs {
			r.launch(t)
		}
		var errs []string
		for _, r := range rs {
			if err := r.awaitStarted(2 * time.Minute); err != nil {
				errs = append(errs, firstLines(err.Error(), 12))
			}
		}
		if len(errs) > 0 {
			failures = append(failures, fmt.Sprintf("try %d:\n%s", i+1, strings.Join(errs, "\n")))
		}
		for _, r := range rs {
			r.p.kill()
		}
		s.p.kill()
		for _, nd := range cl.nodes {
			nd.p.kill()
		}
	}
	results.mu.Lock()
	results.rows = append(results.rows, row{scenario: fmt.Sprintf("simultaneous start (%d of %d failed)", len(failures), n), rounds: n})
	results.mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("issue 15 finding 2: %d of %d simultaneous starts failed:\n%s", len(failures), n, strings.Join(failures, "\n"))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
