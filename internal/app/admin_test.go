package app_test

import (
	"bytes"
	"github.com/wecomhit/wecomhit/internal/app"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// apiDo calls the admin API of m with a token ("" for none): for the
// tests that run the whole service. internal/admin tests the handlers.
func apiDo(t testing.TB, m *app.Main, method, path, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, "http://"+m.AdminAddr()+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}
