package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"6h", 6 * time.Hour},
		{"5d", 5 * 24 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"1d30m15s", 24*time.Hour + 30*time.Minute + 15*time.Second},
		{"-2d", -48 * time.Hour},
		{"0d", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	for _, bad := range []string{"", "d", "5", "5 days", "1h2d", "d5", "1e3d", "1d-2h", "1d+2h", "yesterday", "5dd"} {
		t.Run("Err"+bad, func(t *testing.T) {
			_, err := ParseDuration(bad)
			assert.Error(t, err)
		})
	}
}

func TestDurationVar(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var d time.Duration
	DurationVar(fs, &d, "for", time.Minute, "how long")
	assert.Equal(t, time.Minute, d, "the default is set")
	require.NoError(t, Parse(fs, []string{"-for", "2d"}))
	assert.Equal(t, 48*time.Hour, d)
	err := Parse(fs, []string{"-for", "soon"})
	assert.ErrorIs(t, err, ErrUsage)
	assert.Contains(t, err.Error(), "want a duration such as")
}

func TestParse(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.String("a", "", "a")
	called := false
	fs.Usage = func() { called = true }
	assert.ErrorIs(t, Parse(fs, []string{"-nope"}), ErrUsage)
	assert.ErrorIs(t, Parse(fs, []string{"-h"}), flag.ErrHelp)
	assert.False(t, called, "the caller prints help")
	assert.Empty(t, out.String(), "the flag package prints nothing")
	fs.Usage()
	assert.True(t, called, "Usage is restored")
}

func TestPrintUsage(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("config", "", "configuration `file`")
	fs.Int("n", 3, "count")
	fs.Bool("json", false, "deprecated: -o json")
	var o Output
	OutputVar(fs, &o)
	var d time.Duration
	DurationVar(fs, &d, "since", 5*24*time.Hour, "start")
	var b strings.Builder
	PrintUsage(&b, fs, Usage{Synopsis: "prog x [flags]", Help: "Does x.", Env: []EnvVar{{"PROG_CONFIG", "the file"}}})
	got := b.String()
	for _, want := range []string{
		"Usage: prog x [flags]\n\nDoes x.\n\nFlags:\n",
		"  -config file\n    \tconfiguration file (default: none)\n",
		"  -n int\n    \tcount (default: 3)\n",
		"  -o format\n", "(for scripts) (default: table)",
		"  -since duration\n    \tstart (default: 120h0m0s)\n",
		"\nEnvironment:\n  PROG_CONFIG  the file\n",
	} {
		assert.Contains(t, got, want)
	}
	assert.NotContains(t, got, "-json", "deprecated aliases are hidden")
}

func TestOutput(t *testing.T) {
	var o Output
	require.NoError(t, o.Set("json"))
	assert.Equal(t, JSON, o)
	require.NoError(t, o.Set("text"))
	assert.Equal(t, Table, o)
	assert.Error(t, o.Set("yaml"))
}

func TestReadVersion(t *testing.T) {
	v := ReadVersion("")
	assert.NotEmpty(t, v.Module)
	assert.NotEmpty(t, v.Go)
	assert.Equal(t, "v1.2.3", ReadVersion("v1.2.3").Module)
	assert.Equal(t, "v1.2.3 (rev 0123456789ab, modified, go1.26.8)",
		Version{Module: "v1.2.3", Revision: "0123456789abcdef", Modified: true, Go: "go1.26.8"}.String())
}

func TestColour(t *testing.T) {
	var b bytes.Buffer
	assert.False(t, IsTerminal(&b))
	assert.False(t, Colour(&b, func(string) string { return "" }), "a buffer is no terminal")
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		code   int
		stderr string
	}{
		{"OK", nil, ExitOK, ""},
		{"Help", flag.ErrHelp, ExitOK, ""},
		{"ErrUsage", fmt.Errorf("%w: unexpected arguments", ErrUsage), ExitUsage,
			"prog: usage: unexpected arguments\nRun \"prog -h\" for its flags.\n"},
		{"ErrFailure", errors.New("store locked"), ExitFailure, "prog: store locked\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			assert.Equal(t, tc.code, ExitCode(&stderr, "prog", tc.err))
			assert.Equal(t, tc.stderr, stderr.String())
		})
	}
}
