//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"
)

// where says in which network a process runs and the test opens its own
// sockets: the host's (the zero value), or a network namespace the test
// created, which has no route off the machine.
type where struct{ ns string }

// command returns how to run bin with args there: through `ip netns exec`,
// which execs bin in place, so the process's pid is bin's and kill -9
// reaches it.
func (w where) command(bin string, args []string) (string, []string) {
	if w.ns == "" {
		return bin, args
	}
	return "ip", append([]string{"netns", "exec", w.ns, bin}, args...)
}

// inNetns runs fn on an OS thread that has joined the network namespace
// ns. Sockets keep the namespace they were created in, so a connection or
// listener fn opens stays there. The thread is never handed back: the
// goroutine ends locked to it, and the Go runtime then ends the thread, so
// no other goroutine ever runs in ns.
func inNetns[T any](ns string, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var zero T
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			ch <- result{zero, fmt.Errorf("network namespace %s: %w", ns, err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{zero, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		v, err := fn()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

func (w where) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if w.ns == "" {
		return d.DialContext(ctx, network, addr)
	}
	return inNetns(w.ns, func() (net.Conn, error) { return d.DialContext(ctx, network, addr) })
}

// Dial makes where a nats.CustomDialer.
func (w where) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.dial(ctx, network, addr)
}

func (w where) listen(network, addr string) (net.Listener, error) {
	if w.ns == "" {
		return net.Listen(network, addr)
	}
	return inNetns(w.ns, func() (net.Listener, error) { return net.Listen(network, addr) })
}

// natsOptions are the options a test connection needs to reach a server
// there.
func (w where) natsOptions() []nats.Option {
	if w.ns == "" {
		return nil
	}
	return []nats.Option{nats.SetCustomDialer(w)}
}

// transport is an HTTP transport whose connections are opened there.
func (w where) transport() http.RoundTripper {
	if w.ns == "" {
		return http.DefaultTransport
	}
	return &http.Transport{DialContext: w.dial, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
}

// netnsPrefix starts the name of every network namespace the tests create;
// the process id follows, so that a later run can tell its own from those
// of a run still going (another checkout on the same machine) and from
// those a killed run left behind.
const netnsPrefix = "wecomfaults-"

// netlab is a small network of namespaces: a hub, where the simulator, the
// receivers, the load balancer and the test's own connections live (on the
// hub's loopback and on a bridge), and one namespace per cluster node,
// each joined to the hub's bridge by a veth pair. Node k has address
// 10.77.0.k; the hub 10.77.0.100. Neither has a route anywhere else.
type netlab struct {
	hub    string
	nodes  []string
	client *http.Client // from the hub, for the nodes' monitoring endpoints
}

// netlabSeq numbers the netlabs of one test process.
var netlabSeq atomic.Int64

// sweepOnce removes, once per test process, namespaces that earlier runs
// left behind (a run killed before its cleanups).
var sweepOnce sync.Once

const (
	labSubnet = "10.77.0."
	labHubIP  = labSubnet + "100"
)

func labNodeIP(k int) string { return labSubnet + strconv.Itoa(k+1) }

// labNodeLink is the hub's end of node k's veth pair, the one a partition
// takes down.
func labNodeLink(k int) string { return "node" + strconv.Itoa(k+1) }

// newNetlab creates a hub and n node namespaces, removed at cleanup. It
// returns an error naming what is missing where the machine does not allow
// it (not root, no ip command, namespaces not permitted).
func newNetlab(t testing.TB, n int) (*netlab, error) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("network namespaces need Linux, not %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("network namespaces need root (running as uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("network namespaces need the ip command (iproute2): %w", err)
	}
	sweepOnce.Do(func() { sweepNetns(t) })
	base := fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), netlabSeq.Add(1))
	lab := &netlab{hub: base + "-hub"}
	lab.client = &http.Client{Transport: where{ns: lab.hub}.transport(), Timeout: 5 * time.Second}
	for k := range n {
		lab.nodes = append(lab.nodes, fmt.Sprintf("%s-n%d", base, k+1))
	}
	// Removed even when the test fails. Processes inside are killed
	// first: their cleanups are registered later and run earlier.
	t.Cleanup(func() {
		for _, ns := range append([]string{lab.hub}, lab.nodes...) {
			if err := ipCmd("netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
				t.Errorf("remove network namespace: %v", err)
			}
		}
	})
	steps := [][]string{
		{"netns", "add", lab.hub},
		{"-n", lab.hub, "link", "set", "lo", "up"},
		{"-n", lab.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", lab.hub, "addr", "add", labHubIP + "/24", "dev", "br0"},
		{"-n", lab.hub, "link", "set", "br0", "up"},
	}
	for k, ns := range lab.nodes {
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", lab.hub, "link", "add", labNodeLink(k), "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", lab.hub, "link", "set", labNodeLink(k), "master", "br0"},
			[]string{"-n", lab.hub, "link", "set", labNodeLink(k), "up"},
			[]string{"-n", ns, "addr", "add", labNodeIP(k) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return nil, fmt.Errorf("network namespaces not permitted here: %w", err)
		}
	}
	return lab, nil
}

// ipCmd runs ip with args; its error carries ip's output.
func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// sweepNetns deletes the namespaces named by netnsPrefix whose test
// process is gone. Those of a live faults test (another checkout running
// now) stay.
func sweepNetns(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return // no namespaces to sweep, or none allowed: newNetlab says which
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, netnsPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if comm, err := os.ReadFile(filepath.Join("/proc", pid, "comm")); err == nil && strings.TrimSpace(string(comm)) == "faults.test" {
			continue
		}
		if err := ipCmd("netns", "del", name); err != nil {
			t.Logf("leftover network namespace %s: %v", name, err)
		} else {
			t.Logf("removed leftover network namespace %s", name)
		}
	}
}

// setLink takes node k's link down (cut) or up (heal). Down, the hub's
// bridge drops every frame to and from the node, and the node's own end
// loses its carrier and sends nothing: both sides see silence, no reset,
// as with a pulled cable.
func (l *netlab) setLink(k int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ipCmd("-n", l.hub, "link", "set", labNodeLink(k), state)
}

// clientConns is how many client connections node k's server has that are
// not the test's own (named testConnName), from its monitoring endpoint.
func (l *netlab) clientConns(ctx context.Context, k int) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(labNodeIP(k), "8222")+"/connz?limit=1024", nil)
	if err != nil {
		return 0, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("connz of node %d: %w", k+1, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("connz of node %d: HTTP %d", k+1, resp.StatusCode)
	}
	var cz struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		return 0, fmt.Errorf("connz of node %d: %w", k+1, err)
	}
	n := 0
	for _, c := range cz.Conns {
		if c.Name != testConnName {
			n++
		}
	}
	return n, nil
}
