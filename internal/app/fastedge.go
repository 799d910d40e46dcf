package app

// The callback listener's server: github.com/valyala/fasthttp rather than
// net/http. On a pinned core it took about a quarter off the service's CPU
// per callback (BENCHMARKS.md, "The callback listener on fasthttp"): it
// reuses each connection's request and response, and writes an answer
// without net/http's per-request allocations. The admin listener stays on
// net/http and chi, where throughput does not matter.
//
// Only the hot routes, GET and POST /callback/{app}, are served natively,
// through the callback package's transport-agnostic core. Everything else
// on the listener (/healthz, /readyz, and chi's own 404 and 405 answers)
// goes through fasthttpadaptor to the same chi router as before, so those
// answers stay byte for byte what they were.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/wecomhit/wecomhit/internal/callback"
)

// Read limits of the callback listener, as net/http's were: the header
// within 5 s, the whole request within 10 s (WeCom gives up after 5 s; a
// slower request is not WeCom).
const (
	callbackHeaderTimeout = 5 * time.Second
	callbackReadTimeout   = 10 * time.Second
	callbackWriteTimeout  = 10 * time.Second
)

// callbackEdge serves the callback listener over fasthttp.
type callbackEdge struct {
	h     *callback.Handler
	other fasthttp.RequestHandler // the chi router of every other route
	log   zerolog.Logger
	ids   *requestIDs
	// reqs holds *edgeRequest: a request's state is reused, as fasthttp
	// reuses its RequestCtx, rather than allocated for each.
	reqs sync.Pool
}

// edgeRequest is the state of one callback request on the edge: the
// handler's Request, made of views of fasthttp's buffers (the handler
// keeps none of it past Verify or Receive), the body read into a buffer
// of its own, and a server-made request id.
type edgeRequest struct {
	e    *callbackEdge
	rc   *fasthttp.RequestCtx
	req  callback.Request
	body []byte
	id   [requestIDLen]byte
}

// maxPooledBody is the largest body buffer an edgeRequest keeps for the
// next request: WeCom's callbacks are a few hundred bytes to a few KiB,
// and a rare large one should not stay in memory for good.
const maxPooledBody = 16 << 10

// newCallbackServer is the callback listener's server: h on its hot
// routes, router (request ids, panic recovery, probes, 404, 405) on the
// rest.
func newCallbackServer(h *callback.Handler, router http.Handler, log zerolog.Logger, idleTimeout time.Duration) *fasthttp.Server {
	log = log.With().Str("listener", "callback").Logger()
	e := &callbackEdge{h: h, other: fasthttpadaptor.NewFastHTTPHandler(router), log: log, ids: newRequestIDs()}
	e.reqs.New = func() any {
		r := &edgeRequest{e: e}
		r.req.ReadBody = r.readBody // bound once, not per request
		return r
	}
	return &fasthttp.Server{
		Handler:      e.serve,
		ErrorHandler: e.serveError,
		// fasthttp has no header timeout of its own: ReadTimeout bounds
		// the header, and HeaderReceived gives the body 5 s more, so a
		// request takes at most 10 s as on net/http (whose body could use
		// whatever the header left of the 10 s).
		ReadTimeout: callbackHeaderTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: callbackReadTimeout - callbackHeaderTimeout}
		},
		WriteTimeout: callbackWriteTimeout,
		IdleTimeout:  idleTimeout,
		// The request line and header must fit the read buffer: the same
		// bound as net/http's MaxHeaderBytes with its 4 KiB of slack;
		// larger gets 431.
		ReadBufferSize: maxHeaderBytes + 4<<10,
		// The body is read by the handler (readBody), within the handler's
		// limit, and only once the app and the query passed, as on
		// net/http: a refused request's body is not read, and a body over
		// the limit is the handler's 413, counted and logged. fasthttp
		// reads ahead at most this much of a declared length, and drains
		// or closes what the handler left unread.
		StreamRequestBody:  true,
		MaxRequestBodySize: int(h.MaxBodyBytes()),
		// WeCom posts XML or JSON; a multipart body is only refused.
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		CloseOnShutdown:              true,
		// Its error lines must not quote requests: they may carry
		// signatures and ciphertext.
		SecureErrorLogMessage: true,
		Logger:                fastLog{log},
	}
}

