package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// noEnv is an empty environment: tests never see the developer's variables.
func noEnv(string) (string, bool) { return "", false }

// exampleEnv holds the secrets configs/receiver.example.yaml reads, none of
// them a sample value; sampleEnv sets WeCom's published samples instead.
var (
	exampleEnv = map[string]string{
		"WECOM_ARCHIVE_TOKEN":          "Tk7pLm2Q",
		"WECOM_ARCHIVE_AES_KEY":        "k3Vq9ZrT2mXw8LpB4nYc6HsD1fGj5aQe7uKo0RtWxEz",
		"WECOM_ARCHIVE_SUITE_SECRET":   "suite-secret-value",
		"WECOM_ARCHIVE_PERMANENT_CODE": "permanent-code-value",
	}
	sampleEnv = map[string]string{
		"WECOM_ARCHIVE_TOKEN":          testvectors.V1.Token,
		"WECOM_ARCHIVE_AES_KEY":        testvectors.V1.EncodingAESKey,
		"WECOM_ARCHIVE_SUITE_SECRET":   "suite-secret-value",
		"WECOM_ARCHIVE_PERMANENT_CODE": "permanent-code-value",
	}
)

// envOf is an environment with vars, and then each key and value of kv.
func envOf(vars map[string]string, kv ...string) func(string) (string, bool) {
	m := maps.Clone(vars)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// testConfig is a configuration with the two official sample apps, v1 and
// v2, on 127.0.0.1:0 with an embedded NATS server in a temporary directory.
func testConfig(t *testing.T, window, ackTimeout, natsURL string) *config.Config {
	t.Helper()
	// WeCom is never reached from tests: port 9 on loopback refuses, so a
	// fetch started by a test callback fails fast and stays local.
	// The official vectors' apps: a test rig, so sample secrets are allowed.
	yaml := fmt.Sprintf(`
allow_sample_secrets: true
fetch:
  poll_interval: 0s
admin:
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
  max_body_bytes: 1024
  ack_timeout: %s
  timestamp_window: %s
nats:
  url: %q
  store_dir: nats
  connect_timeout: 2s
log:
  level: debug
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
  - name: v2
    mode: archive
    token: %s
    encoding_aes_key: %s
    receive_id: %s
    api_base_url: http://127.0.0.1:9
    suite_id: wwArchiveSuite02
    suite_secret: s3cr3t-suite
    corps: [{corp_id: wwCorpABC123, permanent_code: perm-code-1}]
`, ackTimeout, window, natsURL,
		testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID,
		testvectors.V2.Token, testvectors.V2.EncodingAESKey, testvectors.V2.ReceiveID)
	cfg, err := config.Parse([]byte(yaml), t.TempDir(), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	return cfg
}

// startMain runs the service in-process and stops it at the end of the test.
func startMain(t *testing.T, cfg *config.Config) (*app.Main, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	m := app.NewMain(cfg, zerolog.New(logs))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, m.Open(ctx))
	t.Cleanup(func() {
		// The service's own default shutdown budget (http.shutdown_timeout).
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		assert.NoError(t, m.Close(ctx))
	})
	return m, logs
}

// callbackURL is the URL of appName's callbacks on m, with query q.
func callbackURL(m *app.Main, appName string, q url.Values) string {
	return "http://" + m.Addr() + "/callback/" + appName + "?" + q.Encode()
}

func send(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// records reads every record in WECOM_CALLBACKS through a fresh ordered
// consumer, with the subject each was stored on.
func records(t *testing.T, js jetstream.JetStream) map[string]wecomhit.Callback {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, intake.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	out := map[string]wecomhit.Callback{}
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		var cb wecomhit.Callback
		require.NoError(t, json.Unmarshal(msg.Data, &cb))
		require.Equal(t, cb.ID, intake.RecordID(msg.Header), "record %d's id header", seq)
		out[msg.Subject+" "+cb.ID] = cb
	}
	return out
}

// idHeaders counts WECOM_CALLBACKS' records by the header their id is in:
// intake.IDHeader when the receiver owns the embedded server's store,
// Nats-Msg-Id on an external NATS.
func idHeaders(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, intake.StreamName)
	require.NoError(t, err)
	st := s.CachedInfo().State
	out := map[string]int{}
	for seq := st.FirstSeq; seq <= st.LastSeq && st.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		for _, h := range []string{intake.IDHeader, jetstream.MsgIDHeader} {
			if len(msg.Header.Values(h)) > 0 {
				out[h]++
			}
		}
	}
	return out
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, intake.StreamName)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

