package cli

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/testlog"
)

// runCLI runs the command table of args with an empty environment.
func runCLI(args []string, stdout, stderr io.Writer) int {
	return Run(context.Background(), args, Env{LookupEnv: func(string) (string, bool) { return "", false }, Stdout: stdout, Stderr: stderr}, Commands())
}

func TestRun_OpsNeedNATS(t *testing.T) {
	path := t.TempDir() + "/c.yaml"
	require.NoError(t, os.WriteFile(path, []byte(`
apps:
  - name: archive
    mode: archive
    token: t
    encoding_aes_key: k3Vq9ZrT2mXw8LpB4nYc6HsD1fGj5aQe7uKo0RtWxEz
    api_base_url: http://127.0.0.1:9
    suite_id: s
    suite_secret: x
    corps: [{corp_id: c, permanent_code: p}]
`), 0o600))
	for _, cmd := range []string{"tail", "status"} {
		var stdout, stderr testlog.Buffer
		code := runCLI([]string{cmd, "-config", path}, &stdout, &stderr)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr.String(), "nats.listen", cmd)
	}
}
