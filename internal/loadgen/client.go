package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// maxAnswerBytes bounds an answer's body; a larger one is a transport
// error (the receivers answer a few bytes).
const maxAnswerBytes = 64 << 10

// client posts callbacks over at most Conns keep-alive connections.
//
// It is fasthttp's HostClient, not net/http's: at 20,000 callbacks a
// second and more, net/http's client cost loadgen about as much CPU per
// callback as the server spent answering it, so loadgen, not the server,
// capped the pinned run (BENCHMARKS.md). The HostClient reuses its
// requests, answers and buffers, and allocates nothing per request.
//
// The HostClient has no context: the connections it dials are tracked,
// and closed when the run's ctx ends, so a request in flight then fails at
// once instead of waiting out its timeout, as it did on net/http.
type client struct {
	hc *fasthttp.HostClient

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
	stop   func() bool
}

// newClient is the client of cfg's URL: at most cfg.Conns connections;
// a POST is never retried (a retry would be a second callback to count);
// a redirect is an answer to count, not to follow; the path is sent as
// given.
func newClient(ctx context.Context, cfg *Config, u *url.URL) *client {
	c := &client{conns: map[*trackedConn]struct{}{}}
	d := &net.Dialer{Timeout: cfg.Timeout}
	c.hc = &fasthttp.HostClient{
		Addr:                          fasthttp.AddMissingPort(u.Host, u.Scheme == "https"),
		IsTLS:                         u.Scheme == "https",
		TLSConfig:                     &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12},
		MaxConns:                      cfg.Conns,
		MaxConnWaitTimeout:            cfg.Timeout,
		MaxIdleConnDuration:           time.Minute,
		MaxResponseBodySize:           maxAnswerBytes,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		Dial: func(addr string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return c.track(nc)
		},
	}
	c.stop = context.AfterFunc(ctx, c.closeAll)
	return c
}

// errClientClosed: the run's ctx ended before the connection was made.
var errClientClosed = errors.New("loadgen: run over")

// track registers nc so closeAll can end it, or closes it at once if the
// run is already over.
func (c *client) track(nc net.Conn) (net.Conn, error) {
	t := &trackedConn{Conn: nc, c: c}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = nc.Close()
		return nil, errClientClosed
	}
	c.conns[t] = struct{}{}
	return t, nil
}

// closeAll closes every open connection: the requests on them fail at once.
func (c *client) closeAll() {
	c.mu.Lock()
	c.closed = true
	conns := make([]*trackedConn, 0, len(c.conns))
	for t := range c.conns {
		conns = append(conns, t)
	}
	c.mu.Unlock()
	for _, t := range conns {
		_ = t.Close()
	}
}

// close ends the client's connections, at the end of a run.
func (c *client) close() {
	c.stop()
	c.closeAll()
}

// trackedConn leaves the client's set when it is closed.
type trackedConn struct {
	net.Conn
	c    *client
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.c.mu.Lock()
		delete(t.c.conns, t)
		t.c.mu.Unlock()
	})
	return t.Conn.Close()
}

// post is one sender's request and answer, reused for each of its
// callbacks: building a callback fills their buffers in place.
type post struct {
	req  fasthttp.Request
	resp fasthttp.Response
	uri  []byte
}

// do sends p.req by deadline and returns the answer's status.
func (c *client) do(p *post, deadline time.Time) (int, error) {
	if err := c.hc.DoDeadline(&p.req, &p.resp, deadline); err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	return p.resp.StatusCode(), nil
}
