package app

// The HTTP edge shared by the callback and admin listeners: server limits,
// the connection cap, request ids, the admin Host check, and the routing of
// the servers' own error logs into zerolog. The admin listener is served by
// net/http (newServer), the callback listener by fasthttp (fastedge.go).

import (
	"context"
	stdlog "log"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
)

// maxHeaderBytes bounds a request's header block. WeCom's callbacks carry a
// short query and a few headers; net/http's 1 MB default let slow clients
// hold megabytes each. net/http adds 4 KiB of slack, and answers 431 above.
const maxHeaderBytes = 16 << 10

// adminIdleTimeout closes idle keep-alives on the admin listener, whose
// clients (Prometheus, operators) reconnect cheaply.
const adminIdleTimeout = 30 * time.Second

// newServer is an http.Server with the limits every listener shares. name
// ("callback", "admin") goes on its error log lines.
func newServer(name string, h http.Handler, log zerolog.Logger, writeTimeout, idleTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: callbackHeaderTimeout,
		// WeCom gives up after 5 s; a slower body is not WeCom.
		ReadTimeout:    callbackReadTimeout,
		WriteTimeout:   writeTimeout,
		IdleTimeout:    idleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       stdlog.New(serverErrorLog{log.With().Str("listener", name).Logger()}, "", 0),
	}
}

// serverErrorLog carries net/http's own messages (accept errors, bad TLS
// handshakes, panics it recovered) into zerolog as warnings, instead of
// unstructured lines on stderr.
type serverErrorLog struct{ log zerolog.Logger }

// maxServerLogLine bounds one message: net/http quotes some client input.
const maxServerLogLine = 1024

func (l serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p[:min(len(p), maxServerLogLine)]))
	l.log.Warn().Str("component", "http").Msg(msg)
	return len(p), nil
}

// limitListener caps the connections open at once. Past the cap it closes
// each new connection as soon as it is accepted, rather than leaving it in
// the kernel's queue as golang.org/x/net/netutil.LimitListener does: the
// client learns at once, the queue does not grow, and the connections
// already open are untouched.
type limitListener struct {
	net.Listener
	max  int64
	open atomic.Int64
	log  zerolog.Logger

	mu       sync.Mutex
	refused  int64     // since the last log line
	lastWarn time.Time // of the last log line
}

// refusalLogEvery bounds the refusal warnings to one a minute, with the
// count since the previous one.
const refusalLogEvery = time.Minute

func newLimitListener(l net.Listener, max int, log zerolog.Logger) *limitListener {
	return &limitListener{Listener: l, max: int64(max), log: log}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			_ = c.Close()
			l.noteRefusal(c.RemoteAddr())
			continue
		}
		return &limitedConn{Conn: c, l: l}, nil
	}
}

func (l *limitListener) noteRefusal(remote net.Addr) {
	l.mu.Lock()
	l.refused++
	now := time.Now()
	if now.Sub(l.lastWarn) < refusalLogEvery {
		l.mu.Unlock()
		return
	}
	n := l.refused
	l.refused, l.lastWarn = 0, now
	l.mu.Unlock()
	l.log.Warn().Int64("max_connections", l.max).Int64("refused", n).Stringer("remote_addr", remote).
		Msg("connection limit reached; refusing new connections")
}

// limitedConn gives its slot back when closed, once however often Close is
// called.
type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// maxRequestIDLen and requestIDRE: a client's X-Request-Id is kept only when
// it is short and plain, so it can correlate with a proxy's logs but cannot
// bloat or forge ours. Anything else is replaced by our own id.
const maxRequestIDLen = 64

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// requestIDOf is the id of a request whose client sent sent as
// X-Request-Id: sent itself when it is a plausible id, a fresh one
// otherwise. Both transports follow it (requestID, and the callback
// listener's fasthttp edge, which makes its own ids without allocating).
func requestIDOf(sent string) string {
	if !plainRequestID(sent) {
		return nuid.Next()
	}
	return sent
}

// plainRequestID reports whether a client's X-Request-Id is kept: short
// and plain.
func plainRequestID(sent string) bool {
	return len(sent) <= maxRequestIDLen && requestIDRE.MatchString(sent)
}

// requestID gives every request an id, under chi's key so that
// middleware.GetReqID finds it, and echoes it in X-Request-Id.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := requestIDOf(r.Header.Get(middleware.RequestIDHeader))
		w.Header().Set(middleware.RequestIDHeader, id)
		ctx := context.WithValue(r.Context(), middleware.RequestIDKey, id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// allowHosts refuses, with 421, requests whose Host is not an IP address,
// "localhost", the host of listen, or one of extra. A web page that rebinds
// its own domain to 127.0.0.1 reaches the admin listener from the victim's
// browser, but with its domain in Host; an IP address in Host cannot come
// from a rebinding, so Prometheus may scrape by address. Paths in anyHost
// are served whatever the Host.
func allowHosts(listen string, extra []string, anyHost ...string) func(http.Handler) http.Handler {
	allowed := map[string]bool{"localhost": true}
	if h, _, err := net.SplitHostPort(listen); err == nil && h != "" {
		allowed[strings.ToLower(h)] = true
	}
	for _, h := range extra {
		allowed[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host := r.Host
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
			if !allowed[host] && net.ParseIP(host) == nil && !slices.Contains(anyHost, r.URL.Path) {
				writeText(w, http.StatusMisdirectedRequest, "421 unexpected host\n")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
