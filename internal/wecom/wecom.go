// Package wecom calls WeCom's chat-data keyword and search APIs for one
// configured app: access tokens (cached, refreshed once across replicas
// through JetStream KV), request validation against the documented limits,
// typed errors, retries, rate-limit blocks and a per-corp concurrency cap.
// It keeps suite_tickets healthy (TicketStore) and never follows redirects,
// since its requests carry secrets. For archive suites it also makes the
// authorization calls (auth.go): exchanging an auth code for a corp's
// permanent code, and reading a corp's grant.
//
// Archive apps (会话存档接口授权) call the HTTPS paths under
// /cgi-bin/chatdata with a corp token issued through their suite; zone apps
// (数据与智能专区) reach the same operations through one ability each of
// their zone program, via sync_call_program. The JSON bodies are the same in
// both, so the Client has one set of methods.
//
// It leaves to others: receiving callbacks (including suite_ticket, which
// the fetch stage hands to TicketStore.Put), cursors, decrypting message
// content, and publishing.
package wecom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Operations, as WeCom names them; also the keys of App.Abilities.
const (
	opGetHitMsgList = "get_hit_msg_list"
	opCreateRule    = "create_rule"
	opGetRuleList   = "get_rule_list"
	opGetRuleDetail = "get_rule_detail"
	opUpdateRule    = "update_rule"
	opDeleteRule    = "delete_rule"
	opSearchMsg     = "search_msg"
)

// ErrNoAbility: a zone app has no ability configured for the operation.
var ErrNoAbility = errors.New("wecom: no ability configured for operation")

// Defaults of New's options.
const (
	DefaultAttempts         = 3
	DefaultBackoffBase      = 200 * time.Millisecond
	DefaultBackoffMax       = 5 * time.Second
	DefaultCallTimeout      = 10 * time.Second
	DefaultMaxResponseBytes = 8 << 20
	DefaultRateLimitBlock   = time.Minute
	DefaultMaxConcurrency   = 5
	DefaultRefreshBefore    = 5 * time.Minute
	DefaultTokenWait        = 30 * time.Second
	DefaultLockPoll         = 100 * time.Millisecond
)

// minRateLimitBlock: WeCom's minute-level frequency blocks last 60 s
// (protocol §7), so a shorter local block would only earn more 45009s.
const minRateLimitBlock = time.Minute

// Clock is the time source. Tests inject one that records sleeps and
// returns at once.
type Clock interface {
	Now() time.Time
	// Sleep waits d, or until ctx is done, then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type options struct {
	httpClient       *http.Client
	clock            Clock
	log              zerolog.Logger
	attempts         int
	backoffBase      time.Duration
	backoffMax       time.Duration
	callTimeout      time.Duration
	maxResponseBytes int64
	rateLimitBlock   time.Duration
	maxConcurrency   int
	refreshBefore    time.Duration
	tokenWait        time.Duration
	lockPoll         time.Duration
	metrics          *Metrics
	codes            PermanentCodes // WithPermanentCodes; nil: the config's corps
}

// Option changes a default of New.
type Option func(*options) error

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}

// WithHTTPClient sets the HTTP client. Its Timeout may stay zero: every
// attempt has its own deadline (WithCallTimeout). The Client uses a copy
// whose CheckRedirect refuses every redirect (see ErrRedirect).
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) error {
		if hc == nil {
			return invalid("WithHTTPClient: nil http client")
		}
		o.httpClient = hc
		return nil
	}
}

// WithClock sets the time source for token expiry, rate-limit blocks and
// backoff sleeps.
func WithClock(c Clock) Option {
	return func(o *options) error {
		if c == nil {
			return invalid("WithClock: nil clock")
		}
		o.clock = c
		return nil
	}
}

// WithLogger sets the logger; it gets component=wecom and app=<name>.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithAttempts sets how many times a call is tried in all when it fails
// with a retryable error (IsRetryable); at least 1.
func WithAttempts(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalid("WithAttempts: attempts %d < 1", n)
		}
		o.attempts = n
		return nil
	}
}

