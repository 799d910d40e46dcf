package main

import (
	"bufio"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runMainEnv makes the test binary run the baseline's main, so the test
// starts it as its own process, as bench/run does, without a build.
const runMainEnv = "BASELINE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestNATSListen_PortZeroIsAnyFreePort: the default -nats-listen,
// 127.0.0.1:0, gives the embedded server a free port. nats-server reads
// port 0 as its default, 4222, so the baseline took 4222 and failed to
// start wherever another NATS (such as the README's local-sim receiver)
// already listened there.
func TestNATSListen_PortZeroIsAnyFreePort(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-listen", "127.0.0.1:0", "-store-dir", t.TempDir(), "-receive-id", "wwSuite")
	cmd.Env = append(os.Environ(), runMainEnv+"=1",
		"BASELINE_TOKEN=bench", "BASELINE_ENCODING_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("the baseline printed no start line")
	}
	m := regexp.MustCompile(`nats (nats://\S+)`).FindStringSubmatch(line)
	require.NotNil(t, m, "start line %q (the baseline exits when its NATS cannot listen)", line)
	u, err := url.Parse(m[1])
	require.NoError(t, err)
	require.NotEqual(t, "4222", u.Port(), "port 0 must mean a free port, not nats-server's default")
}
