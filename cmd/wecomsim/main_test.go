package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
)

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-callback-url", "", "-rate", "-1",
			"-fault", "kind=errcode,api=gettoken,count=1"}, &out, &logs)
	}()

	re := regexp.MustCompile(`wecomsim listening on (http://127\.0\.0\.1:\d+), callbacks to \n`)
	var base string
	deadline := time.Now().Add(5 * time.Second)
	for base == "" {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		require.True(t, time.Now().Before(deadline), "no listening line; logs: %s", logs.String())
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Get(base + "/_sim/faults")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestRun_BadFlag(t *testing.T) {
	for _, args := range [][]string{{"-fault", "kind=bogus"}, {"-no-such-flag"}, {"-corps", "-1"}, {"extra"}} {
		var out, logs syncBuffer
		err := run(context.Background(), args, &out, &logs)
		assert.ErrorIs(t, err, cli.ErrUsage, "%v", args)
		assert.Equal(t, cli.ExitUsage, cli.ExitCode(&logs, "wecomsim", err), "%v", args)
		assert.Empty(t, out.String())
		assert.Contains(t, logs.String(), `Run "wecomsim -h"`)
	}
}

// TestRun_Help: -h lists every flag with its default, on stdout, exit 0;
// -version prints the build's version.
func TestRun_Help(t *testing.T) {
	var out, logs syncBuffer
	require.NoError(t, run(context.Background(), []string{"-h"}, &out, &logs), "-h is not a failure")
	assert.Empty(t, logs.String())
	newFlagSet(&settings{}, io.Discard).VisitAll(func(f *flag.Flag) {
		assert.Contains(t, out.String(), "\n  -"+f.Name, f.Name)
		assert.Contains(t, out.String(), cli.DefaultText(f), f.Name)
	})
	assert.Contains(t, out.String(), "NO_COLOR")

	out = syncBuffer{}
	require.NoError(t, run(context.Background(), []string{"-version"}, &out, &logs))
	assert.Regexp(t, `^wecomsim \S+ \(.*go1\.\d+`, out.String())
}

// TestDefaults_MatchLocalSimConfig: the README's by-hand recipe runs the
// simulator without flags against configs/receiver.local-sim.yaml, so the
// two must agree on every credential and address.
func TestDefaults_MatchLocalSimConfig(t *testing.T) {
	cfg, err := config.Load("../../configs/receiver.local-sim.yaml")
	require.NoError(t, err)
	require.Len(t, cfg.Apps, 1)
	a := cfg.Apps[0]
	require.Len(t, a.Corps, 1)
	fs := newFlagSet(&settings{}, io.Discard)
	def := func(name string) string { return fs.Lookup(name).DefValue }
	assert.Equal(t, a.Token.Reveal(), def("token"))
	assert.Equal(t, a.EncodingAESKey.Reveal(), def("aes-key"))
	assert.Equal(t, a.SuiteID, def("suite-id"))
	assert.Equal(t, a.SuiteSecret.Reveal(), def("suite-secret"))
	assert.Equal(t, a.Corps[0].CorpID, def("corp-id"))
	assert.Equal(t, a.Corps[0].PermanentCode.Reveal(), def("permanent-code"))
	assert.Equal(t, a.APIBaseURL, "http://"+def("addr"))
	assert.Equal(t, "http://"+cfg.HTTP.Listen+"/callback/"+a.Name, def("callback-url"))
}