// WithBackoff sets the exponential backoff between tries: the n-th wait is
// base·2^(n-1) capped at ceiling, of which a random half is jitter.
func WithBackoff(base, ceiling time.Duration) Option {
	return func(o *options) error {
		if base <= 0 || ceiling < base {
			return invalid("WithBackoff: base %s, ceiling %s", base, ceiling)
		}
		o.backoffBase, o.backoffMax = base, ceiling
		return nil
	}
}

// WithCallTimeout bounds each HTTP attempt.
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return invalid("WithCallTimeout: %s", d)
		}
		o.callTimeout = d
		return nil
	}
}

// WithMaxResponseBytes caps a response body; a larger one fails with
// ErrResponseTooLarge.
func WithMaxResponseBytes(n int64) Option {
	return func(o *options) error {
		if n < 1 {
			return invalid("WithMaxResponseBytes: %d", n)
		}
		o.maxResponseBytes = n
		return nil
	}
}

// WithRateLimitBlock sets how long calls fail fast after WeCom answered
// 45009: calls of that API for that corp, and for get_hit_msg_list only
// those of the same kind, with that hit token or token-less (blockKey); at
// least one minute.
func WithRateLimitBlock(d time.Duration) Option {
	return func(o *options) error {
		if d < minRateLimitBlock {
			return invalid("WithRateLimitBlock: %s < %s", d, minRateLimitBlock)
		}
		o.rateLimitBlock = d
		return nil
	}
}

// WithMaxConcurrency caps the calls in flight per corp (token calls not
// counted), against WeCom's concurrency limit (45033).
func WithMaxConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalid("WithMaxConcurrency: %d < 1", n)
		}
		o.maxConcurrency = n
		return nil
	}
}

// WithRefreshBefore sets how long before expires_in a cached token is
// replaced. For tokens that live less than twice as long, half their life.
func WithRefreshBefore(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return invalid("WithRefreshBefore: %s", d)
		}
		o.refreshBefore = d
		return nil
	}
}

// WithTokenWait bounds getting a token, including waiting for another
// replica's refresh.
func WithTokenWait(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return invalid("WithTokenWait: %s", d)
		}
		o.tokenWait = d
		return nil
	}
}

// WithLockPoll sets how often a client waiting for another replica's token
// refresh looks for the token or a free lock.
func WithLockPoll(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return invalid("WithLockPoll: %s", d)
		}
		o.lockPoll = d
		return nil
	}
}

// WithMetrics records calls and token refreshes in m (see NewMetrics),
// which the Clients of several apps may share. Default none.
func WithMetrics(m *Metrics) Option {
	return func(o *options) error { o.metrics = m; return nil }
}

// Client calls the chat-data APIs of one app. It is safe for concurrent
// use.
type Client struct {
	app    App
	zone   bool
	tr     transport
	opt    options
	log    zerolog.Logger
	tokens *tokenSource
	// tickets holds archive suites' suite_tickets; nil for zone apps.
	tickets *TicketStore

	mu     sync.Mutex
	blocks map[blockKey]blocked
	sems   map[string]chan struct{}
	// answers holds *bytes.Buffer for reading answers (answerBuf).
	answers sync.Pool
}

// blockKey scopes a rate-limit block: a corp (or suite) and API, and for
// get_hit_msg_list the hit token the call carried (hashed; "" for
// token-less calls). WeCom counts a call with a live hit token apart from
// token-less ones, so a 45009 on one never says anything about the other:
// a 45009 answered to a call with a hit token (retired early, or unknown)
// retires that token only, and one on token-less calls blocks token-less
// calls only.
type blockKey struct{ scope, api, hitToken string }

type blocked struct {
	until time.Time
	err   *APIError
}

