package admin_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/admin"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/testlog"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

const testToken = "admin-token-for-tests-0123"

// do calls srv with a token ("" for none) and returns the status and body.
func do(t testing.TB, srv *httptest.Server, method, path, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// serve serves h over real HTTP until the test ends.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// readiness is a Checker whose answer the test sets.
type readiness struct{ err atomic.Pointer[error] }

func (r *readiness) set(err error) { r.err.Store(&err) }

func (r *readiness) Ready(context.Context) error {
	if p := r.err.Load(); p != nil {
		return *p
	}
	return nil
}

// statusCalls is an API whose only working part is a status reader that
// counts its calls; every other part refuses, so a test sees what ran.
func statusCalls(calls *atomic.Int32, draining *atomic.Bool) admin.API {
	none := admin.AppsFunc(func(string) (*wecom.Client, bool) { return nil, false })
	return admin.API{
		Status: admin.StatusFunc(func(context.Context) (health.Report, error) {
			calls.Add(1)
			return health.Report{}, nil
		}),
		Apps:        none,
		Directory:   corps.NewDirectory(nil, nil),
		RuleNames:   nopNames{},
		DeadLetters: &deadLetters{},
		Corps:       &corpList{},
		Draining:    draining.Load,
	}
}

// serveStatusCalls serves the API of statusCalls.
func serveStatusCalls(t testing.TB, calls *atomic.Int32, draining *atomic.Bool) *httptest.Server {
	t.Helper()
	h, err := admin.New(&readiness{}, prometheus.NewRegistry(), admin.WithAPI(testToken, statusCalls(calls, draining)))
	require.NoError(t, err)
	return serve(t, h)
}

type nopNames struct{}

func (nopNames) Set(string, string, string) {}

func TestNew(t *testing.T) {
	ok := admin.CheckerFunc(func(context.Context) error { return nil })
	reg := prometheus.NewRegistry()
	var calls atomic.Int32
	var draining atomic.Bool
	full := statusCalls(&calls, &draining)
	noCorps := full
	noCorps.Corps = nil
	noDraining := full
	noDraining.Draining = nil
	for _, tt := range []struct {
		name  string
		ready admin.Checker
		reg   *prometheus.Registry
		opts  []admin.Option
		want  string
	}{
		{"OK", ok, reg, nil, ""},
		{"OKWithAPI", ok, reg, []admin.Option{admin.WithAPI(testToken, full)}, ""},
		{"ErrNilChecker", nil, reg, nil, "nil readiness checker"},
		{"ErrNilRegistry", ok, nil, nil, "nil metrics registry"},
		{"ErrEmptyToken", ok, reg, []admin.Option{admin.WithAPI("", full)}, "WithAPI: empty token"},
		{"ErrNoCorps", ok, reg, []admin.Option{admin.WithAPI(testToken, noCorps)}, "WithAPI: nil Corps"},
		{"ErrNoDraining", ok, reg, []admin.Option{admin.WithAPI(testToken, noDraining)}, "WithAPI: nil Draining"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := admin.New(tt.ready, tt.reg, tt.opts...)
			if tt.want == "" {
				require.NoError(t, err)
				assert.Equal(t, len(tt.opts) > 0, h.APIOn())
				return
			}
			require.ErrorIs(t, err, admin.ErrInvalidOption)
			assert.ErrorContains(t, err, tt.want)
			assert.NotContains(t, err.Error(), testToken)
		})
	}
}