// callbackPath is the prefix of the callback routes.
var callbackPath = []byte("/callback/")

// callbackApp returns the {app} segment of a /callback/{app} path, as sent
// (not unescaped, as chi's routing had it); ok is false for any other path.
func callbackApp(path []byte) (app []byte, ok bool) {
	rest, ok := bytes.CutPrefix(path, callbackPath)
	if !ok || len(rest) == 0 || bytes.IndexByte(rest, '/') >= 0 {
		return nil, false
	}
	return rest, true
}

// serve answers one request.
func (e *callbackEdge) serve(rc *fasthttp.RequestCtx) {
	app, ok := callbackApp(rc.URI().PathOriginal())
	if !ok || !rc.IsGet() && !rc.IsPost() {
		e.other(rc)
		return
	}
	r := e.reqs.Get().(*edgeRequest)
	defer e.release(r)
	r.start(rc, app)
	defer e.recover(rc, &r.req)
	if rc.IsGet() {
		r.req.Echostr = b2s(rc.QueryArgs().Peek("echostr"))
		writeAnswer(rc, e.h.Verify(&r.req))
		return
	}
	r.req.ContentLength = int64(rc.Request.Header.ContentLength())
	if r.req.ContentLength < 0 {
		r.req.ContentLength = -1 // fasthttp's -2: none declared
	}
	// Not rc, whose Done closes on shutdown: a callback being stored is
	// finished, within the ack timeout, as net/http's Shutdown let it.
	writeAnswer(rc, e.h.Receive(context.Background(), &r.req))
}

// start fills r's Request from rc: views of rc's buffers, valid until
// the handler returns, and the request's id (requestIDOf's rule), which
// it also sets in X-Request-Id.
func (r *edgeRequest) start(rc *fasthttp.RequestCtx, app []byte) {
	r.rc = rc
	rid := b2s(rc.Request.Header.Peek(middleware.RequestIDHeader))
	if !plainRequestID(rid) {
		r.e.ids.next(&r.id)
		rid = b2s(r.id[:])
	}
	rc.Response.Header.Set(middleware.RequestIDHeader, rid)
	args := rc.QueryArgs()
	r.req.App = b2s(app)
	r.req.Signature = b2s(args.Peek("msg_signature"))
	r.req.Timestamp = b2s(args.Peek("timestamp"))
	r.req.Nonce = b2s(args.Peek("nonce"))
	r.req.RemoteAddr = rc.RemoteAddr()
	r.req.RequestID = rid
}

// release clears r's views of the request (so the pool keeps no
// connection's buffers alive) and puts r back.
func (e *callbackEdge) release(r *edgeRequest) {
	readBody := r.req.ReadBody
	r.req = callback.Request{ReadBody: readBody}
	r.rc = nil
	if cap(r.body) > maxPooledBody {
		r.body = nil
	}
	e.reqs.Put(r)
}

// readBody reads at most the handler's limit of the body fasthttp
// streams, into r's own buffer, sized from Content-Length when known. The
// string is a view of it: the handler keeps nothing of the body past
// Receive, and the buffer is not reused before then. (fasthttp's own
// buffer is the connection's.)
func (r *edgeRequest) readBody() (string, error) {
	limit := r.e.h.MaxBodyBytes()
	stream := r.rc.RequestBodyStream()
	buf := r.body[:0]
	if n := r.req.ContentLength; n > 0 && int64(cap(buf)) < n+1 {
		buf = make([]byte, 0, n+1) // +1: room to see the end
	}
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 512)
		}
		// At most limit+1 bytes in all, as an io.LimitReader would.
		end := int(min(int64(cap(buf)), limit+1))
		n, err := stream.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			r.body = buf
			return "", err
		}
	}
	r.body = buf
	if int64(len(buf)) > limit {
		return "", callback.ErrBodyTooLarge
	}
	return b2s(buf), nil
}