// New returns a client for app. stores (from OpenStores) shares tokens
// between replicas and holds the suite_tickets; it may be nil for a zone
// app, which then caches tokens in this process only. Archive apps need it.
//
// Defaults: WithHTTPClient a fresh http.Client whose transport keeps
// PoolIdlePerHost idle connections to the API host (pool.go); WithClock the system clock;
// WithLogger zerolog.Nop(); WithAttempts DefaultAttempts (3);
// WithBackoff DefaultBackoffBase (200ms) to DefaultBackoffMax (5s);
// WithCallTimeout DefaultCallTimeout (10s); WithMaxResponseBytes
// DefaultMaxResponseBytes (8 MiB); WithRateLimitBlock DefaultRateLimitBlock
// (1m); WithMaxConcurrency DefaultMaxConcurrency (5 per corp);
// WithRefreshBefore DefaultRefreshBefore (5m); WithTokenWait
// DefaultTokenWait (30s); WithLockPoll DefaultLockPoll (100ms);
// WithMetrics none.
//
// New does no I/O. It fails with ErrInvalidOption on a bad option or an
// app lacking what its mode needs.
func New(app App, stores *Stores, opts ...Option) (*Client, error) {
	o := options{
		httpClient:       &http.Client{Transport: newTransport()},
		clock:            realClock{},
		log:              zerolog.Nop(),
		attempts:         DefaultAttempts,
		backoffBase:      DefaultBackoffBase,
		backoffMax:       DefaultBackoffMax,
		callTimeout:      DefaultCallTimeout,
		maxResponseBytes: DefaultMaxResponseBytes,
		rateLimitBlock:   DefaultRateLimitBlock,
		maxConcurrency:   DefaultMaxConcurrency,
		refreshBefore:    DefaultRefreshBefore,
		tokenWait:        DefaultTokenWait,
		lockPoll:         DefaultLockPoll,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	app.APIBaseURL = strings.TrimRight(app.APIBaseURL, "/")
	if app.APIBaseURL == "" {
		app.APIBaseURL = DefaultAPIBaseURL
	}
	// Never follow a redirect: the request it would repeat carries the
	// suite secret, suite_ticket, permanent code or an access token, and
	// the new location is whoever answered. A copy, so the caller's client
	// is left as it was.
	hc := *o.httpClient
	hc.CheckRedirect = refuseRedirect
	o.httpClient = &hc
	c := &Client{
		app:    app,
		opt:    o,
		log:    o.log.With().Str("component", "wecom").Str("app", app.Name).Logger(),
		blocks: make(map[blockKey]blocked),
		sems:   make(map[string]chan struct{}),
	}
	switch app.Mode {
	case ModeZone:
		if app.CorpID == "" || app.CorpSecret == "" || app.ProgramID == "" {
			return nil, invalid("zone app %q needs corp_id, corp_secret and program_id", app.Name)
		}
		c.zone = true
		c.tr = zoneTransport{programID: app.ProgramID, abilities: app.Abilities, wrap: app.WrapAbilityIO}
	case ModeArchive:
		if app.SuiteID == "" || app.SuiteSecret == "" || (len(app.Corps) == 0 && o.codes == nil) {
			return nil, invalid("archive app %q needs suite_id, suite_secret and corps", app.Name)
		}
		if stores == nil {
			return nil, invalid("archive app %q needs stores for its suite_ticket", app.Name)
		}
		c.tr = httpsTransport{}
		c.tickets = stores.Tickets
	default:
		return nil, invalid("app %q: unknown mode %q", app.Name, app.Mode)
	}
	if plainRemote(app.APIBaseURL) {
		// Once per app and process: New runs at start.
		c.log.Warn().Str("api_base_url", redactURL(app.APIBaseURL)).
			Msg("api_base_url is plain http to a non-loopback host: secrets and tokens cross the network unencrypted")
	}
	c.tokens = newTokenSource(stores, &c.opt, c.log)
	c.opt.metrics.init(app.Name, c.zone)
	return c, nil
}

// corpID checks that the client can act for the corp a call names, before
// anything is locked or sent: "" is the app's only corp. Which corps an app
// serves is the caller's question (corps.Directory.Resolve); the client only
// knows which it holds credentials for (its configured corps, or any corp
// when the registry gives permanent codes: an unknown one fails when its
// code is looked up, in getCorpToken).
func (c *Client) corpID(id string) (string, error) {
	if c.zone {
		if id == "" || id == c.app.CorpID {
			return c.app.CorpID, nil
		}
		return "", fmt.Errorf("%w: %q", ErrUnknownCorp, id)
	}
	if id == "" && len(c.app.Corps) == 1 && c.opt.codes == nil {
		// Without the registry the configured corps are all the app has,
		// which is what corps.Directory.Resolve says too; with it, the
		// configured corps are only seeds, and only the caller knows.
		return c.app.Corps[0].CorpID, nil
	}
	if id == "" {
		return "", fmt.Errorf("%w: the app has several corps; name one", ErrUnknownCorp)
	}
	if c.opt.codes != nil {
		return id, nil
	}
	if _, ok := c.configuredCorp(id); !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownCorp, id)
	}
	return id, nil
}

