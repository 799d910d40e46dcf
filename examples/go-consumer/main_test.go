package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/wecomhit/wecomhit/internal/consumertest"
)

// runMainEnv makes the test binary run the example's main instead of the
// tests, so the test runs the example as its own OS process, signals and
// all, without a separate build.
const runMainEnv = "GO_CONSUMER_EXAMPLE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestGoConsumer runs the example against real events from the publisher:
// each hit handled once across re-deliveries and a restart, a clean exit on
// SIGTERM.
func TestGoConsumer(t *testing.T) {
	consumertest.Scenario(t, func(t *testing.T, url, durable, out string) *exec.Cmd {
		// The scenario's server has no accounts: the API is where it is.
		cmd := exec.Command(os.Args[0], "-nats", url, "-js-api-prefix", "$JS.API", "-durable", durable, "-out", out)
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		return cmd
	}, "go-example")
}
