//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// link is a TCP proxy on loopback that can be cut: while cut it accepts and
// reads but forwards nothing, and closes nothing, which is what a cut cable
// looks like to both ends (no FIN, no RST, only silence). Healed, it
// forwards what it held. It stands in for network namespaces where the
// machine has none to give (partitionLinks): it needs no privileges and
// no address but 127.0.0.1.
type link struct {
	name   string
	ln     net.Listener
	mu     sync.Mutex
	target string
	cut    bool
	closed bool
	conns  []net.Conn
	active int
}

func newLink(t testing.TB, name string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{name: name, ln: ln}
	go l.accept()
	t.Cleanup(l.close)
	return l
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) setTarget(addr string) {
	l.mu.Lock()
	l.target = addr
	l.mu.Unlock()
}

func (l *link) setCut(cut bool) {
	l.mu.Lock()
	l.cut = cut
	l.mu.Unlock()
}

// connections is how many proxied connections are open.
func (l *link) connections() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	_ = l.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (l *link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return false
	}
	l.conns = append(l.conns, c)
	return true
}

// wait blocks while the link is cut or has no target; false once closed.
func (l *link) wait() (string, bool) {
	for {
		l.mu.Lock()
		target, cut, closed := l.target, l.cut, l.closed
		l.mu.Unlock()
		if closed {
			return "", false
		}
		if !cut && target != "" {
			return target, true
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *link) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		go l.handle(c)
	}
}

func (l *link) handle(c net.Conn) {
	if !l.track(c) {
		return
	}
	target, ok := l.wait()
	if !ok {
		return
	}
	d, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !l.track(d) {
		_ = c.Close()
		return
	}
	l.mu.Lock()
	l.active++
	l.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pipe(c, d) }()
	go func() { defer wg.Done(); l.pipe(d, c) }()
	wg.Wait()
	l.mu.Lock()
	l.active--
	l.mu.Unlock()
}

func (l *link) pipe(src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, ok := l.wait(); !ok {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// EOF, a reset or our own close: close the other side too.
			return
		}
	}
}

// partition is what the partition scenario needs of the network under a
// three-node cluster, whichever way it is built.
type partition struct {
	kind string // for the log and the table
	w    where  // where the simulator, receivers, balancer and reader run
	cl   *cluster
	urls string // the receivers' nats.url
	// conns is how many receiver connections node k has.
	conns func(k int) (int, error)
	// cut cuts (true) or heals (false) every link of node k.
	cut func(k int, cut bool) error
}

// TestClusterPartition: a three-node cluster, replicas 3, two receivers.
// Each round cuts every link of one node, a node that a receiver is
// connected to, for 20 s, then heals it. Nothing may be lost; and (issue 15
// finding 3) the receiver on the cut node moves to a healthy node instead
// of answering 503 until the heal.
//
// The netns subtest puts each node in a network namespace of its own,
// joined to the others by veth pairs, and takes a node's link down; it
// needs root and the ip command. The links subtest runs the nodes on
// loopback with every connection through a TCP proxy of the test that can
// be cut; it needs nothing, and runs where netns cannot (or when
// FAULTS_PARTITION is links or both).
func TestClusterPartition(t *testing.T) {
	mode := os.Getenv("FAULTS_PARTITION")
	switch mode {
	case "", "netns", "links", "both":
	default:
		t.Fatalf("FAULTS_PARTITION=%q: want netns, links, both or nothing", mode)
	}
	netnsRan := false
	t.Run("netns", func(t *testing.T) {
		if mode == "links" {
			t.Skip("FAULTS_PARTITION=links")
		}
		dir := t.TempDir()
		lab, err := newNetlab(t, 3)
		if err != nil {
			t.Skipf("no network namespace partition: %v", err)
		}
		netnsRan = true
		runPartition(t, dir, partitionNetns(t, dir, lab))
	})
	t.Run("links", func(t *testing.T) {
		if netnsRan && mode != "links" && mode != "both" {
			t.Skip("the netns partition ran; FAULTS_PARTITION=links or both runs this one")
		}
		if mode == "netns" {
			t.Skip("FAULTS_PARTITION=netns")
		}
		dir := t.TempDir()
		runPartition(t, dir, partitionLinks(t, dir))
	})
}

