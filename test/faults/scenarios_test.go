//go:build faults

package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// rate is the simulator's traffic in messages per minute: several a
// second, so that a page of hits is in flight when a kill lands.
const rate = 240

// TestEmbeddedKill: one receiver with its embedded NATS, kill -9 at random
// moments and restarted on the same store.
func TestEmbeddedKill(t *testing.T) {
	n := rounds(t)
	dir := t.TempDir()
	c := newCreds()
	lb := newBalancer(t, where{})
	s := startSim(t, where{}, dir, c, lb.srv.URL+"/callback/"+appName, rate)
	r := newReceiver("receiver", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "r1")}, c, s.url))
	r.start(t)
	lb.set(r.http)

	for i := range n {
		runFor(t, randDur(time.Second, 5*time.Second), r.p, s.p)
		r.p.kill()
		lb.set()
		t.Logf("round %d: killed the receiver", i+1)
		r.start(t)
		lb.set(r.http)
	}
	runFor(t, 3*time.Second, r.p, s.p)
	tl := settle(t, "embedded kill -9", n, s, r.connectEmbedded(t), nil)
	check(t, tl)
}

// TestExternalServer: two receivers on one external nats-server. The
// server is killed for 15 s, and while it is down no callback may be
// answered success. Then either receiver is killed with -9 at random
// moments and restarted.
//
// Each receiver kill waits for a fetch to hold its lease first, so that the
// killed replica is, half the time, the holder, and the other one has to
// wait for the lease to lapse (issue 15 finding 5: it used to wait 30 s, and
// with repeated kills no page completed for minutes). Every hit sent during
// the kills must be fetched within lapseBound of its send_time.
func TestExternalServer(t *testing.T) {
	n := rounds(t)
	dir := t.TempDir()
	c := newCreds()
	lb := newBalancer(t, where{})
	s := startSim(t, where{}, dir, c, lb.srv.URL+"/callback/"+appName, rate)

	ns := &natsServer{name: "nats-server", dir: filepath.Join(dir, "nats")}
	if err := os.MkdirAll(ns.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ns.conf = filepath.Join(ns.dir, "nats.conf")
	writeFile(t, ns.conf, fmt.Sprintf("server_name: single\nlisten: 127.0.0.1:-1\njetstream { store_dir: %q }\n",
		filepath.Join(ns.dir, "store")))
	ns.start(t)

	rs := []*receiver{
		newReceiver("receiver-a", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "ra"), natsURL: ns.client}, c, s.url)),
		newReceiver("receiver-b", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "rb"), natsURL: ns.client}, c, s.url)),
	}
	for _, r := range rs {
		r.start(t)
	}
	setLB := func() { lb.set(rs[0].http, rs[1].http) }
	setLB()
	if ttl := leaseTTL(t); ttl > fetch.DefaultLeaseTTL {
		t.Logf("FAULTS_LEASE_TTL=%s is above the receiver's default %s: a killed lease holder may stall fetching past %s", ttl, fetch.DefaultLeaseTTL, lapseBound)
	}

	// The server goes away for 15 s and comes back on its port and store.
	runFor(t, 2*time.Second, rs[0].p, rs[1].p, s.p, ns.p)
	ns.p.kill()
	downAt := time.Now()
	t.Logf("killed nats-server")
	runFor(t, 15*time.Second, rs[0].p, rs[1].p, s.p)
	upAt := time.Now()
	ns.start(t, "-p", port(ns.client))
	t.Logf("restarted nats-server")
	runFor(t, 5*time.Second, rs[0].p, rs[1].p, s.p, ns.p)
	// From here on the server stays up: hits sent from now on are
	// delayed by receiver kills alone.
	killsFrom := time.Now()

	reader := connect(t, ns.client)
	for i := range n {
		runFor(t, randDur(time.Second, 5*time.Second), rs[0].p, rs[1].p, s.p, ns.p)
		held := awaitLease(t, reader, 10*time.Second)
		r := rs[randInt(2)]
		r.p.kill()
		r.http = ""
		setLB()
		if held != "" {
			t.Logf("round %d: killed %s while a fetch held the lease %s", i+1, r.name, held)
		} else {
			t.Logf("round %d: killed %s (no fetch took a lease within 10 s)", i+1, r.name)
		}
		r.start(t)
		setLB()
	}
	runFor(t, 3*time.Second, rs[0].p, rs[1].p, s.p, ns.p)

	// A success answered within a second of the kill may be an ack that was
	// on its way: the window starts after it.
	down := [][2]time.Time{{downAt.Add(time.Second), upAt}}
	tl := settle(t, "external server, 2 receivers", n, s, reader, down)
	check(t, tl)
	if d, at := tl.maxLatencySince(killsFrom); d > lapseBound {
		t.Errorf("issue 15 finding 5: a hit sent at %s, during the receiver kills, took %s to be fetched (want at most %s: lease_ttl %s + poll interval %s + %s): a killed lease holder blocked fetching",
			at.Format(time.TimeOnly), d, lapseBound, fetch.DefaultLeaseTTL, pollInterval, lapseMargin)
	} else {
		t.Logf("longest hit latency during the receiver kills: %s (bound %s)", d, lapseBound)
	}
}

