package netutil_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wecomhit/wecomhit/internal/netutil"
)

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"localhost", true},
		{"LocalHost", true},
		{"", false},
		{"0.0.0.0", false},
		{"::", false},
		{"[::1]", false}, // brackets belong to a URL, not a host
		{"10.0.0.1", false},
		{"example.com", false},
		{"localhost.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			assert.Equal(t, tt.want, netutil.IsLoopback(tt.host))
		})
	}
}