// partitionNetns starts the cluster in lab: node k in its own namespace at
// 10.77.0.k, everything else in the hub.
func partitionNetns(t *testing.T, dir string, lab *netlab) partition {
	t.Helper()
	hub := where{ns: lab.hub}
	cl := &cluster{w: hub}
	for k := range lab.nodes {
		nd := &natsServer{w: where{ns: lab.nodes[k]}, name: fmt.Sprintf("nats-%d", k+1), dir: filepath.Join(dir, fmt.Sprintf("nats-%d", k+1))}
		if err := os.MkdirAll(nd.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		nd.conf = filepath.Join(nd.dir, "nats.conf")
		var routes []string
		for j := range lab.nodes {
			if j != k {
				routes = append(routes, fmt.Sprintf("%q", "nats-route://"+labNodeIP(j)+":6222"))
			}
		}
		// Each node has its namespace to itself, so fixed ports do.
		writeFile(t, nd.conf, fmt.Sprintf(`server_name: %s
listen: %s:4222
http: %s:8222
jetstream { store_dir: %q }
cluster {
  name: faults
  listen: %s:6222
  routes: [%s]
}
`, nd.name, labNodeIP(k), labNodeIP(k), filepath.Join(nd.dir, "store"), labNodeIP(k), strings.Join(routes, ", ")))
		cl.nodes = append(cl.nodes, nd)
	}
	for _, nd := range cl.nodes {
		nd.start(t)
	}
	cl.awaitJetStream(t)
	return partition{
		kind: "network namespaces",
		w:    hub,
		cl:   cl,
		urls: cl.urls(),
		conns: func(k int) (int, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return lab.clientConns(ctx, k)
		},
		cut: func(k int, cut bool) error { return lab.setLink(k, !cut) },
	}
}

// partitionLinks starts the cluster on loopback with every connection, a
// receiver's to a node and a node's route to another, through a link.
func partitionLinks(t *testing.T, dir string) partition {
	t.Helper()
	const nodes = 3
	client := make([]*link, nodes)
	route := make([][]*link, nodes) // route[i][j]: node i's route to node j
	for i := range nodes {
		client[i] = newLink(t, fmt.Sprintf("client-%d", i+1))
		route[i] = make([]*link, nodes)
		for j := range nodes {
			if i != j {
				route[i][j] = newLink(t, fmt.Sprintf("route-%d-%d", i+1, j+1))
			}
		}
	}
	cl := &cluster{}
	for i := range nodes {
		nd := &natsServer{name: fmt.Sprintf("nats-%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("nats-%d", i+1))}
		if err := os.MkdirAll(nd.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		nd.conf = filepath.Join(nd.dir, "nats.conf")
		var routes []string
		for j := range nodes {
			if i != j {
				routes = append(routes, fmt.Sprintf("%q", "nats-route://"+route[i][j].addr()))
			}
		}
		// no_advertise keeps the nodes from telling clients their direct
		// addresses, which would bypass the links.
		writeFile(t, nd.conf, fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:-1
jetstream { store_dir: %q }
cluster {
  name: faults
  listen: 127.0.0.1:-1
  no_advertise: true
  routes: [%s]
}
`, nd.name, filepath.Join(nd.dir, "store"), strings.Join(routes, ", ")))
		cl.nodes = append(cl.nodes, nd)
	}
	for k, nd := range cl.nodes {
		nd.start(t)
		client[k].setTarget(strings.TrimPrefix(nd.client, "nats://"))
		for i := range nodes {
			if i != k {
				route[i][k].setTarget(strings.TrimPrefix(nd.cluster, "nats://"))
			}
		}
	}
	cl.awaitJetStream(t)
	var urls []string
	for _, l := range client {
		urls = append(urls, "nats://"+l.addr())
	}
	return partition{
		kind:  "TCP links",
		cl:    cl,
		urls:  strings.Join(urls, ","),
		conns: func(k int) (int, error) { return client[k].connections(), nil },
		cut: func(k int, v bool) error {
			client[k].setCut(v)
			for j := range nodes {
				if j != k {
					route[k][j].setCut(v)
					route[j][k].setCut(v)
				}
			}
			return nil
		},
	}
}

// runPartition runs the rounds of the partition scenario on p and checks
// the outcome.
func runPartition(t *testing.T, dir string, p partition) {
	t.Logf("partitioning through %s", p.kind)
	n := rounds(t)
	cl := p.cl
	c := newCreds()
	lb := newBalancer(t, p.w)
	s := startSim(t, p.w, dir, c, lb.srv.URL+"/callback/"+appName, rate)
	rs := []*receiver{
		newReceiver("receiver-a", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "ra"), natsURL: p.urls, replicas: 3}, c, s.url)),
		newReceiver("receiver-b", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "rb"), natsURL: p.urls, replicas: 3}, c, s.url)),
	}
	for _, r := range rs {
		r.w = p.w
		r.start(t)
	}
	lb.set(rs[0].http, rs[1].http)
	reader := connect(t, cl.urls(), p.w.natsOptions()...)
	procs := append(cl.procs(), rs[0].p, rs[1].p, s.p)

	// Two checks that the receivers on a cut node leave it (issue 15
	// finding 3; nats.go's default pings notice a dead link only after
	// minutes):
	//  - directly: each receiver connected to the cut node logs its
	//    reconnect to another node within moveBound. Detection takes
	//    2-3 ping intervals of 2 s, about 6-8 s, and the reconnect
	//    milliseconds; the bound leaves room for a loaded machine.
	//  - by its effect: no callback is refused from refusedAfter into the
	//    cut until its heal. A refusal is answered at the end of
	//    ack_timeout (3 s), so this counts writes begun 12 s or more into
	//    the cut, past the move and past the new stream leader's election
	//    when the cut node led it (raft's election timeout is 4-9 s). A
	//    12 s window failed once in CI, with no record of which of the two
	//    took longer; the log lines printed on failure now tell.
	// The cut lasts 20 s, so a receiver that does not move fails both.
	const (
		moveBound    = 15 * time.Second
		refusedAfter = 15 * time.Second
	)
	var stuck [][2]time.Time
	for i := range n {
		runFor(t, randDur(2*time.Second, 5*time.Second), procs...)
		k, on := -1, 0
		for _, j := range randPerm(len(cl.nodes)) {
			c, err := p.conns(j)
			if err != nil {
				t.Fatalf("round %d: %v", i+1, err)
			}
			if c > 0 {
				k, on = j, c
				break
			}
		}
		if k < 0 {
			t.Fatalf("round %d: no receiver is connected to any node", i+1)
		}
		if err := p.cut(k, true); err != nil {
			t.Fatalf("round %d: cut: %v", i+1, err)
		}
		cutAt := time.Now()
		t.Logf("round %d: cut %s (%d receiver connections on it)", i+1, cl.nodes[k].name, on)
		w := watchMoves(t, rs, p.urls, k)
		switch {
		case len(w.on) == 0:
			t.Errorf("round %d: %s has %d receiver connections, but no receiver's log says it is connected there", i+1, cl.nodes[k].name, on)
		case len(w.on) != on:
			// Not an error: in links mode a proxied connection that died
			// at the last heal counts for a moment.
			t.Logf("round %d: %s has %d receiver connections; the logs put %d receivers there, and only those are followed", i+1, cl.nodes[k].name, on, len(w.on))
		}
		for time.Since(cutAt) < 20*time.Second {
			runFor(t, 100*time.Millisecond, procs...)
			w.poll(t)
		}
		w.report(t, i+1, cutAt, moveBound)
		if err := p.cut(k, false); err != nil {
			t.Fatalf("round %d: heal: %v", i+1, err)
		}
		healAt := time.Now()
		stuck = append(stuck, [2]time.Time{cutAt.Add(refusedAfter), healAt})
		t.Logf("round %d: healed %s", i+1, cl.nodes[k].name)
		runFor(t, 5*time.Second, procs...)
	}
	cl.awaitJetStream(t)
	tl := settle(t, "cluster partition ("+p.kind+")", n, s, reader, nil)

	log, err := s.answers()
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, a := range log.Answers {
		for i, w := range stuck {
			if !a.Success && a.At.After(w[0]) && a.At.Before(w[1]) {
				refused++
				t.Logf("round %d: a callback refused %.1f s into the cut (HTTP status %d; 0: no answer)",
					i+1, (a.At.Sub(w[0]) + refusedAfter).Seconds(), a.Status)
			}
		}
	}
	t.Logf("callbacks refused from %s after a cut until its heal: %d", refusedAfter, refused)
	check(t, tl)
	if refused > 0 {
		// What each receiver's NATS connections did, to tell a late
		// reconnect from a stream that had no leader yet.
		for _, r := range rs {
			t.Logf("%s, its connection events:\n%s", r.name, connectionEvents(r.p.output()))
		}
		t.Errorf("issue 15 finding 3: %d callbacks refused more than %s into a partition", refused, refusedAfter)
	}
}

// connectionEvents is the lines of a receiver's log that tell where its
// NATS connections went, and the callbacks it could not store.
func connectionEvents(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		for _, m := range []string{"nats disconnected", "nats reconnected", "connected to nats", "nats async error", `"outcome":"unavailable"`} {
			if strings.Contains(l, m) {
				b.WriteString(l)
				b.WriteByte('\n')
				break
			}
		}
	}
	return b.String()
}

func randPerm(n int) []int {
	p := make([]int, n)
	for i := range p {
		j := randInt(i + 1)
		p[i] = p[j]
		p[j] = i
	}
	return p
}

// moveWatch follows the receivers connected to a node when it is cut, and
// notes when each one's log first says it reconnected to another node.
type moveWatch struct {
	host  string      // the cut node's host:port
	on    []*receiver // the receivers connected to it at the cut
	from  []int       // each one's log length at the cut
	moved []time.Time // when its reconnect was seen; zero: not yet
}

func watchMoves(t *testing.T, rs []*receiver, urls string, k int) *moveWatch {
	t.Helper()
	w := &moveWatch{host: urlHost(t, strings.Split(urls, ",")[k])}
	for _, r := range rs {
		out := r.p.output()
		if u := lastNATSURL(out); u != "" && urlHost(t, u) == w.host {
			w.on = append(w.on, r)
			w.from = append(w.from, len(out))
			w.moved = append(w.moved, time.Time{})
		}
	}
	return w
}

func (w *moveWatch) poll(t *testing.T) {
	for i, r := range w.on {
		if !w.moved[i].IsZero() {
			continue
		}
		out := r.p.output()
		if len(out) < w.from[i] {
			continue
		}
		if u := lastNATSURL(out[w.from[i]:]); u != "" && urlHost(t, u) != w.host {
			w.moved[i] = time.Now()
		}
	}
}

func (w *moveWatch) report(t *testing.T, round int, cutAt time.Time, bound time.Duration) {
	for i, r := range w.on {
		if w.moved[i].IsZero() {
			t.Errorf("round %d: %s did not leave the cut node during the cut (issue 15 finding 3); its connection events:\n%s",
				round, r.name, connectionEvents(r.p.output()))
			continue
		}
		d := w.moved[i].Sub(cutAt)
		t.Logf("round %d: %s reconnected to another node %.1f s into the cut", round, r.name, d.Seconds())
		if d > bound {
			t.Errorf("round %d: %s left the cut node %.1f s into the cut, past %s (issue 15 finding 3)", round, r.name, d.Seconds(), bound)
		}
	}
}

// lastNATSURL is the server URL of the last "connected to nats" or "nats
// reconnected" line in a receiver's log, "" if there is none.
func lastNATSURL(out string) string {
	last := ""
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, `"connected to nats"`) && !strings.Contains(l, `"nats reconnected"`) {
			continue
		}
		var f struct {
			URL string `json:"url"`
		}
		if json.Unmarshal([]byte(l), &f) == nil && f.URL != "" {
			last = f.URL
		}
	}
	return last
}

// urlHost is the host:port of a NATS URL.
func urlHost(t *testing.T, s string) string {
	t.Helper()
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("NATS URL %q: %v", s, err)
	}
	return u.Host
}
