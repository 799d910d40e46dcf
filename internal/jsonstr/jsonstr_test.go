package jsonstr_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wecomhit/wecomhit/internal/jsonstr"
)

// stdlib is what encoding/json writes for s, with or without HTML
// escaping.
func stdlib(t testing.TB, s string, html bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

var samples = []string{
	"", "plain", `quote " and \ backslash`, "<xml a='1'>&amp;</xml>",
	"\x00\x01\b\f\n\r\t\x1f\x7f", "中文 关键词", "\u2028\u2029", "bad \xff\xfe utf-8 \xe4\xb8",
	"emoji 😀 and \u00e9",
}

func TestAppend(t *testing.T) {
	for _, html := range []bool{false, true} {
		for _, s := range samples {
			got := string(jsonstr.Append([]byte("x"), s, html))
			assert.Equal(t, "x"+stdlib(t, s, html), got, "html=%v %q", html, s)
		}
	}
	assert.NotEqual(t, string(jsonstr.Append(nil, "<", false)), string(jsonstr.Append(nil, "<", true)))
}

func FuzzAppend(f *testing.F) {
	for _, s := range samples {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, html bool) {
		if got, want := string(jsonstr.Append(nil, s, html)), stdlib(t, s, html); got != want {
			t.Fatalf("html=%v %q: got %s, want %s", html, s, got, want)
		}
	})
}