// lapseBound is the longest a hit may take from its send_time to being
// fetched while a replica is killed but NATS is up: the lease of a killed
// holder lapses within the receiver's default lease_ttl of its last
// renewal (the tests run with a shorter one), and the next poll or callback
// fetches. lapseMargin covers the simulator coalescing hits into one
// callback every 5 s and a loaded machine.
const (
	pollInterval = 5 * time.Second
	lapseMargin  = 10 * time.Second
	lapseBound   = fetch.DefaultLeaseTTL + pollInterval + lapseMargin
)

// awaitLease waits up to timeout for a fetch to take a lease and returns
// its key, or "" when none was taken: fetches hold a lease only while they
// run, so this is a moment when one runs.
func awaitLease(t testing.TB, r *streamReader, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := r.js.KeyValue(ctx, fetch.LeaseBucket)
	if err != nil {
		t.Fatalf("lease bucket: %v", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatalf("watch leases: %v", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ""
		case e, ok := <-w.Updates():
			if !ok {
				return ""
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				return e.Key()
			}
		}
	}
}

// TestWeComFaults: WeCom's failures under load, a different set each round,
// with a single receiver on its embedded NATS.
func TestWeComFaults(t *testing.T) {
	n := rounds(t)
	dir := t.TempDir()
	c := newCreds()
	lb := newBalancer(t, where{})
	s := startSim(t, where{}, dir, c, lb.srv.URL+"/callback/"+appName, rate)
	r := newReceiver("receiver", writeReceiverConfig(t, receiverConfig{dir: filepath.Join(dir, "r1")}, c, s.url))
	r.start(t)
	lb.set(r.http)

	sets := [][]wecomsim.Fault{
		{{Kind: wecomsim.FaultErrcode, API: "get_hit_msg_list", Errcode: -1, Rate: 0.3}},
		{{Kind: wecomsim.FaultDropCallback, API: wecomsim.CallbackHitKeyword, Rate: 0.5}},
		{{Kind: wecomsim.FaultDuplicateCallback, API: wecomsim.CallbackHitKeyword, Rate: 0.5}},
		{{Kind: wecomsim.FaultHTTPError, API: "get_hit_msg_list", Status: 502, Rate: 0.3}},
		{{Kind: wecomsim.FaultRateLimit, API: "get_hit_msg_list", Rate: 0.2}},
		{{Kind: wecomsim.FaultExpireHitToken, API: "get_hit_msg_list", Rate: 0.3}},
		{{Kind: wecomsim.FaultExpireAccessToken, Rate: 0.1}},
		{{Kind: wecomsim.FaultDelay, API: "get_hit_msg_list", Delay: 2 * time.Second, Rate: 0.3}},
		{{Kind: wecomsim.FaultHang, API: "get_hit_msg_list", Delay: 10 * time.Second, Rate: 0.1}},
	}
	var names []string
	for i := range n {
		set := sets[i%len(sets)]
		s.setFaults(t, set...)
		names = append(names, string(set[0].Kind))
		runFor(t, 8*time.Second, r.p, s.p)
	}
	t.Logf("fault sets: %s", strings.Join(names, ", "))
	tl := settle(t, "WeCom faults", n, s, r.connectEmbedded(t), nil)
	check(t, tl)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
