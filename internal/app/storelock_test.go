package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// childArgsEnv, when set, makes the test binary run the receiver with
// these (space-separated) arguments instead of the tests: a real second
// process without building the binary.
const childArgsEnv = "RECEIVER_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		os.Exit(run(context.Background(), strings.Fields(args),
			cli.Env{LookupEnv: os.LookupEnv, Stdout: os.Stdout, Stderr: os.Stderr}))
	}
	os.Exit(m.Run())
}

// TestServe_StoreLocked: a second serve on a store dir that a running
// receiver owns exits at once, non-zero, naming the directory and the
// owner's pid; the first keeps running.
func TestServe_StoreLocked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "receiver.yaml")
	yaml := fmt.Sprintf(`
allow_sample_secrets: true # WeCom's official test vectors
fetch:
  poll_interval: 0s
admin:
  listen: ""
http:
  listen: 127.0.0.1:0
nats:
  store_dir: nats
log:
  level: info
apps:
  - name: v1
    mode: archive
    token: %s
    encoding_aes_key: %s
    receive_id: %s
    api_base_url: http://127.0.0.1:9
    suite_id: wwArchiveSuite01
    suite_secret: s3cr3t-suite
    corps: [{corp_id: wwCorpABC123, permanent_code: perm-code-1}]
`, testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := (cli.Env{LookupEnv: noEnv}).LoadConfig(path)
	require.NoError(t, err)
	m, _ := startMain(t, cfg)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), childArgsEnv+"=serve -config "+path)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("second serve exited after %s", time.Since(start))
	require.NoError(t, ctx.Err(), "the second serve did not exit")
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output: %s", out)
	assert.NotEqual(t, 0, ee.ExitCode())
	assert.Contains(t, string(out), "store dir in use by another process: "+filepath.Join(dir, "nats"))
	assert.Contains(t, string(out), fmt.Sprintf("pid=%d ", os.Getpid()))
	assert.NoError(t, m.Ready(t.Context()), "the owner is unaffected")
}