func TestServe_OfficialVectors(t *testing.T) {
	m, _ := startMain(t, testConfig(t, "0s", "3s", ""))
	apps := map[testvectors.App]string{testvectors.V1: "v1", testvectors.V2: "v2"}
	stored := 0
	for _, v := range testvectors.All() {
		t.Run(v.Name, func(t *testing.T) {
			q := callbacktest.Query(v.Signature, v.Timestamp, v.Nonce)
			switch v.Format {
			case "get":
				status, body := send(t, http.MethodGet, callbackURL(m, apps[v.App], callbacktest.WithEcho(q, v.Encrypt)), "")
				assert.Equal(t, http.StatusOK, status)
				assert.Equal(t, v.Plaintext, body)
			case "xml":
				status, body := send(t, http.MethodPost, callbackURL(m, apps[v.App], q), callbacktest.XMLEnvelope(v.Encrypt))
				assert.Equal(t, http.StatusOK, status)
				assert.Equal(t, "success", body)
				stored++
			case "json":
				status, body := send(t, http.MethodPost, callbackURL(m, apps[v.App], q), callbacktest.JSONEnvelope(v.App.ReceiveID, v.Encrypt))
				assert.Equal(t, http.StatusOK, status)
				assert.Equal(t, "success", body)
				stored++
			}
		})
	}
	recs := records(t, m.Broker().JetStream())
	require.Len(t, recs, stored)
	assert.Equal(t, map[string]int{intake.IDHeader: stored}, idHeaders(t, m.Broker().JetStream()),
		"the receiver owns the embedded store and keeps the callback ids itself")
	for key, cb := range recs {
		assert.Equal(t, wecomhit.KindUnknown, cb.Kind, "the samples are text messages, kept as unknown")
		assert.True(t, strings.HasPrefix(key, "wecom.callback."+cb.App+".unknown "), key)
		assert.NotEmpty(t, cb.Raw)
	}
}

func TestServe_HitKeywordStoredOnce(t *testing.T) {
	m, logs := startMain(t, testConfig(t, "1h", "3s", ""))
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	q, enc := callbacktest.Seal(t, c, callbacktest.HitKeywordXML, strconv.FormatInt(time.Now().Unix(), 10))

	for i := 0; i < 3; i++ { // WeCom's retries of one delivery
		status, body := send(t, http.MethodPost, callbackURL(m, "v1", q), callbacktest.XMLEnvelope(enc))
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, "success", body)
	}
	recs := records(t, m.Broker().JetStream())
	require.Len(t, recs, 1)
	for key, cb := range recs {
		assert.Equal(t, "wecom.callback.v1.hit_keyword "+cb.ID, key)
		assert.Equal(t, wecomhit.KindHitKeyword, cb.Kind)
		assert.Equal(t, callbacktest.HitToken, cb.Token)
		assert.Equal(t, "wwCorpABC123", cb.CorpID)
		assert.Equal(t, "wwArchiveSuite01", cb.SuiteID)
		assert.Equal(t, int64(1717000000), cb.EventTime)
		assert.WithinDuration(t, time.Now(), cb.ReceivedAt, time.Minute)
		assert.Equal(t, callbacktest.HitKeywordXML, cb.Raw)
	}
	assert.NotContains(t, logs.String(), callbacktest.HitToken)
}

// TestServe_BadInput sends every refused request to the real service and
// checks the status, that WECOM_CALLBACKS stays empty, and the logs.
func TestServe_BadInput(t *testing.T) {
	m, logs := startMain(t, testConfig(t, "1h", "3s", ""))
	js := m.Broker().JetStream()
	for _, tt := range callbacktest.Bad(t, "v1", "v2", time.Now()) {
		t.Run(tt.Name, func(t *testing.T) {
			status, body := send(t, tt.Method, callbackURL(m, tt.App, tt.Query), tt.Body)
			assert.Equal(t, tt.Status, status)
			assert.Equal(t, strconv.Itoa(tt.Status)+" "+tt.Reason+"\n", body)
			assert.Zero(t, streamMsgs(t, js), "nothing stored")
		})
	}
	out := logs.String()
	for _, tt := range callbacktest.Bad(t, "v1", "v2", time.Now()) {
		assert.Contains(t, out, `"reason":"`+tt.Reason+`"`)
	}
	for _, s := range append(callbacktest.Secrets(), "s3cr3t-suite", "perm-code-1") {
		assert.NotContains(t, out, s)
	}
}

