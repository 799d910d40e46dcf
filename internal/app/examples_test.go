package app_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/consumertest"
	"github.com/wecomhit/wecomhit/internal/hittest"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestExamples_ReadTheReceiversOutput runs both example consumers
// (examples/) against the receiver's own output: the pipeline's events,
// through the embedded listener, logged in with the consumer role's seed
// as `receiver creds consumer` hands it out. Each handles every hit once
// and stops cleanly on SIGTERM. (examples/*'s own tests cover redelivery and
// restarts on a plain server.)
func TestExamples_ReadTheReceiversOutput(t *testing.T) {
	s := startSystem(t, "0s")
	_, err := s.sim.GenerateMessages(simCorp, 200)
	require.NoError(t, err)
	s.sim.Advance(6 * time.Second)
	want := s.hitIDs()
	require.NotEmpty(t, want)
	js := s.m.Broker().JetStream()
	natstest.WaitFor(t, 30*time.Second, func() error {
		if counts, _ := hittest.Stored(t, js); len(counts) < len(want) {
			return fmt.Errorf("%d of %d hits published", len(counts), len(want))
		}
		return nil
	})
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	url := s.m.Broker().ClientURL()
	seed := broker.SeedFile(s.m.Cfg().NATS.RolesDir(), app.RoleConsumer)
	examples, err := filepath.Abs("../../examples")
	require.NoError(t, err)

	t.Run("Go", func(t *testing.T) {
		goBin, err := exec.LookPath("go")
		if err != nil {
			t.Skip("no go command to build the example with")
		}
		bin := filepath.Join(t.TempDir(), "go-consumer")
		build := exec.Command(goBin, "build", "-o", bin, ".")
		build.Dir = filepath.Join(examples, "go-consumer")
		outb, err := build.CombinedOutput()
		require.NoError(t, err, "%s", outb)
		out := filepath.Join(t.TempDir(), "hits.tsv")
		p := consumertest.Run(t, exec.Command(bin, "-nats", url, "-nkey", seed, "-durable", "go-example", "-out", out))
		consumertest.WaitHandled(t, p, out, ids)
		p.Stop(t)
		consumertest.RequireHandled(t, out, ids)
	})

	t.Run("Node", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			t.Skip("node is not installed, so the Node example is not run")
		}
		dir := filepath.Join(examples, "node")
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "nats", "package.json")); err != nil {
			t.Skip("examples/node has no node_modules, so the Node example is not run: run `npm ci` there (.ci/run does)")
		}
		out := filepath.Join(t.TempDir(), "hits.tsv")
		cmd := exec.Command(node, "consumer.mjs")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NATS_URL="+url, "NATS_NKEY="+seed, "DURABLE=node-example", "OUT="+out)
		p := consumertest.Run(t, cmd)
		consumertest.WaitHandled(t, p, out, ids)
		p.Stop(t)
		consumertest.RequireHandled(t, out, ids)
	})
}