// configuredCorp is the corp id among the app's configured corps.
func (c *Client) configuredCorp(id string) (Corp, bool) {
	for _, corp := range c.app.Corps {
		if corp.CorpID == id {
			return corp, true
		}
	}
	return Corp{}, false
}

// invoke runs op for corp: req marshalled, sent through the app's
// transport with the corp's access token, the answer decoded into resp. A
// token-invalid answer drops the token, gets a new one and tries once more.
//
// hitToken is the hit token (or zone notify id) the request carries, ""
// if none; it scopes a rate-limit block (blockKey).
func (c *Client) invoke(ctx context.Context, op, corpID, notifyID, hitToken string, req, resp any) error {
	corp, err := c.corpID(corpID)
	if err != nil {
		return err
	}
	reqJSON, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("wecom %s: encode request: %w", op, err)
	}
	path, body, err := c.tr.encode(op, notifyID, reqJSON)
	if err != nil {
		return err
	}
	attempt := func(ctx context.Context, token string) error {
		// The answer is decoded into resp, which copies what it keeps,
		// before the buffer goes back.
		buf := c.answerBuf()
		defer c.putAnswerBuf(buf)
		raw, err := c.postUnchecked(ctx, op, path, "access_token", token, body, buf)
		if err != nil {
			return err
		}
		data, err := c.tr.decode(op, raw)
		if err != nil {
			return err
		}
		return decodeAnswer(op, data, resp)
	}
	return c.withToken(ctx, corp, op, hitTokenScope(hitToken), attempt)
}

// hitTokenScope is the hit-token part of a blockKey: a digest, so the
// blocks map holds no token.
func hitTokenScope(tok string) string {
	if tok == "" {
		return ""
	}
	return digest(tok)
}

// withToken calls attempt with the corp's token, retried per retry, and
// on a token-invalid error once more with a fresh token.
func (c *Client) withToken(ctx context.Context, corp, op, hitToken string, attempt func(context.Context, string) error) error {
	token, err := c.accessToken(ctx, corp)
	if err != nil {
		return err
	}
	err = c.retryIn(ctx, blockKey{corp, op, hitToken}, corp, func(ctx context.Context) error { return attempt(ctx, token) })
	if !IsTokenInvalid(err) {
		return err
	}
	c.log.Info().Str("corp", corp).Str("api", op).Err(err).Msg("access token rejected; refreshing once")
	if ierr := c.invalidateToken(ctx, corp, token); ierr != nil {
		return errors.Join(err, ierr)
	}
	if token, err = c.accessToken(ctx, corp); err != nil {
		return err
	}
	return c.retryIn(ctx, blockKey{corp, op, hitToken}, corp, func(ctx context.Context) error { return attempt(ctx, token) })
}

