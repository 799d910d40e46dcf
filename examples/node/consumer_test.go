// Package node_test runs the Node example consumer (consumer.mjs) against
// real events. It needs node and `npm ci` in this directory (.ci/run does
// that); without them the test is skipped with a message.
package node_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/wecomhit/wecomhit/internal/consumertest"
)

// TestNodeConsumer runs consumer.mjs as a process against real events from
// the publisher: each hit handled once across re-deliveries and a restart,
// a clean exit on SIGTERM.
func TestNodeConsumer(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed, so the Node example is not run: install Node.js 18 or later and run `npm ci` in examples/node")
	}
	if _, err := os.Stat("node_modules/nats/package.json"); err != nil {
		t.Skip("examples/node has no node_modules, so the Node example is not run: run `npm ci` in examples/node (.ci/run does)")
	}
	consumertest.Scenario(t, func(t *testing.T, url, durable, out string) *exec.Cmd {
		cmd := exec.Command(node, "consumer.mjs")
		// The scenario's server has no accounts: the API is where it is.
		cmd.Env = append(os.Environ(), "NATS_URL="+url, "JS_API_PREFIX=$JS.API", "DURABLE="+durable, "OUT="+out)
		return cmd
	}, "node-example")
}
