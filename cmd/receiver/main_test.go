package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReceiver_NoSimulator: the production binary does not link the WeCom
// simulator, which holds WeCom's published sample secrets and serves a
// fake WeCom API; the demo, which needs it, is cmd/demo. The receiver's
// commands run against a real service in internal/app's tests.
func TestReceiver_NoSimulator(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/wecomhit/wecomhit/internal/app", "the list is the binary's")
	require.Contains(t, deps, "github.com/wecomhit/wecomhit/internal/cli")
	for _, d := range deps {
		assert.NotContains(t, d, "wecomsim", "the receiver links %s", d)
	}
}