// TestHandler_Probes: /healthz always answers; /readyz says why only on
// the admin listener, and each distinct failure is logged once.
func TestHandler_Probes(t *testing.T) {
	var ready readiness
	var logs testlog.Buffer
	reg := prometheus.NewRegistry()
	h, err := admin.New(&ready, reg, admin.WithLogger(zerolog.New(&logs)))
	require.NoError(t, err)
	adminSrv := serve(t, h)
	public := chi.NewRouter()
	h.MountProbes(public)
	publicSrv := serve(t, public)

	probe := func(srv *httptest.Server, path string, wantStatus int, wantBody string) {
		t.Helper()
		status, body := do(t, srv, http.MethodGet, path, "", "")
		assert.Equal(t, wantStatus, status, path)
		assert.Equal(t, wantBody, body, path)
	}
	for _, srv := range []*httptest.Server{adminSrv, publicSrv} {
		probe(srv, "/healthz", http.StatusOK, "ok\n")
		probe(srv, "/readyz", http.StatusOK, "ready\n")
	}

	ready.set(errors.New("nats: no servers available"))
	for range 3 {
		probe(publicSrv, "/readyz", http.StatusServiceUnavailable, "not ready\n")
		probe(adminSrv, "/readyz", http.StatusServiceUnavailable, "not ready: nats: no servers available\n")
		probe(publicSrv, "/healthz", http.StatusOK, "ok\n")
	}
	assert.Equal(t, 1, strings.Count(logs.String(), `"not ready"`), "once per failure: %s", logs.String())
	assert.Contains(t, logs.String(), `"error":"nats: no servers available"`)

	ready.set(errors.New("draining"))
	status, _ := do(t, publicSrv, http.MethodGet, "/readyz", "", "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, 2, strings.Count(logs.String(), `"not ready"`), "a new failure is logged: %s", logs.String())
	ready.set(nil)
	status, _ = do(t, adminSrv, http.MethodGet, "/readyz", "", "")
	assert.Equal(t, http.StatusOK, status)
	ready.set(errors.New("draining"))
	do(t, adminSrv, http.MethodGet, "/readyz", "", "")
	assert.Equal(t, 3, strings.Count(logs.String(), `"not ready"`), "logged again after a recovery: %s", logs.String())

	t.Run("MetricsNoAPI", func(t *testing.T) {
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "admin_test_total", Help: "test"}))
		status, body := do(t, adminSrv, http.MethodGet, "/metrics", "", "")
		assert.Equal(t, http.StatusOK, status)
		assert.Contains(t, body, "admin_test_total 0")
		status, _ = do(t, adminSrv, http.MethodGet, "/api/ping", testToken, "")
		assert.Equal(t, http.StatusNotFound, status, "no API without WithAPI")
		status, _ = do(t, publicSrv, http.MethodGet, "/metrics", "", "")
		assert.Equal(t, http.StatusNotFound, status, "the probes lend nothing else")
	})
}

// TestBearerAuth: a refused request never reaches a handler.
func TestBearerAuth(t *testing.T) {
	var calls atomic.Int32
	var draining atomic.Bool
	srv := serveStatusCalls(t, &calls, &draining)
	for _, tt := range []struct {
		name, header string
		want         int
	}{
		{"OK", "Bearer " + testToken, http.StatusOK},
		{"LowerCaseScheme", "bearer " + testToken, http.StatusOK},
		{"ErrMissing", "", http.StatusUnauthorized},
		{"ErrWrong", "Bearer " + testToken[:len(testToken)-1] + "x", http.StatusUnauthorized},
		{"ErrLonger", "Bearer " + testToken + "0", http.StatusUnauthorized},
		{"ErrPrefix", "Bearer " + testToken[:10], http.StatusUnauthorized},
		{"ErrEmpty", "Bearer ", http.StatusUnauthorized},
		{"ErrBlank", "Bearer  ", http.StatusUnauthorized},
		{"ErrBasic", "Basic " + testToken, http.StatusUnauthorized},
		{"ErrNoScheme", testToken, http.StatusUnauthorized},
		{"ErrExtra", "bearer " + testToken + " extra", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/status", nil)
			require.NoError(t, err)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tt.want, resp.StatusCode)
			if tt.want == http.StatusOK {
				assert.Equal(t, before+1, calls.Load())
				return
			}
			assert.Equal(t, before, calls.Load(), "handler not called")
			assert.Equal(t, "401 unauthorized\n", string(body))
			assert.Equal(t, `Bearer realm="receiver admin"`, resp.Header.Get("WWW-Authenticate"))
		})
	}
	t.Run("UnknownPathNeedsToken", func(t *testing.T) {
		status, body := do(t, srv, http.MethodGet, "/api/nothing", "", "")
		assert.Equal(t, http.StatusUnauthorized, status)
		assert.Equal(t, "401 unauthorized\n", body)
		status, _ = do(t, srv, http.MethodGet, "/api/nothing", testToken, "")
		assert.Equal(t, http.StatusNotFound, status)
	})
	t.Run("Ping", func(t *testing.T) {
		status, body := do(t, srv, http.MethodGet, "/api/ping", testToken, "")
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, "pong\n", body)
	})
	t.Run("ProbesNeedNoToken", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			status, _ := do(t, srv, http.MethodGet, p, "", "")
			assert.Equal(t, http.StatusOK, status, p)
		}
	})
}

// TestAPI_Draining: once shutdown has begun the API refuses with 503, and
// nothing behind it runs; the probes still answer.
func TestAPI_Draining(t *testing.T) {
	var calls atomic.Int32
	var draining atomic.Bool
	srv := serveStatusCalls(t, &calls, &draining)
	draining.Store(true)
	status, body := do(t, srv, http.MethodGet, "/api/status", testToken, "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.JSONEq(t, `{"error":"shutting down"}`, body)
	assert.Zero(t, calls.Load())
	status, _ = do(t, srv, http.MethodGet, "/api/status", "", "")
	assert.Equal(t, http.StatusUnauthorized, status, "the token is checked first")
	status, _ = do(t, srv, http.MethodGet, "/healthz", "", "")
	assert.Equal(t, http.StatusOK, status)
	draining.Store(false)
	status, _ = do(t, srv, http.MethodGet, "/api/status", testToken, "")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, int32(1), calls.Load())
}
