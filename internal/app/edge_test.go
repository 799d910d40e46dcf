package app_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// TestRun_ServeRefusesSampleSecrets: with WeCom's published sample Token
// and EncodingAESKey in the environment, serve exits before touching
// anything and says which variables to set.
func TestRun_ServeRefusesSampleSecrets(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "receiver.yaml")
	example, err := os.ReadFile("../../configs/receiver.example.yaml")
	require.NoError(t, err)
	text := strings.NewReplacer("127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:9090", "127.0.0.1:0",
		"127.0.0.1:4222", "", "../data/nats", "nats").Replace(string(example))
	require.NoError(t, os.WriteFile(cfgPath, []byte(text), 0o600))

	for _, tt := range []struct {
		name string
		env  func(string) (string, bool)
		want []string
	}{
		{"ErrSample", envOf(sampleEnv), []string{
			"apps[0].token: is WeCom's published sample Token", "set WECOM_ARCHIVE_TOKEN to",
			"apps[0].encoding_aes_key: is WeCom's published sample EncodingAESKey", "set WECOM_ARCHIVE_AES_KEY to",
		}},
		{"ErrUnset", noEnv, []string{"environment variable WECOM_ARCHIVE_TOKEN is not set"}},
		{"ErrEmpty", envOf(exampleEnv, "WECOM_ARCHIVE_AES_KEY", ""), []string{
			"apps[0].encoding_aes_key: required (set WECOM_ARCHIVE_AES_KEY, which is empty)",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr testlog.Buffer
			code := run(context.Background(), []string{"serve", "-config", cfgPath}, cli.Env{LookupEnv: tt.env, Stdout: io.Discard, Stderr: &stderr})
			assert.Equal(t, 1, code)
			for _, w := range tt.want {
				assert.Contains(t, stderr.String(), w)
			}
			assert.NotContains(t, stderr.String(), "receiver started")
			assert.NotContains(t, stderr.String(), testvectors.V1.EncodingAESKey, "no secret value in errors")
			assert.NoDirExists(t, filepath.Join(dir, "nats"), "nothing created")
		})
	}
}

// TestRun_LocalSimRecipe follows the README's by-hand recipe: serve with
// configs/receiver.local-sim.yaml, and the simulator with its defaults
// (cmd/wecomsim checks they match the file) calling it back. Only the ports
// and the store move, so that tests run side by side.
func TestRun_LocalSimRecipe(t *testing.T) {
	const path = "../../configs/receiver.local-sim.yaml"
	orig, err := loadConfigFile(path)
	require.NoError(t, err)
	a := orig.Apps[0]

	// The receiver's port is reserved, closed and handed to serve through
	// the file: serve binds by address, as it does for the recipe.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpAddr := lis.Addr().String()
	require.NoError(t, lis.Close())

	sim, err := wecomsim.New(wecomsim.Options{
		Seed: 3, Speed: 60,
		Archive: wecomsim.Archive{
			SuiteID: a.SuiteID, SuiteSecret: a.SuiteSecret.Reveal(),
			Corps: []wecomsim.Corp{{CorpID: a.Corps[0].CorpID, PermanentCode: a.Corps[0].PermanentCode.Reveal()}},
			Token: a.Token.Reveal(), EncodingAESKey: a.EncodingAESKey.Reveal(),
			CallbackURL: "http://" + httpAddr + "/callback/" + a.Name,
		},
	}, zerolog.Nop())
	require.NoError(t, err)
	require.NoError(t, sim.SeedDemoRules())

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dir := t.TempDir()
	text := strings.NewReplacer("127.0.0.1:8080", httpAddr, "127.0.0.1:9090", "127.0.0.1:0",
		"127.0.0.1:4222", "127.0.0.1:0", "../data/local-sim/nats", "nats",
		"http://127.0.0.1:8090", "http://"+"SIM").Replace(string(data))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, sim.Start(ctx, "127.0.0.1:0"))
	t.Cleanup(func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = sim.Close(closeCtx)
	})
	text = strings.Replace(text, "http://SIM", sim.URL(), 1)
	cfgPath := filepath.Join(dir, "receiver.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(text), 0o600))

	var stderr testlog.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-config", cfgPath}, cli.Env{LookupEnv: noEnv, Stdout: io.Discard, Stderr: &stderr})
	}()
	// The simulator's suite_ticket and hit callbacks, signed with the
	// file's secrets, are acknowledged, and its hits are fetched.
	natstest.WaitFor(t, 20*time.Second, func() error {
		st := sim.Stats()
		if st.Callbacks[wecomsim.CallbackSuiteTicket].Delivered == 0 || st.Callbacks[wecomsim.CallbackHitKeyword].Delivered == 0 {
			return fmt.Errorf("callbacks delivered: %+v; log: %s", st.Callbacks, stderr.String())
		}
		if st.Requests["get_hit_msg_list"] == 0 {
			return fmt.Errorf("no hits fetched: %+v", st.Requests)
		}
		return nil
	})
	assert.Contains(t, stderr.String(), "allow_sample_secrets is true", "the opt-in is logged at start")
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// loadConfigFile loads a configuration with no environment.
func loadConfigFile(path string) (*config.Config, error) {
	return cli.Env{LookupEnv: noEnv}.LoadConfig(path)
}

