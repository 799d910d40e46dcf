package wecom

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestClient_RefusesRedirects: a 307 from the API address is an error, and
// the request (secrets and all) never reaches where it pointed.
func TestClient_RefusesRedirects(t *testing.T) {
	var reached atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		reply(w, map[string]any{"errcode": 0})
	}))
	t.Cleanup(target.Close)
	var asked atomic.Int64
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		// Where a forwarding hop would send it: same path and query.
		http.Redirect(w, r, target.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)

	for _, tc := range []struct {
		name string
		app  App
		opts []Option
	}{
		{"ArchiveGetSuiteToken", archiveApp(redirector.URL), nil},
		{"ZoneGetToken", zoneApp(redirector.URL, false), nil},
		// A client of the caller's, following redirects by default, is
		// not followed either and stays as it was.
		{"CallersClient", zoneApp(redirector.URL, false), []Option{WithHTTPClient(&http.Client{})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := asked.Load()
			c, _ := mustClient(t, tc.app, nil, tc.opts...)
			_, err := c.GetRule(natstest.Context(t), "", "r1")
			require.ErrorIs(t, err, ErrRedirect)
			var se *StatusError
			if assert.ErrorAs(t, err, &se) {
				assert.Equal(t, http.StatusTemporaryRedirect, se.StatusCode, "counted as http_307")
			}
			assert.False(t, IsRetryable(err), "not retried")
			for _, secret := range []string{testSecret, testSuiteSec, testTicket, testPermCode, target.URL} {
				assert.NotContains(t, err.Error(), secret)
			}
			assert.Equal(t, int64(1), asked.Load()-before, "one request, not retried")
			assert.Zero(t, reached.Load(), "the redirect target received nothing")
		})
	}
	hc := &http.Client{}
	_, err := New(zoneApp(redirector.URL, false), nil, WithHTTPClient(hc))
	require.NoError(t, err)
	assert.Nil(t, hc.CheckRedirect, "the caller's client is not modified")
}

// TestNew_WarnsPlainHTTP: plain http to anything but loopback is logged as
// a warning when the client is built (at start).
func TestNew_WarnsPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		base string
		warn bool
	}{
		{"http://wecom-proxy.internal:8080", true},
		{"http://10.0.0.5", true},
		{"HTTP://qyapi.weixin.qq.com", true},
		{"https://qyapi.weixin.qq.com", false},
		{"", false}, // the default, https
		{"http://127.0.0.1:8081", false},
		{"http://[::1]:8081", false},
		{"http://localhost:8081", false},
	} {
		t.Run(tc.base, func(t *testing.T) {
			var log bytes.Buffer
			_, err := New(zoneApp(tc.base, false), nil, WithLogger(zerolog.New(&log)))
			require.NoError(t, err)
			if !tc.warn {
				assert.Empty(t, log.String())
				return
			}
			assert.Equal(t, 1, bytes.Count(log.Bytes(), []byte(`"level":"warn"`)), log.String())
			assert.Contains(t, log.String(), "plain http")
		})
	}
}