// retry runs attempt until it succeeds, fails for good, or has been tried
// opt.attempts times; it fails fast while scope's api is rate-limit
// blocked. semScope, when not empty, names the concurrency cap each attempt
// holds a slot of (not while sleeping).
func (c *Client) retry(ctx context.Context, scope, api, semScope string, attempt func(context.Context) error) error {
	return c.retryIn(ctx, blockKey{scope: scope, api: api}, semScope, attempt)
}

// retryIn is retry with a block scope of bk (see blockKey).
func (c *Client) retryIn(ctx context.Context, bk blockKey, semScope string, attempt func(context.Context) error) error {
	api := bk.api
	if err := c.checkBlock(bk); err != nil {
		return err
	}
	var last error
	for try := 1; ; try++ {
		if err := ctx.Err(); err != nil {
			if last != nil {
				return fmt.Errorf("%w (last error: %w)", err, last)
			}
			return err
		}
		err := c.once(ctx, api, semScope, attempt)
		if err == nil {
			return nil
		}
		last = err
		if IsRateLimited(err) {
			c.block(bk, err)
			return err
		}
		if ctx.Err() != nil || !IsRetryable(err) || try >= c.opt.attempts {
			return err
		}
		wait := c.backoff(try)
		c.log.Debug().Str("api", api).Int("attempt", try).Dur("wait", wait).Err(err).Msg("retrying")
		if serr := c.opt.clock.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, last)
		}
	}
}

// once is one attempt of api with its own deadline, holding a concurrency
// slot. It is one call to WeCom, and recorded as one.
func (c *Client) once(ctx context.Context, api, semScope string, attempt func(context.Context) error) error {
	if semScope != "" {
		sem := c.sem(semScope)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-sem }()
	}
	actx, cancel := context.WithTimeout(ctx, c.opt.callTimeout)
	defer cancel()
	// The wall clock, not opt.clock: tests' clocks do not measure calls.
	start := time.Now()
	err := attempt(actx)
	c.opt.metrics.call(c.app.Name, api, time.Since(start), err)
	return err
}

func (c *Client) backoff(try int) time.Duration {
	d := c.opt.backoffBase
	for i := 1; i < try && d < c.opt.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.opt.backoffMax)
	// Equal jitter: at least half the step, so replicas spread out without
	// ever retrying at once.
	half := d / 2
	return half + rand.N(d-half+1)
}

func (c *Client) sem(scope string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sems[scope]
	if !ok {
		s = make(chan struct{}, c.opt.maxConcurrency)
		c.sems[scope] = s
	}
	return s
}

// block remembers a 45009 for bk; until it ends, checkBlock returns the
// same error without a request. Blocks that have ended are forgotten here,
// so blocks of many dead hit tokens do not pile up.
func (c *Client) block(bk blockKey, err error) {
	apiErr, ok := errors.AsType[*APIError](err)
	if !ok {
		apiErr = &APIError{API: bk.api, Code: codeRateLimited}
	}
	now := c.opt.clock.Now()
	until := now.Add(c.opt.rateLimitBlock)
	c.mu.Lock()
	for k, b := range c.blocks {
		if !now.Before(b.until) {
			delete(c.blocks, k)
		}
	}
	c.blocks[bk] = blocked{until: until, err: apiErr}
	c.mu.Unlock()
	ev := c.log.Warn().Str("scope", bk.scope).Str("api", bk.api).Time("until", until)
	if bk.hitToken != "" {
		ev.Msg("rate limited (45009) on a call with a hit token; not using that token again")
		return
	}
	ev.Msg("rate limited (45009); blocking calls")
}

func (c *Client) checkBlock(k blockKey) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.blocks[k]
	if !ok {
		return nil
	}
	if !c.opt.clock.Now().Before(b.until) {
		delete(c.blocks, k)
		return nil
	}
	return fmt.Errorf("wecom %s: rate limited, not calling until %s: %w",
		k.api, b.until.UTC().Format(time.RFC3339), b.err)
}