// rawGet sends GET path on c, with extra header lines, and reads the
// response.
func rawGet(c net.Conn, br *bufio.Reader, path, headers string) (*http.Response, error) {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path, headers); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// TestServe_ConnectionLimit: past http.max_connections a new connection is
// closed at once, and the connections already open keep working; once one
// closes, a new one is served.
func TestServe_ConnectionLimit(t *testing.T) {
	cfg := testConfig(t, "1h", "3s", "")
	cfg.HTTP.MaxConnections = 2
	m, _ := startMain(t, cfg)

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", m.Addr())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	var open []net.Conn
	var readers []*bufio.Reader
	for range 2 {
		c, br := dial()
		resp, err := rawGet(c, br, "/healthz", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		open, readers = append(open, c), append(readers, br)
	}

	extra, br := dial()
	require.NoError(t, extra.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := rawGet(extra, br, "/healthz", "")
	require.Error(t, err, "the third connection is refused")
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "closed, not left waiting: %v", err)

	for i, c := range open {
		resp, err := rawGet(c, readers[i], "/healthz", "")
		require.NoError(t, err, "established connection %d still served", i)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}

	require.NoError(t, open[0].Close())
	natstest.WaitFor(t, 5*time.Second, func() error {
		c, br := dial()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		resp, err := rawGet(c, br, "/healthz", "")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// TestServe_HeaderLimit: a 64 KiB header gets 431 on both listeners, and an
// ordinary one passes.
func TestServe_HeaderLimit(t *testing.T) {
	m, _ := startMain(t, testConfig(t, "1h", "3s", ""))
	for _, addr := range []string{m.Addr(), m.AdminAddr()} {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
		require.NoError(t, err)
		req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, addr)

		req.Header.Set("X-Big", strings.Repeat("a", 8<<10))
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, addr)
	}
}

// TestServe_RequestID: a client's X-Request-Id is kept only when short and
// plain; otherwise the server makes its own, and the client's value never
// reaches the log.
func TestServe_RequestID(t *testing.T) {
	m, logs := startMain(t, testConfig(t, "1h", "3s", ""))
	get := func(id string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "http://"+m.Addr()+"/callback/v1", nil)
		require.NoError(t, err)
		if id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Request-Id")
	}

	t.Run("OneMegabyte", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, "http://"+m.Addr()+"/callback/v1", nil)
		require.NoError(t, err)
		req.Header.Set("X-Request-Id", strings.Repeat("R", 1<<20))
		// The server may answer 431 and close before the client has
		// written the whole header; either way nothing is logged.
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
		}
		status, _ := get("") // a request that is logged, after the big one
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Contains(t, logs.String(), `"message":"callback"`)
		assert.NotContains(t, logs.String(), strings.Repeat("R", 64))
	})
	for _, tt := range []struct{ name, id string }{
		{"TooLong", strings.Repeat("L", 65)},
		{"NotPlain", `id"},"x":"y`},
		{"Spaces", "an id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, echoed := get(tt.id)
			assert.Equal(t, http.StatusBadRequest, status)
			assert.NotEqual(t, tt.id, echoed)
			assert.Regexp(t, `^[A-Za-z0-9]{22}$`, echoed, "a server-made id")
			assert.NotContains(t, logs.String(), tt.id)
			assert.Contains(t, logs.String(), `"request_id":"`+echoed+`"`)
		})
	}
	t.Run("OKPlain", func(t *testing.T) {
		id := "proxy-7f3a.b_" + strings.Repeat("9", 51) // 64 characters
		status, echoed := get(id)
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Equal(t, id, echoed)
		assert.Contains(t, logs.String(), `"request_id":"`+id+`"`)
	})
	t.Run("RemoteAddr", func(t *testing.T) {
		assert.Regexp(t, `"remote_addr":"127\.0\.0\.1:\d+"`, logs.String(), "callback lines carry the client address")
	})
}