// TestServe_NATSOutage: with NATS down the POST gets 503 within the ack
// deadline; once NATS is back, WeCom's retry is stored, exactly once.
func TestServe_NATSOutage(t *testing.T) {
	store := t.TempDir()
	srv := natstest.RunServer(t, natstest.WithStoreDir(store))
	port := natstest.Port(t, srv)
	m, _ := startMain(t, testConfig(t, "1h", "500ms", srv.ClientURL()))

	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	q, enc := callbacktest.Seal(t, c, callbacktest.HitKeywordXML, strconv.FormatInt(time.Now().Unix(), 10))

	srv.Shutdown()
	srv.WaitForShutdown()
	natstest.WaitFor(t, 5*time.Second, func() error {
		if m.Broker().Ready() == nil {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	status, body := send(t, http.MethodPost, callbackURL(m, "v1", q), callbacktest.XMLEnvelope(enc))
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "503 store_timeout\n", body)
	status, _ = send(t, http.MethodGet, "http://"+m.Addr()+"/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, status)

	natstest.RunServer(t, natstest.WithStoreDir(store), natstest.WithPort(port))
	natstest.WaitFor(t, 10*time.Second, func() error { return m.Ready(context.Background()) })
	status, body = send(t, http.MethodPost, callbackURL(m, "v1", q), callbacktest.XMLEnvelope(enc))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "success", body)
	// The failed attempt may have been buffered and flushed on reconnect;
	// its Msg-Id is the same, so there is still one record.
	recs := records(t, m.Broker().JetStream())
	assert.Len(t, recs, 1)
	assert.Equal(t, map[string]int{jetstream.MsgIDHeader: 1}, idHeaders(t, m.Broker().JetStream()),
		"on an external NATS the server de-duplicates: one record, with its Nats-Msg-Id")
}

func TestServe_HealthAndReadiness(t *testing.T) {
	m, _ := startMain(t, testConfig(t, "1h", "3s", ""))
	status, body := send(t, http.MethodGet, "http://"+m.Addr()+"/healthz", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ok\n", body)
	status, body = send(t, http.MethodGet, "http://"+m.Addr()+"/readyz", "")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ready\n", body)

	// Draining fails readiness first, before anything stops.
	m.Draining().Store(true)
	status, body = send(t, http.MethodGet, "http://"+m.Addr()+"/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, "not ready\n", body, "no internals on the public port")
}

// TestRun_ServeAndSignal runs the serve subcommand as main does and stops it
// with ctx, as a signal would.
func TestRun_ServeAndSignal(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "receiver.yaml")
	example, err := os.ReadFile("../../configs/receiver.example.yaml")
	require.NoError(t, err)
	// Same file, but on free ports and a private store.
	text := strings.NewReplacer("127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:9090", "127.0.0.1:0", "127.0.0.1:4222", "", "../data/nats", "nats",
		"https://qyapi.weixin.qq.com", "http://127.0.0.1:9").Replace(string(example))
	require.NoError(t, os.WriteFile(cfgPath, []byte(text), 0o600))

	var stderr testlog.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-config", cfgPath}, cli.Env{LookupEnv: envOf(exampleEnv), Stdout: io.Discard, Stderr: &stderr})
	}()
	natstest.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(stderr.String(), "receiver started") {
			return fmt.Errorf("not started: %s", stderr.String())
		}
		return nil
	})
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	assert.Contains(t, stderr.String(), "shutting down")
}

