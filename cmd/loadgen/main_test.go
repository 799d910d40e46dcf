package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/callback"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/natstest"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

func env(name string) string {
	switch name {
	case "LOADGEN_TOKEN":
		return testvectors.V1.Token
	case "LOADGEN_ENCODING_AES_KEY":
		return testvectors.V1.EncodingAESKey
	}
	return ""
}

// TestRun_Smoke: a few dozen callbacks to the service's callback endpoint
// and intake, in process on a real NATS server; the report says all were
// answered 200 and stored, in text and in JSON.
func TestRun_Smoke(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv)
	store, err := intake.New(js, "wecom")
	require.NoError(t, err)
	require.NoError(t, store.Setup(context.Background()))
	v := testvectors.V1
	cr, err := crypto.New(v.Token, v.EncodingAESKey, v.ReceiveID)
	require.NoError(t, err)
	h, err := callback.New([]callback.App{{Name: "archive", Crypter: cr}}, store)
	require.NoError(t, err)
	r := chi.NewRouter()
	h.Mount(r)
	hs := httptest.NewServer(r)
	t.Cleanup(hs.Close)
	args := []string{"-url", hs.URL + "/callback/archive", "-receive-id", v.ReceiveID, "-n", "30", "-c", "4",
		"-nats-url", srv.ClientURL()}

	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run(context.Background(), args, env, strings.NewReader(""), &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "HTTP 200: 30")
	require.Contains(t, stdout.String(), "records: 30 of the run's callbacks stored; 0 answered 200 but missing")

	stdout.Reset()
	require.Equal(t, 0, run(context.Background(), append(args, "-o", "json", "-rate", "300", "-kind", "suite_ticket", "-hold-check"), env, strings.NewReader("\n"), &stdout, &stderr), stderr.String())
	var rep report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep))
	require.Equal(t, 30, rep.Status["200"])
	require.Equal(t, 30, rep.Stored)
	require.True(t, rep.Checked)
	require.Positive(t, rep.P99Ms)
	require.Contains(t, stderr.String(), LoadDone, "-hold-check says when the load is over")
}

// TestRun_Usage: bad invocations exit 2 and send nothing.
func TestRun_Usage(t *testing.T) {
	url := []string{"-url", "http://127.0.0.1:1/callback/a", "-n", "1"}
	for name, tc := range map[string]struct {
		args   []string
		getenv func(string) string
		want   string
	}{
		"NoSecrets":   {append(url, "-no-check"), func(string) string { return "" }, "LOADGEN_TOKEN"},
		"NoNATS":      {url, env, "-nats-url required"},
		"RemoteNATS":  {append(url, "-nats-url", "nats://192.0.2.1:4222"), env, "not a loopback host"},
		"RemoteURL":   {[]string{"-url", "http://192.0.2.1/callback/a", "-n", "1", "-no-check"}, env, "not a loopback host"},
		"NoBound":     {[]string{"-url", "http://127.0.0.1:1/callback/a", "-no-check"}, env, "duration or n"},
		"Output":      {append(url, "-no-check", "-o", "yaml"), env, `want "table" or "json"`},
		"UnknownFlag": {append(url, "-no-such-flag"), env, "-no-such-flag"},
		"BadDuration": {append(url, "-duration", "soon"), env, "want a duration"},
		"Extra":       {append(url, "-no-check", "extra"), env, "unexpected arguments"},
		"CredsAbsent": {append(url, "-nats-url", "nats://127.0.0.1:1", "-nats-creds", "/nonexistent"), env, "-nats-creds"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.Equal(t, 2, run(context.Background(), tc.args, tc.getenv, strings.NewReader(""), &stdout, &stderr))
			require.Contains(t, stderr.String(), tc.want)
			require.Empty(t, stdout.String())
		})
	}
}

// TestRun_Help: -h lists every flag with its default and the environment,
// on stdout, exit 0; -version prints the build's version.
func TestRun_Help(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"-h"}, env, strings.NewReader(""), &stdout, &stderr))
	assert.Empty(t, stderr.String())
	for _, want := range []string{"-url URL", "  -rate float", "(default: 64)", "  -duration duration", "(default: 5s)", "  -o format", "(default: table)",
		"LOADGEN_TOKEN", "LOADGEN_ENCODING_AES_KEY", `-stream string`, `(default: "WECOM_CALLBACKS")`} {
		assert.Contains(t, stdout.String(), want)
	}
	stdout.Reset()
	require.Equal(t, 0, run(context.Background(), []string{"-version"}, env, strings.NewReader(""), &stdout, &stderr))
	assert.Regexp(t, `^loadgen \S+ \(.*go1\.\d+`, stdout.String())
}
