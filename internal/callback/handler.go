// Package callback is the endpoint WeCom calls. It answers URL
// verification, and for each POST it verifies the signature, decrypts,
// checks the receive id, parses and classifies the event, and hands the
// record to a Sink, answering "success" only once the Sink has stored it.
//
// Its core (Verify, Receive) takes a Request and gives an Answer, whatever
// HTTP server read the one and writes the other: Mount serves it over
// net/http; the service serves it over fasthttp (internal/app). It knows
// nothing of NATS or of what happens to a record after it is stored;
// internal/app wires a Sink in.
package callback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/crypto"
)

// Sink stores an accepted callback durably. Store must return nil only once
// the record is durable (for JetStream: after the PubAck), and must treat a
// second record with the same ID as already stored. It must honour ctx's
// deadline: the handler answers 503 when it passes.
//
// Store must not use cb after it returns, whatever it returns: the handler
// reuses the struct for a later callback. The strings in it are never
// reused and may be kept.
type Sink interface {
	Store(ctx context.Context, cb *wecomhit.Callback) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, cb *wecomhit.Callback) error

// Store calls f.
func (f SinkFunc) Store(ctx context.Context, cb *wecomhit.Callback) error { return f(ctx, cb) }

// App is one configured WeCom app: the path segment WeCom calls and the
// crypto that holds its token, key and expected receive id.
type App struct {
	Name    string
	Crypter *crypto.Crypter
}

// Defaults for the options of New.
const (
	DefaultMaxBodyBytes    = 64 << 10
	DefaultAckTimeout      = 3 * time.Second
	DefaultTimestampWindow = time.Hour
	// DefaultAcceptedLogLimit logs every accepted callback of a quiet
	// deployment, and bounds the lines of a busy one.
	DefaultAcceptedLogLimit = 20
	// maxEchoLen bounds the URL-verification plaintext; WeCom sends ~19 digits.
	maxEchoLen = 64
)

// Handler serves /callback/{app}. Create it with New.
type Handler struct {
	apps       map[string]*appEntry
	sink       Sink
	log        zerolog.Logger
	maxBody    int64
	ackTimeout time.Duration
	// deadlines shares store contexts between the requests of one slot,
	// when the transport passes context.Background (deadline.go).
	deadlines deadlineShare
	window    time.Duration
	now       func() time.Time
	metrics   *Metrics
	// unknown stands for the app of a request until its {app} segment
	// names one of ours.
	unknown *appEntry

	// accepted bounds the lines of accepted callbacks (0 a second: no
	// bound).
	accepted lineLimit
	// records holds *wecomhit.Callback: the record handed to the Sink is
	// reused (Sink's contract), not allocated for each callback.
	records sync.Pool
}

// appEntry is one configured app. Its name, not the request's {app}
// segment, labels the app's metrics and log lines and goes into its
// records, so nothing the handler keeps shares memory with a Request.
type appEntry struct {
	name    string
	crypter *crypto.Crypter
	series  *appSeries
}

// success is WeCom's expected answer to a stored callback.
const success = "success"

// lineLimit lets perSecond lines through in each second of the clock,
// and counts the ones it holds back for the next line let through.
type lineLimit struct {
	perSecond int

	mu     sync.Mutex
	second int64 // unix second of the current window
	lines  int   // let through in it
	held   int64 // held back since the last line let through
}

// allow reports whether a line may be written at now, and if so how many
// were held back before it.
func (l *lineLimit) allow(now time.Time) (ok bool, held int64) {
	if l.perSecond == 0 {
		return true, 0
	}
	sec := now.Unix()
	l.mu.Lock()
	defer l.mu.Unlock()
	if sec != l.second {
		l.second, l.lines = sec, 0
	}
	if l.lines >= l.perSecond {
		l.held++
		return false, 0
	}
	l.lines++
	held, l.held = l.held, 0
	return true, held
}

// Option sets an optional setting of New. Each checks its argument; a bad
// one makes New fail with ErrInvalidOption, naming the option.
type Option func(*options) error

type options struct {
	log               zerolog.Logger
	maxBody           int64
	ackTimeout        time.Duration
	window            time.Duration
	acceptedPerSecond int
	metrics           *Metrics
	now               func() time.Time
}

// ErrInvalidOption is returned by New for an option with a bad value.
var ErrInvalidOption = errors.New("callback: invalid option")

