//go:build faults

package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestExternalServer: two receivers on one external nats-server; kill -9
// either at random moments, then kill the server for 15 s. While it is down
// no callback may be answered success.
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

	for i := range n {
		runFor(t, randDur(time.Second, 5*time.Second), rs[0].p, rs[1].p, s.p, ns.p)
		r := rs[randInt(2)]
		r.p.kill()
		r.http = ""
		setLB()
		t.Logf("round %d: killed %s", i+1, r.name)
		r.start(t)
		setLB()
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

	// A success answered within a second of the kill may be an ack that was
	// on its way: the window starts after it.
	down := [][2]time.Time{{downAt.Add(time.Second), upAt}}
	tl := settle(t, "external server, 2 receivers", n, s, connect(t, ns.client), down)
	check(t, tl)
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