func TestRun_CheckConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`
apps:
  - name: a
    mode: archive
    token: tok
    encoding_aes_key: tooshort
`), 0o600))

	tests := []struct {
		name       string
		args       []string
		lookupEnv  func(string) (string, bool)
		code       int
		stdout     string
		stderrHave []string
	}{
		{"OK", []string{"check-config", "-config", "../../configs/receiver.example.yaml"}, envOf(exampleEnv), 0, "OK (1 app: archive; nats: embedded", nil},
		{"OKFromEnv", []string{"check-config"}, envOf(exampleEnv, "RECEIVER_CONFIG", "../../configs/receiver.example.yaml"), 0, "OK", nil},
		{"OKLocalSim", []string{"check-config", "-config", "../../configs/receiver.local-sim.yaml"}, noEnv, 0, "OK (1 app: archive", []string{
			"warning: allow_sample_secrets is true",
		}},
		{"ErrExampleNeedsEnv", []string{"check-config", "-config", "../../configs/receiver.example.yaml"}, noEnv, 1, "", []string{
			"apps[0].token: environment variable WECOM_ARCHIVE_TOKEN is not set",
			"apps[0].encoding_aes_key: environment variable WECOM_ARCHIVE_AES_KEY is not set",
		}},
		{"ErrSampleSecrets", []string{"check-config", "-config", "../../configs/receiver.example.yaml"}, envOf(sampleEnv), 1, "", []string{
			"apps[0].token: is WeCom's published sample Token, with which anyone can sign callbacks: set WECOM_ARCHIVE_TOKEN to the app's callback Token",
			"apps[0].encoding_aes_key: is WeCom's published sample EncodingAESKey, with which anyone can encrypt callbacks: set WECOM_ARCHIVE_AES_KEY to the app's EncodingAESKey",
		}},
		{"ErrEmptySecret", []string{"check-config", "-config", "../../configs/receiver.example.yaml"}, envOf(exampleEnv, "WECOM_ARCHIVE_SUITE_SECRET", ""), 1, "", []string{
			"apps[0].suite_secret: required when mode is archive (set WECOM_ARCHIVE_SUITE_SECRET, which is empty)",
		}},
		{"ErrInvalid", []string{"check-config", "-config", bad}, noEnv, 1, "", []string{
			"apps[0].encoding_aes_key: must be 43 characters", "apps[0].suite_id: required",
		}},
		{"ErrInvalidJSON", []string{"check-config", "-config", bad, "-o", "json"}, noEnv, 1, `"valid":false,"problems":["apps[0].encoding_aes_key: must be 43 characters`, nil},
		{"OKJSON", []string{"check-config", "-config", "../../configs/receiver.local-sim.yaml", "-o", "json"}, noEnv, 0, `"valid":true,"apps":["archive"],"nats":"embedded, store `, nil},
		{"ErrNoConfig", []string{"check-config"}, noEnv, 2, "", []string{"-config FILE or RECEIVER_CONFIG is required"}},
		{"ErrUnknownFlag", []string{"check-config", "-x"}, noEnv, 2, "", []string{"flag provided but not defined: -x", `Run "receiver help check-config"`}},
		{"ErrMissingFile", []string{"check-config", "-config", filepath.Join(dir, "none.yaml")}, noEnv, 1, "", []string{"none.yaml"}},
		{"ErrUnknownCommand", []string{"frobnicate"}, noEnv, 2, "", []string{`unknown command "frobnicate"`}},
		{"ErrNoCommand", nil, noEnv, 2, "", []string{"Commands:"}},
		{"Version", []string{"version"}, noEnv, 0, "receiver ", nil},
		{"DashDashVersion", []string{"--version"}, noEnv, 0, "receiver ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, cli.Env{LookupEnv: tt.lookupEnv, Stdout: &stdout, Stderr: &stderr})
			assert.Equal(t, tt.code, code, stderr.String())
			assert.Contains(t, stdout.String(), tt.stdout)
			for _, s := range tt.stderrHave {
				assert.Contains(t, stderr.String(), s)
			}
			assert.NotContains(t, stderr.String(), "tooshort", "no secret value in errors")
			for _, v := range []string{testvectors.V1.Token, testvectors.V1.EncodingAESKey, exampleEnv["WECOM_ARCHIVE_SUITE_SECRET"]} {
				assert.NotContains(t, stderr.String(), v, "no secret value in errors")
			}
		})
	}
}

// TestServe_ReadyGrace: on shutdown the server keeps serving for
// http.ready_grace while /readyz fails, so a load balancer can notice.
func TestServe_ReadyGrace(t *testing.T) {
	cfg := testConfig(t, "1h", "3s", "")
	cfg.HTTP.ReadyGrace = time.Second
	m, _ := startMain(t, cfg)
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- m.Close(ctx)
	}()
	natstest.WaitFor(t, 5*time.Second, func() error {
		if status, _ := send(t, http.MethodGet, "http://"+m.Addr()+"/readyz", ""); status != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d", status)
		}
		return nil
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned during the grace: %v", err)
	default:
	}
	status, _ := send(t, http.MethodGet, "http://"+m.Addr()+"/healthz", "")
	assert.Equal(t, http.StatusOK, status, "still serving during the grace")
	require.NoError(t, <-closed)
}

// TestServe_RestartKeepsCallbackIDs: the receiver keeps the callback ids
// of its embedded store itself; one restarted reads them back, so WeCom's
// retry of a callback stored before the restart is one record still.
func TestServe_RestartKeepsCallbackIDs(t *testing.T) {
	cfg := testConfig(t, "1h", "3s", "")
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	require.NoError(t, err)
	q, enc := callbacktest.Seal(t, c, callbacktest.HitKeywordXML, strconv.FormatInt(time.Now().Unix(), 10))
	open := func() *app.Main {
		m := app.NewMain(cfg, zerolog.Nop())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, m.Open(ctx))
		return m
	}
	closeMain := func(m *app.Main) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, m.Close(ctx))
	}

	first := open()
	status, body := send(t, http.MethodPost, callbackURL(first, "v1", q), callbacktest.XMLEnvelope(enc))
	require.Equal(t, http.StatusOK, status, body)
	closeMain(first)

	again := open()
	defer closeMain(again)
	status, body = send(t, http.MethodPost, callbackURL(again, "v1", q), callbacktest.XMLEnvelope(enc))
	require.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, map[string]int{intake.IDHeader: 1}, idHeaders(t, again.Broker().JetStream()), "one record")
}