// WithMaxBodyBytes caps the POST body; larger bodies get 413 without being
// read. Zero keeps DefaultMaxBodyBytes.
func WithMaxBodyBytes(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("%w: WithMaxBodyBytes(%d): negative", ErrInvalidOption, n)
		}
		if n > 0 {
			o.maxBody = n
		}
		return nil
	}
}

// WithAckTimeout bounds the wait for the Sink. WeCom gives up after 5 s, so
// this must be shorter: a 503 makes WeCom retry, silence makes it guess.
// Zero keeps DefaultAckTimeout.
func WithAckTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: WithAckTimeout(%s): negative", ErrInvalidOption, d)
		}
		if d > 0 {
			o.ackTimeout = d
		}
		return nil
	}
}

// WithTimestampWindow rejects requests whose timestamp differs from the
// clock by more than d, so captured requests cannot be replayed later.
// 0 turns the check off (for the official vectors, stamped 2014), as
// http.timestamp_window: 0 does in the configuration. Default
// DefaultTimestampWindow.
func WithTimestampWindow(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("%w: WithTimestampWindow(%s): negative", ErrInvalidOption, d)
		}
		o.window = d
		return nil
	}
}

// WithAcceptedLogLimit writes the log lines of at most n accepted
// callbacks a second; the rest are counted, and the next line written
// carries the count as "unlogged". 0 logs every callback. Refusals and
// failures are always logged, whatever n, and the metrics count every
// request. Default DefaultAcceptedLogLimit.
//
// A line per callback costs more CPU under load than anything else the
// handler does but the write of the answer (BENCHMARKS.md), and tells an
// operator nothing a record in the stream does not.
func WithAcceptedLogLimit(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("%w: WithAcceptedLogLimit(%d): negative", ErrInvalidOption, n)
		}
		o.acceptedPerSecond = n
		return nil
	}
}

// WithMetrics records requests in m (see NewMetrics). Default none.
func WithMetrics(m *Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// WithLogger sets the logger; New adds the component field. Default
// zerolog.Nop.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("%w: WithClock: nil clock", ErrInvalidOption)
		}
		o.now = now
		return nil
	}
}

