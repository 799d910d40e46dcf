package wecom

import (
	"net"
	"net/http"
	"time"
)

// Connection pool of the default HTTP client. Every call of a Client goes
// to one API host (qyapi.weixin.qq.com, or the app's api_base_url), so the
// pool is sized for that one host: Go's default transport keeps only 2
// idle connections per host, and a fetcher with 16 workers (and rule
// lookups, token calls) beside it then opened a new TCP and TLS
// connection for most calls, about a thousand handshakes per poll of a
// thousand corps. These keep enough idle connections for every call that
// runs at once, and reuse them.
const (
	// PoolIdlePerHost is how many idle connections to the API host are
	// kept: above the fetch workers (16), rule lookups (4) and token
	// calls that run at once.
	PoolIdlePerHost = 64
	// poolIdleTimeout closes a connection idle this long; WeCom's side
	// closes idle connections too, and a poll every few seconds keeps the
	// pool warm at scale.
	poolIdleTimeout = 90 * time.Second
)

// newTransport is the default client's transport: Go's defaults (proxy
// from the environment, HTTP/2 over TLS, dial and TLS timeouts) with a
// pool sized for one host.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = PoolIdlePerHost
	t.MaxIdleConnsPerHost = PoolIdlePerHost
	t.IdleConnTimeout = poolIdleTimeout
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}
