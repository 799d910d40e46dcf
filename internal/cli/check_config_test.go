package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRun_CheckConfigAllProblems: a file with five different faults gets
// five lines in one run, each with its key path and line.
func TestRun_CheckConfigAllProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "five.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`http:
  listen: 127.0.0.1:8080
  ack_timout: 3s
  timestamp_window: 5 minutes
log:
  level: loud
apps:
  - name: archive
    mode: archive
    token: tok3n
    encoding_aes_key: tooshort
    api_base_url: http://127.0.0.1:8090
    suite_secret: some-suite-secret
    corps:
      - corp_id: wwCorp1
        permanent_code: some-permanent-code
`), 0o600))
	var stdout, stderr bytes.Buffer
	code := runCLI([]string{"check-config", "-config", path}, &stdout, &stderr)
	require.Equal(t, 1, code, stderr.String())
	assert.Empty(t, stdout.String())
	assert.Equal(t, path+`: 5 problems:
  http.ack_timout: unknown key (line 3)
  http.timestamp_window: "5 minutes" is not a duration such as 90s, 5m or 1h (line 4)
  log.level: must be one of debug, info, warn, error (line 6)
  apps[0].encoding_aes_key: must be 43 characters (line 11)
  apps[0].suite_id: required when mode is archive (line 8)
receiver check-config: `+path+` is not valid
`, stderr.String())
}