// b2s is b as a string without a copy; b must not change while the
// string is in use.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// recover turns a panic of the handler into a 500 and a log line, as the
// recoverer middleware does: fasthttp would let it end the process.
func (e *callbackEdge) recover(rc *fasthttp.RequestCtx, req *callback.Request) {
	v := recover()
	if v == nil {
		return
	}
	id := req.RequestID
	e.log.Error().Str("request_id", id).Str("panic", fmt.Sprint(v)).Msg("handler panicked")
	rc.Response.Reset()
	rc.Response.Header.Set(middleware.RequestIDHeader, id)
	rc.SetStatusCode(http.StatusInternalServerError)
	rc.SetContentType(callback.ContentType)
	rc.SetBodyString("500 internal\n")
}

// serveError answers a request fasthttp could not read, as net/http
// answers the same faults; the connection is closed after it.
func (e *callbackEdge) serveError(rc *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// fasthttp does not raise it on a streamed body; kept in case.
		writeEdgeText(rc, http.StatusRequestEntityTooLarge)
	case errors.As(err, &small):
		writeEdgeText(rc, http.StatusRequestHeaderFieldsTooLarge)
	case errors.As(err, &ne) && ne.Timeout():
		// net/http closes without an answer; fasthttp must write one.
		writeEdgeText(rc, http.StatusRequestTimeout)
	default:
		writeEdgeText(rc, http.StatusBadRequest)
	}
}

// writeEdgeText writes net/http's answer to a request it cannot read:
// "431 Request Header Fields Too Large" and the like.
func writeEdgeText(rc *fasthttp.RequestCtx, status int) {
	rc.Response.Reset()
	rc.SetStatusCode(status)
	rc.SetContentType(callback.ContentType)
	rc.SetBodyString(strconv.Itoa(status) + " " + http.StatusText(status))
}

// writeAnswer writes the callback handler's answer: the same headers as
// its net/http transport.
func writeAnswer(rc *fasthttp.RequestCtx, a callback.Answer) {
	rc.SetStatusCode(a.Status)
	rc.SetContentType(callback.ContentType)
	if a.Status != http.StatusOK {
		rc.Response.Header.Set("X-Content-Type-Options", "nosniff")
	}
	if a.Close {
		rc.SetConnectionClose()
	}
	rc.SetBodyString(a.Body)
}

// fastLog carries fasthttp's own messages into zerolog as warnings, as
// serverErrorLog does net/http's.
type fastLog struct{ log zerolog.Logger }

func (l fastLog) Printf(format string, args ...any) {
	_, _ = serverErrorLog{l.log}.Write([]byte(fmt.Sprintf(format, args...)))
}

// requestIDLen is the length of a server-made request id: nuid's, 22
// characters of [0-9A-Za-z].
const requestIDLen = 22

// requestIDs makes the ids of requests that bring no plain one of their
// own, in nuid's form: a random prefix of 12 characters, then a sequence
// of 10. nuid.Next takes a process-wide lock and allocates its string for
// every request; next writes into the caller's array.
type requestIDs struct {
	prefix [12]byte
	seq    atomic.Uint64
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func newRequestIDs() *requestIDs {
	var g requestIDs
	var seed [len(g.prefix) + 8]byte
	_, _ = rand.Read(seed[:]) // never fails (crypto/rand's contract)
	for i := range g.prefix {
		g.prefix[i] = base62[int(seed[i])%len(base62)]
	}
	g.seq.Store(binary.LittleEndian.Uint64(seed[len(g.prefix):]))
	return &g
}

// next writes a fresh id into dst.
func (g *requestIDs) next(dst *[requestIDLen]byte) {
	copy(dst[:], g.prefix[:])
	n := g.seq.Add(1)
	for i := requestIDLen - 1; i >= len(g.prefix); i-- {
		dst[i] = base62[n%uint64(len(base62))]
		n /= uint64(len(base62))
	}
}