// TestAdmin_Host: the admin listener answers only to its own names and to
// IP addresses, so a page that rebinds its domain to 127.0.0.1 cannot read
// /metrics or call /api from a browser; /healthz answers any Host.
func TestAdmin_Host(t *testing.T) {
	const token = "admin-token-for-tests-0123"
	cfg := testConfig(t, "0s", "3s", "")
	cfg.Admin.Token = config.Secret(token)
	cfg.Admin.AllowedHosts = []string{"receiver-1.internal"}
	m, _ := startMain(t, cfg)
	_, port, err := net.SplitHostPort(m.AdminAddr())
	require.NoError(t, err)

	for _, tt := range []struct {
		name, host, path string
		status           int
	}{
		{"OKListenAddr", "127.0.0.1:" + port, "/metrics", http.StatusOK},
		{"OKLocalhost", "localhost:" + port, "/metrics", http.StatusOK},
		{"OKLocalhostNoPort", "LOCALHOST", "/readyz", http.StatusOK},
		{"OKIPv6Loopback", "[::1]:" + port, "/api/ping", http.StatusOK},
		{"OKAllowed", "receiver-1.internal:" + port, "/api/ping", http.StatusOK},
		{"OKAnyIP", "10.1.2.3:" + port, "/metrics", http.StatusOK},
		{"OKAnyIPv6", "[fd00::5]:" + port, "/metrics", http.StatusOK},
		{"ErrOtherName", "receiver-2.internal:" + port, "/metrics", http.StatusMisdirectedRequest},
		{"OKHealthzAnyHost", "evil.example", "/healthz", http.StatusOK},
		{"ErrMetrics", "evil.example:" + port, "/metrics", http.StatusMisdirectedRequest},
		{"ErrAPI", "evil.example", "/api/ping", http.StatusMisdirectedRequest},
		{"ErrReadyz", "evil.example", "/readyz", http.StatusMisdirectedRequest},
		{"ErrSuffix", "localhost.evil.example", "/metrics", http.StatusMisdirectedRequest},
		{"ErrUnknownPath", "evil.example", "/nothing", http.StatusMisdirectedRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+m.AdminAddr()+tt.path, nil)
			require.NoError(t, err)
			req.Host = tt.host
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.status, resp.StatusCode, string(body))
		})
	}
}

// TestServe_ReadyzBody: the public /readyz says only "not ready"; the
// reason goes to the admin listener and, once, to the log.
func TestServe_ReadyzBody(t *testing.T) {
	m, logs := startMain(t, testConfig(t, "1h", "3s", ""))
	m.Draining().Store(true)
	for range 3 {
		status, body := send(t, http.MethodGet, "http://"+m.Addr()+"/readyz", "")
		assert.Equal(t, http.StatusServiceUnavailable, status)
		assert.Equal(t, "not ready\n", body)
	}
	status, body := send(t, http.MethodGet, "http://"+m.AdminAddr()+"/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "not ready: draining\n", body)
	assert.Equal(t, 1, strings.Count(logs.String(), `"not ready"`), "logged once, not per probe: %s", logs.String())
}

// TestServerErrorLog: net/http's own messages come out as zerolog warnings.
func TestServerErrorLog(t *testing.T) {
	var logs testlog.Buffer
	srv := app.NewServer("callback", http.NotFoundHandler(), zerolog.New(&logs), time.Second, time.Second)
	srv.ErrorLog.Printf("http: TLS handshake error from %s: EOF", "127.0.0.1:1")
	assert.JSONEq(t, `{"level":"warn","listener":"callback","component":"http","message":"http: TLS handshake error from 127.0.0.1:1: EOF"}`,
		strings.TrimSpace(logs.String()))
}