// New returns a Handler for apps that stores accepted callbacks in sink.
// Options and their defaults: WithMaxBodyBytes (64 KiB), WithAckTimeout (3 s),
// WithTimestampWindow (1 h), WithAcceptedLogLimit (20 a second), WithMetrics
// (none), WithLogger (zerolog.Nop), WithClock (time.Now). A bad option
// gives an error wrapping ErrInvalidOption that names it.
func New(apps []App, sink Sink, opts ...Option) (*Handler, error) {
	o := options{
		log:               zerolog.Nop(),
		maxBody:           DefaultMaxBodyBytes,
		ackTimeout:        DefaultAckTimeout,
		window:            DefaultTimestampWindow,
		acceptedPerSecond: DefaultAcceptedLogLimit,
		now:               time.Now,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	h := &Handler{
		apps:       make(map[string]*appEntry, len(apps)),
		sink:       sink,
		log:        o.log.With().Str("component", "callback").Logger(),
		maxBody:    o.maxBody,
		ackTimeout: o.ackTimeout,
		deadlines:  deadlineShare{timeout: o.ackTimeout},
		window:     o.window,
		now:        o.now,
		metrics:    o.metrics,
		accepted:   lineLimit{perSecond: o.acceptedPerSecond},
	}
	for _, a := range apps {
		if a.Name == "" || a.Crypter == nil {
			return nil, fmt.Errorf("%w: app needs a name and a crypter", ErrInvalidOption)
		}
		if _, dup := h.apps[a.Name]; dup {
			return nil, fmt.Errorf("%w: duplicate app %q", ErrInvalidOption, a.Name)
		}
		h.apps[a.Name] = &appEntry{name: a.Name, crypter: a.Crypter}
	}
	if sink == nil {
		return nil, fmt.Errorf("%w: sink is required", ErrInvalidOption)
	}
	for _, a := range h.apps {
		a.series = h.metrics.series(a.name)
	}
	h.unknown = &appEntry{name: UnknownApp, series: h.metrics.series(UnknownApp)}
	return h, nil
}

// isStoreFull reports whether the sink refused a record for lack of room:
// its error has a StoreFull method that says so (intake.ErrStoreFull does).
// An interface rather than intake's sentinel, so callback need not import
// intake.
func isStoreFull(err error) bool {
	var sf interface{ StoreFull() bool }
	return errors.As(err, &sf) && sf.StoreFull()
}

// rejection is a request we refuse: the status, a stable reason for logs
// and metrics, and the cause. Its text is safe to show the client.
type rejection struct {
	status int
	reason string
	err    error
}

func (r *rejection) Error() string { return r.reason }
func (r *rejection) Unwrap() error { return r.err }

func reject(status int, reason string, err error) *rejection {
	return &rejection{status: status, reason: reason, err: err}
}

// classify maps the errors of crypto and parsing to statuses, in one place.
func classify(err error) *rejection {
	var rj *rejection
	switch {
	case errors.As(err, &rj):
		return rj
	case errors.Is(err, crypto.ErrSignature):
		return reject(http.StatusForbidden, "bad_signature", err)
	case errors.Is(err, crypto.ErrReceiveID):
		return reject(http.StatusForbidden, "bad_receive_id", err)
	case errors.Is(err, crypto.ErrBase64), errors.Is(err, crypto.ErrDecrypt), errors.Is(err, crypto.ErrBuffer):
		return reject(http.StatusBadRequest, "bad_ciphertext", err)
	case errors.Is(err, ErrDoctype):
		return reject(http.StatusBadRequest, "xml_doctype", err)
	case errors.Is(err, ErrMalformed):
		return reject(http.StatusBadRequest, "malformed", err)
	}
	return reject(http.StatusInternalServerError, "internal", err)
}

// Request is one callback request as the transport read it: the {app}
// path segment, the signed query, the body, and what the log line needs.
// The transports (Mount's net/http routes here, the service's fasthttp
// server in internal/app) fill it; the Handler does the rest.
//
// Its strings, and the body ReadBody returns, need to stay unchanged only
// until Verify or Receive returns: the handler keeps none of them, and
// nothing it hands the Sink shares memory with them. So a transport may
// give views of its own buffers, reused for the next request, without a
// copy.
type Request struct {
	App                         string // the {app} path segment, as sent
	Signature, Timestamp, Nonce string // the query's msg_signature, timestamp, nonce
	Echostr                     string // the query's echostr (URL verification only)
	// ContentLength is the POST body's declared length, -1 when not
	// declared: over MaxBodyBytes, the body is refused without a byte read.
	ContentLength int64
	// ReadBody reads the POST body, at most MaxBodyBytes of it, or fails
	// with ErrBodyTooLarge. Receive calls it only once the app and the
	// query passed: a request refused before is never read.
	ReadBody func() (string, error)
	// RemoteAddr is the peer as TCP sees it; its String is called only
	// when a log line is written (at most a few a second under load).
	RemoteAddr fmt.Stringer
	RequestID  string
}

// ErrBodyTooLarge is what a Request's ReadBody returns for a body over
// MaxBodyBytes.
var ErrBodyTooLarge = errors.New("callback: body too large")

// Answer is what the transport sends back: the status and a text/plain
// body. A status other than 200 also carries "X-Content-Type-Options:
// nosniff", and Close asks the transport to close the connection (a body
// over the limit is not drained).
type Answer struct {
	Status int
	Body   string
	Close  bool
}

// ContentType is the Content-Type of every Answer.
const ContentType = "text/plain; charset=utf-8"

// MaxBodyBytes is the POST body limit (WithMaxBodyBytes), for transports
// that enforce it while reading.
func (h *Handler) MaxBodyBytes() int64 { return h.maxBody }

// query holds the signed query parameters.
type query struct {
	signature, timestamp, nonce string
}

func (h *Handler) readQuery(req *Request) (query, error) {
	q := query{signature: req.Signature, timestamp: req.Timestamp, nonce: req.Nonce}
	if q.signature == "" || q.timestamp == "" || q.nonce == "" {
		return q, reject(http.StatusBadRequest, "missing_param", errors.New("msg_signature, timestamp and nonce are required"))
	}
	ts, err := strconv.ParseInt(q.timestamp, 10, 64)
	if err != nil {
		return q, reject(http.StatusBadRequest, "bad_timestamp", errors.New("timestamp is not an integer"))
	}
	if h.window > 0 {
		skew := h.now().Sub(time.Unix(ts, 0))
		if skew > h.window || skew < -h.window {
			return q, reject(http.StatusForbidden, "stale_timestamp", fmt.Errorf("timestamp is %s away from now", skew.Round(time.Second)))
		}
	}
	return q, nil
}

// Verify answers WeCom's URL verification with the decrypted echostr.
//
// GET and POST are signed alike, so a captured POST's Encrypt sent here as
// echostr would verify and decrypt, and a naive endpoint would return the
// event, token and all. Only a short plain string, as WeCom sends, is echoed.
func (h *Handler) Verify(req *Request) Answer {
	start := h.now()
	app := h.unknown
	var ans Answer
	err := func() error {
		a, err := h.app(req.App)
		if err != nil {
			return err
		}
		app = a
		q, err := h.readQuery(req)
		if err != nil {
			return err
		}
		// A '+' sent unescaped in the query decodes as a space; base64 has
		// no spaces, so restoring them is safe and the signature still decides.
		echostr := strings.ReplaceAll(req.Echostr, " ", "+")
		if echostr == "" {
			return reject(http.StatusBadRequest, "missing_param", errors.New("echostr is required"))
		}
		plain, err := a.crypter.Open(q.signature, q.timestamp, q.nonce, echostr)
		if err != nil {
			return err
		}
		if !isEcho(plain) {
			return reject(http.StatusForbidden, "not_verification_string", errors.New("echostr plaintext is not a short plain string"))
		}
		ans = Answer{Status: http.StatusOK, Body: plain}
		return nil
	}()
	return h.finish(req, "verify", app, KindVerify, "", start, err, ans)
}

// isEcho reports whether s looks like a URL-verification string: 1 to 64
// letters, digits, '-' or '_'. WeCom sends digits; XML or JSON never passes.
func isEcho(s string) bool {
	if len(s) == 0 || len(s) > maxEchoLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// accepted is the Answer to a stored callback.
var accepted = Answer{Status: http.StatusOK, Body: success}

// Receive handles one event delivery: it answers "success" only once the
// Sink has stored the record, within the ack timeout from ctx. The
// transport must not let ctx end with the client's connection or with a
// graceful shutdown: a record being stored is finished either way.
func (h *Handler) Receive(ctx context.Context, req *Request) Answer {
	start := h.now()
	app := h.unknown // until the {app} segment names one of ours
	kind := KindNone // until the event is read
	id := ""
	err := func() error {
		a, err := h.app(req.App)
		if err != nil {
			return err
		}
		app = a
		if req.ContentLength > h.maxBody {
			return reject(http.StatusRequestEntityTooLarge, "body_too_large", nil)
		}
		q, err := h.readQuery(req)
		if err != nil {
			return err
		}
		body, err := req.ReadBody()
		switch {
		case errors.Is(err, ErrBodyTooLarge):
			return reject(http.StatusRequestEntityTooLarge, "body_too_large", nil)
		case err != nil:
			return reject(http.StatusBadRequest, "body_read", err)
		case body == "":
			return reject(http.StatusBadRequest, "malformed", errors.New("empty body"))
		}
		cb, _ := h.records.Get().(*wecomhit.Callback)
		if cb == nil {
			cb = new(wecomhit.Callback)
		}
		defer func() {
			*cb = wecomhit.Callback{} // keeps no strings alive in the pool
			h.records.Put(cb)
		}()
		*cb, err = Decode(a.crypter, a.name, q.signature, q.timestamp, q.nonce, body)
		if err != nil {
			return err
		}
		cb.ReceivedAt = start.UTC()
		kind, id = string(cb.Kind), cb.ID

		ctx, cancel := h.storeContext(ctx)
		defer cancel()
		if err := h.sink.Store(ctx, cb); err != nil {
			reason := "store_failed"
			switch {
			case isStoreFull(err):
				// The store has no room: distinct from a slow or absent
				// NATS, and loud in metrics and logs until room is made.
				reason = "store_full"
			case errors.Is(err, context.DeadlineExceeded):
				reason = "store_timeout"
			}
			return reject(http.StatusServiceUnavailable, reason, err)
		}
		return nil
	}()
	return h.finish(req, "receive", app, kind, id, start, err, accepted)
}

// storeContext bounds a callback's store by the ack timeout: a context
// shared with the requests of the same slot when ctx is
// context.Background (deadline.go), one of its own otherwise.
func (h *Handler) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == context.Background() {
		return h.deadlines.context(time.Now()), func() {}
	}
	return context.WithTimeout(ctx, h.ackTimeout)
}

// Decode turns a signed POST body into a callback record: envelope, signature,
// decryption, receive id, event. It is the whole CPU cost of a callback and
// the target of BenchmarkVerifyDecrypt. ReceivedAt is left for the caller.
func Decode(c *crypto.Crypter, app, signature, timestamp, nonce, body string) (wecomhit.Callback, error) {
	env, err := ParseEnvelope(body)
	if err != nil {
		return wecomhit.Callback{}, err
	}
	plain, err := c.Open(signature, timestamp, nonce, env.Encrypt)
	if err != nil {
		return wecomhit.Callback{}, err
	}
	ev, err := ParseEvent(plain)
	if err != nil {
		return wecomhit.Callback{}, err
	}
	return wecomhit.Callback{
		ID:          CallbackID(app, env.Encrypt),
		App:         app,
		Kind:        ev.Kind,
		Format:      ev.Format,
		CorpID:      ev.CorpID(),
		SuiteID:     ev.SuiteID,
		Token:       ev.Token,
		SuiteTicket: ev.SuiteTicket,
		AuthCode:    ev.AuthCode,
		NotifyID:    ev.NotifyID,
		NotifyScene: ev.NotifyScene,
		EventTime:   ev.Time,
		Raw:         plain,
	}, nil
}

// CallbackID derives a record's id from the app and the encrypted payload:
// WeCom re-sends the same ciphertext when it retries, so its retries share
// one id and the intake's de-duplication keeps one record.
func CallbackID(app, encrypt string) string {
	key := CallbackKey(app, encrypt)
	var out [32]byte
	hex.Encode(out[:], key[:])
	return string(out[:])
}

// CallbackKey is the 16 bytes CallbackID spells in hex, for a caller that
// keeps many ids (loadgen) and need not make a string of each.
func CallbackKey(app, encrypt string) [16]byte {
	// Assemble the input on the stack: callbacks of normal size hash
	// without touching the heap; larger ones make append allocate.
	var buf [1024]byte
	in := append(append(append(buf[:0], app...), 0), encrypt...)
	sum := sha256.Sum256(in)
	return [16]byte(sum[:16])
}

// app resolves the {app} path segment to the app.
func (h *Handler) app(name string) (*appEntry, error) {
	a, ok := h.apps[name]
	if !ok {
		return nil, reject(http.StatusNotFound, "unknown_app", nil)
	}
	return a, nil
}

// finish makes the answer, ok when err is nil, and writes the request's
// log line and its metrics. app is h.unknown until the request's app is
// resolved; kind and id are those of the callback, once decoded, and stay
// on the line of a refused or failed one.
func (h *Handler) finish(req *Request, op string, app *appEntry, kind, id string, start time.Time, err error, ok Answer) Answer {
	outcome := OutcomeAccepted
	ans := ok
	var rj *rejection
	if err != nil {
		rj = classify(err)
		outcome = OutcomeRejected
		if rj.status == http.StatusServiceUnavailable || rj.status == http.StatusInternalServerError {
			outcome = OutcomeUnavailable
		}
		ans = Answer{
			Status: rj.status,
			Body:   strconv.Itoa(rj.status) + " " + rj.reason + "\n",
			// Not drained: the rest of the body may be large.
			Close: rj.status == http.StatusRequestEntityTooLarge,
		}
	}
	latency := h.now().Sub(start)
	reason := ""
	if rj != nil {
		reason = rj.reason
	}
	app.series.observe(kind, outcome, reason, latency.Seconds())

	var ev *zerolog.Event
	switch {
	case outcome == OutcomeUnavailable:
		ev = h.log.Warn()
	case outcome == OutcomeAccepted && op == "receive":
		ok, held := h.accepted.allow(start)
		if !ok {
			return ans
		}
		if ev = h.log.Info(); ev != nil && held > 0 {
			ev.Int64("unlogged", held)
		}
	default:
		ev = h.log.Info()
	}
	if ev == nil {
		return ans // below the level
	}
	if app != h.unknown {
		// An unknown name is the client's text: not logged.
		ev.Str("app", app.name)
	}
	if id != "" {
		ev.Str("kind", kind).Str("callback_id", id)
	}
	if rj != nil {
		ev.Str("reason", rj.reason)
		if rj.err != nil {
			// Errors here come from crypto, parsing and the sink, none of
			// which put tokens, keys or plaintext in their text.
			ev.AnErr("error", rj.err)
		}
	}
	// The peer's address as TCP sees it: behind a reverse proxy, the
	// proxy's. X-Forwarded-For is not logged: any client can write it.
	remote := ""
	if req.RemoteAddr != nil {
		remote = req.RemoteAddr.String()
	}
	ev.Str("request_id", req.RequestID).
		Str("remote_addr", remote).
		Str("op", op).
		Str("outcome", outcome).
		Int("status", ans.Status).
		Dur("latency_ms", latency).
		Msg("callback")
	return ans
}
