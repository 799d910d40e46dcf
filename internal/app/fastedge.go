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
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
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
}

// newCallbackServer is the callback listener's server: h on its hot
// routes, router (request ids, panic recovery, probes, 404, 405) on the
// rest.
func newCallbackServer(h *callback.Handler, router http.Handler, log zerolog.Logger, idleTimeout time.Duration) *fasthttp.Server {
	log = log.With().Str("listener", "callback").Logger()
	e := &callbackEdge{h: h, other: fasthttpadaptor.NewFastHTTPHandler(router), log: log}
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
	req := e.request(rc, app)
	defer e.recover(rc, req.RequestID)
	if rc.IsGet() {
		req.Echostr = string(rc.QueryArgs().Peek("echostr"))
		writeAnswer(rc, e.h.Verify(&req))
		return
	}
	req.ContentLength = int64(rc.Request.Header.ContentLength())
	if req.ContentLength < 0 {
		req.ContentLength = -1 // fasthttp's -2: none declared
	}
	req.ReadBody = func() (string, error) { return e.readBody(rc) }
	// Not rc, whose Done closes on shutdown: a callback being stored is
	// finished, within the ack timeout, as net/http's Shutdown let it.
	writeAnswer(rc, e.h.Receive(context.Background(), &req))
}

// readBody reads at most the handler's limit of the body fasthttp streams.
// The buffer is sized from Content-Length when known and is handed out as
// a string without a copy: it is ours, and nothing writes to it
// afterwards. (fasthttp's own buffer is the connection's, reused.)
func (e *callbackEdge) readBody(rc *fasthttp.RequestCtx) (string, error) {
	limit := e.h.MaxBodyBytes()
	var buf bytes.Buffer
	if n := rc.Request.Header.ContentLength(); n > 0 {
		buf.Grow(n + 1) // +1: ReadFrom wants room to see EOF
	}
	if _, err := buf.ReadFrom(io.LimitReader(rc.RequestBodyStream(), limit+1)); err != nil {
		return "", err
	}
	if int64(buf.Len()) > limit {
		return "", callback.ErrBodyTooLarge
	}
	b := buf.Bytes()
	return unsafe.String(unsafe.SliceData(b), len(b)), nil
}

// request reads the parts of rc every operation needs, and gives the
// request its id (requestID's rule) in X-Request-Id.
func (e *callbackEdge) request(rc *fasthttp.RequestCtx, app []byte) callback.Request {
	rid := requestIDOf(string(rc.Request.Header.Peek(middleware.RequestIDHeader)))
	rc.Response.Header.Set(middleware.RequestIDHeader, rid)
	args := rc.QueryArgs()
	return callback.Request{
		App:        string(app),
		Signature:  string(args.Peek("msg_signature")),
		Timestamp:  string(args.Peek("timestamp")),
		Nonce:      string(args.Peek("nonce")),
		RemoteAddr: rc.RemoteAddr().String(),
		RequestID:  rid,
	}
}

// recover turns a panic of the handler into a 500 and a log line, as the
// recoverer middleware does: fasthttp would let it end the process.
func (e *callbackEdge) recover(rc *fasthttp.RequestCtx, id string) {
	v := recover()
	if v == nil {
		return
	}
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
