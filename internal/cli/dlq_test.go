package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wecomhit/wecomhit/internal/testlog"
)

// TestRun_DLQUsage: command-line mistakes exit 2 before anything connects.
func TestRun_DLQUsage(t *testing.T) {
	cfg := t.TempDir() + "/none.yaml" // never read: usage errors come first
	for _, args := range [][]string{
		{"dlq"},
		{"dlq", "bogus"},
		{"dlq", "list", "-config", cfg, "-kind", "event"},
		{"dlq", "list", "-config", cfg, "extra"},
		{"dlq", "replay", "-config", cfg},
		{"dlq", "replay", "-config", cfg, "-all", "-seq", "1"},
		{"dlq", "replay", "-config", cfg, "-seq", "1,x"},
		{"dlq", "replay", "-config", cfg, "-seq", "0"},
		{"dlq", "replay", "-config", cfg, "-seq", "1", "-reason", "unknown_corp"},
		{"dlq", "replay", "-config", cfg, "-all", "-kind", "hit"},
		{"dlq", "list"},
	} {
		var stdout, stderr testlog.Buffer
		code := runCLI(args, &stdout, &stderr)
		assert.Equal(t, 2, code, "%q: %s", args, stderr.String())
	}
}
