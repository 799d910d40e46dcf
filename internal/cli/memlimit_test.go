package cli

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"

	"github.com/wecomhit/wecomhit/internal/testlog"
)

// TestGovernMemory: memory_limit_bytes becomes the runtime's limit (its
// floor: internal/memlimit tests how it follows the heap), unless
// GOMEMLIMIT is set, which wins; 0 leaves the limit alone.
func TestGovernMemory(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	tests := []struct {
		name  string
		limit int64
		env   string
		want  int64
		log   string
	}{
		{"OK", 64 << 20, "", 64 << 20, `"memory_limit_bytes":67108864`},
		{"EnvWins", 64 << 20, "1GiB", math.MaxInt64, `"gomemlimit":"1GiB"`},
		{"Zero", 0, "", math.MaxInt64, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64) // the runtime's default
			var logs testlog.Buffer
			stop := governMemory(zerolog.New(&logs), tt.limit, tt.env)
			assert.Equal(t, tt.want, debug.SetMemoryLimit(-1))
			stop()
			assert.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1), "after stop, the limit found")
			if tt.log != "" {
				assert.Contains(t, logs.String(), tt.log)
			}
		})
	}
}
