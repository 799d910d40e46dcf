package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// TestCluster_ReplicasStartTogether: three receivers open at the same
// moment on a fresh three-node cluster, each connected to a different node
// first, with replicas 3 (issue 15 finding 2: with nats.go's
// create-or-update every one of them timed out and exited). All start,
// all are ready, and each stream exists once, with the config asked for.
func TestCluster_ReplicasStartTogether(t *testing.T) {
	srvs := natstest.RunCluster(t, 3)
	const receivers = 3
	mains := make([]*app.Main, receivers)
	logs := make([]*testlog.Buffer, receivers)
	for i := range receivers {
		cfg, err := config.Parse(fmt.Appendf(nil, `
allow_sample_secrets: true # the official vectors; WeCom is never called here
http: {listen: "127.0.0.1:0"}
admin: {listen: ""}
nats: {url: %q, replicas: 3, connect_timeout: 5s, setup_timeout: 30s}
fetch: {poll_interval: 0s}
log: {level: warn}
apps:
  - name: archive
    mode: archive
    token: %s
    encoding_aes_key: %s
    api_base_url: http://127.0.0.1:1
    suite_id: wwsuite
    suite_secret: suite-secret
    corps: [{corp_id: wwcorp, permanent_code: perm-code}]
`, srvs[i].ClientURL(), testvectors.V1.Token, testvectors.V1.EncodingAESKey), t.TempDir(), noEnv)
		require.NoError(t, err)
		logs[i] = &testlog.Buffer{}
		mains[i] = app.NewMain(cfg, zerolog.New(logs[i]).Level(zerolog.WarnLevel).With().Int("replica", i+1).Logger())
	}

	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	start := make(chan struct{})
	errs := make([]error, receivers)
	var wg sync.WaitGroup
	for i, m := range mains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = m.Open(ctx)
		}()
		t.Cleanup(func() {
			if errs[i] != nil {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			assert.NoError(t, m.Close(ctx))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "replica %d; log:\n%s", i+1, logs[i].String())
	}
	for i, m := range mains {
		natstest.WaitFor(t, 10*time.Second, func() error { return m.Ready(ctx) })
		assert.NotContains(t, logs[i].String(), "consumer stopped", "replica %d", i+1)
	}

	_, js := natstest.Connect(t, srvs[0])
	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	for _, want := range []string{intake.StreamName, publish.StreamName} {
		assert.Equal(t, 1, countOf(names, want), want)
		s, err := js.Stream(ctx, want)
		require.NoError(t, err)
		assert.Equal(t, 3, s.CachedInfo().Config.Replicas, want)
		assert.Positive(t, s.CachedInfo().Config.MaxBytes, want)
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}
