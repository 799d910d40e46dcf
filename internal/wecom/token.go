package wecom

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/broker"
)

// KV bucket names.
const (
	// TokenBucket holds cached access tokens, one key per token:
	// "<app>.corp.<corp_id>" for a corp token, "suite.<suite_id>" for a
	// suite token. Values are JSON {token, expires_at, refresh_at}.
	TokenBucket = "wecom_tokens"
	// LockBucket holds refresh locks, keyed like TokenBucket. A lock is
	// taken with Create and ends when its holder deletes it or when the
	// bucket's MaxAge (the lock TTL) expires it.
	LockBucket = "wecom_token_locks"
	// TicketBucket holds the newest suite_ticket per suite, key
	// "<suite_id>".
	TicketBucket = "wecom_suite_tickets"
)

// DefaultLockTTL is how long a refresh lock lives if its holder never
// releases it (crashed mid-refresh). It bounds the refresh itself too.
const DefaultLockTTL = 30 * time.Second

// StoreConfig configures OpenStores.
type StoreConfig struct {
	// Replicas of each bucket; 0 means 1.
	Replicas int
	// LockTTL is the refresh locks' lifetime; 0 means DefaultLockTTL.
	// At least one second.
	LockTTL time.Duration
	// MaxBytes caps each bucket, so that a full store elsewhere cannot
	// take their room (the server reserves it); 0 means no cap.
	MaxBytes int64
}

// Stores are the KV buckets Clients share: tokens, refresh locks and
// suite tickets.
type Stores struct {
	Tokens  jetstream.KeyValue
	Locks   jetstream.KeyValue
	Tickets *TicketStore
	lockTTL time.Duration
}

// OpenStores creates the buckets, or binds existing ones and updates those
// whose config differs; replicas running it at once is safe
// (broker.EnsureKeyValue, which retries transient errors until ctx ends).
//
// The locks live in a bucket of their own whose MaxAge is the lock TTL,
// rather than as per-key TTLs in the token bucket: bucket MaxAge works on
// every JetStream server (per-key TTL needs 2.11 and LimitMarkerTTL), every
// lock wants the same lifetime anyway, and the token bucket stays free of an
// age limit, since a token's life is its own expires_in, kept in its value.
func OpenStores(ctx context.Context, js jetstream.KeyValueManager, cfg StoreConfig) (*Stores, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.LockTTL == 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	if cfg.Replicas < 1 || cfg.LockTTL < time.Second {
		return nil, invalid("store replicas %d, lock ttl %s", cfg.Replicas, cfg.LockTTL)
	}
	open := func(c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		c.Replicas, c.History, c.Storage = cfg.Replicas, 1, jetstream.FileStorage
		c.MaxBytes = cfg.MaxBytes // 0: none
		kv, err := broker.EnsureKeyValue(ctx, js, c)
		if err != nil {
			return nil, fmt.Errorf("wecom: %w", err)
		}
		return kv, nil
	}
	tokens, err := open(jetstream.KeyValueConfig{Bucket: TokenBucket, Description: "WeCom access tokens"})
	if err != nil {
		return nil, err
	}
	locks, err := open(jetstream.KeyValueConfig{Bucket: LockBucket, Description: "WeCom token refresh locks", TTL: cfg.LockTTL})
	if err != nil {
		return nil, err
	}
	tickets, err := open(jetstream.KeyValueConfig{Bucket: TicketBucket, Description: "WeCom newest suite_ticket per suite"})
	if err != nil {
		return nil, err
	}
	return &Stores{Tokens: tokens, Locks: locks, Tickets: NewTicketStore(tickets), lockTTL: cfg.LockTTL}, nil
}

// ErrNoStores: BindStores found a bucket missing; no receiver has created
// the buckets on this NATS yet.
var ErrNoStores = errors.New("wecom: token buckets not found")

// BindStores binds the buckets a running receiver created, changing nothing
// about them: for operator commands, which must not reconfigure a cluster's
// buckets (their replicas, say) from a config of their own.
func BindStores(ctx context.Context, js jetstream.KeyValueManager) (*Stores, error) {
	bind := func(name string) (jetstream.KeyValue, error) {
		kv, err := js.KeyValue(ctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("%w: %s (is a receiver running on this NATS?)", ErrNoStores, name)
		}
		if err != nil {
			return nil, fmt.Errorf("wecom: bind kv bucket %s: %w", name, err)
		}
		return kv, nil
	}
	tokens, err := bind(TokenBucket)
	if err != nil {
		return nil, err
	}
	locks, err := bind(LockBucket)
	if err != nil {
		return nil, err
	}
	tickets, err := bind(TicketBucket)
	if err != nil {
		return nil, err
	}
	st, err := locks.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("wecom: kv bucket %s: %w", LockBucket, err)
	}
	ttl := st.TTL()
	if ttl <= 0 {
		ttl = DefaultLockTTL
	}
	return &Stores{Tokens: tokens, Locks: locks, Tickets: NewTicketStore(tickets), lockTTL: ttl}, nil
}

// kvKey joins parts with "." after escaping each: bytes outside
// [A-Za-z0-9_-] become "=XX", so any corp or suite id makes a valid,
// unambiguous key.
func kvKey(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		for j := 0; j < len(p); j++ {
			ch := p[j]
			switch {
			case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '_', ch == '-':
				b.WriteByte(ch)
			default:
				fmt.Fprintf(&b, "=%02X", ch)
			}
		}
	}
	return b.String()
}

// cachedToken is a token as kept in memory and in TokenBucket.
type cachedToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	// RefreshAt is when the token is due for replacement, a margin before
	// ExpiresAt; fixed by whoever fetched it.
	RefreshAt time.Time `json:"refresh_at"`
}

// fetchFunc gets a new token from WeCom.
type fetchFunc func(ctx context.Context) (token string, expiresIn time.Duration, err error)

// tokenSource caches tokens per key: in memory, then in TokenBucket. A
// refresh is single-flight per key in this process (flights) and across
// processes (a Create in LockBucket).
type tokenSource struct {
	kv, locks jetstream.KeyValue // nil: this process only
	lockTTL   time.Duration
	opt       *options
	log       zerolog.Logger

	mu      sync.Mutex
	mem     map[string]cachedToken
	flights map[string]chan struct{}

	// onLockBusy, when set (tests), is called each time another holder's
	// lock makes this source wait.
	onLockBusy func(key string)
}

func newTokenSource(s *Stores, opt *options, log zerolog.Logger) *tokenSource {
	ts := &tokenSource{
		opt:     opt,
		log:     log,
		mem:     make(map[string]cachedToken),
		flights: make(map[string]chan struct{}),
	}
	// Both buckets or neither: a token bucket without locks would let
	// every replica fetch at once.
	if s != nil && s.Tokens != nil && s.Locks != nil {
		ts.kv, ts.locks, ts.lockTTL = s.Tokens, s.Locks, s.lockTTL
		if ts.lockTTL <= 0 {
			ts.lockTTL = DefaultLockTTL // Stores built by hand
		}
	}
	return ts
}

func (ts *tokenSource) fresh(key string) (string, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.mem[key]
	if ok && ts.opt.clock.Now().Before(t.RefreshAt) {
		return t.Token, true
	}
	return "", false
}

func (ts *tokenSource) remember(key string, t cachedToken) {
	ts.mu.Lock()
	ts.mem[key] = t
	ts.mu.Unlock()
}

// flight returns the per-key channel whose one slot is the in-process
// refresh lock.
func (ts *tokenSource) flight(key string) chan struct{} {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f, ok := ts.flights[key]
	if !ok {
		f = make(chan struct{}, 1)
		ts.flights[key] = f
	}
	return f
}

// get returns a fresh token for key, fetching it if neither memory nor
// the KV bucket has one. Of all callers in all processes that share the
// buckets, one fetches; the rest wait for its result, bounded by
// opt.tokenWait and ctx.
func (ts *tokenSource) get(ctx context.Context, key string, fetch fetchFunc) (string, error) {
	if tok, ok := ts.fresh(key); ok {
		return tok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ts.opt.tokenWait)
	defer cancel()
	f := ts.flight(key)
	select {
	case f <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("wecom: wait for token: %w", ctx.Err())
	}
	defer func() { <-f }()
	// Whoever held the flight may have just stored a token.
	if tok, ok := ts.fresh(key); ok {
		return tok, nil
	}
	if ts.kv == nil {
		return ts.fetch(ctx, key, fetch)
	}
	for {
		if t, ok, err := ts.load(ctx, key); err != nil {
			return "", err
		} else if ok {
			return t, nil
		}
		rev, err := ts.locks.Create(ctx, key, lockOwner())
		if err == nil {
			return ts.refreshLocked(ctx, key, rev, fetch)
		}
		if !broker.CASConflict(err) {
			return "", fmt.Errorf("wecom: take token refresh lock: %w", err)
		}
		if ts.onLockBusy != nil {
			ts.onLockBusy(key)
		}
		// Another process is refreshing. Its token shows up in the
		// bucket, or its lock goes (released or expired) and this one
		// takes over.
		if err := (realClock{}).Sleep(ctx, ts.opt.lockPoll); err != nil {
			return "", fmt.Errorf("wecom: wait for token refresh by another replica: %w", err)
		}
	}
}

// refreshLocked runs with the KV lock of key at revision rev held.
func (ts *tokenSource) refreshLocked(ctx context.Context, key string, rev uint64, fetch fetchFunc) (string, error) {
	defer func() {
		// Only our own revision: if the lock expired and another holder
		// took it, this delete fails and leaves theirs alone. Not ctx, so
		// an expired caller still releases.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = ts.locks.Delete(dctx, key, jetstream.LastRevision(rev))
	}()
	// The previous holder may have stored a token between our load and
	// our Create.
	if t, ok, err := ts.load(ctx, key); err != nil {
		return "", err
	} else if ok {
		return t, nil
	}
	fctx, cancel := context.WithTimeout(ctx, ts.lockTTL)
	defer cancel()
	return ts.fetch(fctx, key, fetch)
}

// fetch calls WeCom and stores the token in memory and, if shared, in KV.
func (ts *tokenSource) fetch(ctx context.Context, key string, fetch fetchFunc) (string, error) {
	tok, expiresIn, err := fetch(ctx)
	if err != nil {
		return "", err
	}
	now := ts.opt.clock.Now()
	margin := min(ts.opt.refreshBefore, expiresIn/2)
	t := cachedToken{Token: tok, ExpiresAt: now.Add(expiresIn), RefreshAt: now.Add(expiresIn - margin)}
	ts.remember(key, t)
	if ts.kv != nil {
		data, err := json.Marshal(t)
		if err != nil {
			return "", fmt.Errorf("wecom: encode token: %w", err)
		}
		if _, err := ts.kv.Put(ctx, key, data); err != nil {
			// The token works; other replicas will fetch their own.
			ts.log.Warn().Str("key", key).Err(err).Msg("cannot share access token")
		}
	}
	return tok, nil
}

// load reads key from KV and remembers it if fresh.
func (ts *tokenSource) load(ctx context.Context, key string) (string, bool, error) {
	e, err := ts.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("wecom: read cached token: %w", err)
	}
	var t cachedToken
	if err := json.Unmarshal(e.Value(), &t); err != nil || t.Token == "" {
		return "", false, nil // unreadable: replace it
	}
	if !ts.opt.clock.Now().Before(t.RefreshAt) {
		return "", false, nil
	}
	ts.remember(key, t)
	return t.Token, true, nil
}

// invalidate drops key's token if it is still bad, in memory and KV. It
// compares first, so a replica that got the error late does not drop the
// new token another replica already fetched.
func (ts *tokenSource) invalidate(ctx context.Context, key, bad string) error {
	ts.mu.Lock()
	if t, ok := ts.mem[key]; ok && t.Token == bad {
		delete(ts.mem, key)
	}
	ts.mu.Unlock()
	if ts.kv == nil {
		return nil
	}
	e, err := ts.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wecom: read cached token: %w", err)
	}
	var t cachedToken
	if json.Unmarshal(e.Value(), &t) == nil && t.Token != bad {
		return nil
	}
	err = ts.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !broker.CASConflict(err) {
		return fmt.Errorf("wecom: drop cached token: %w", err)
	}
	return nil
}

// forget drops key's token from memory and purges it, and its refresh
// lock, from the buckets: no revision of it stays.
func (ts *tokenSource) forget(ctx context.Context, key string) error {
	ts.mu.Lock()
	delete(ts.mem, key)
	ts.mu.Unlock()
	if ts.kv == nil {
		return nil
	}
	var errs []error
	for _, kv := range []jetstream.KeyValue{ts.kv, ts.locks} {
		if err := kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, fmt.Errorf("wecom: purge cached token: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ForgetCorp deletes this process's and the shared cache's access token of
// corp, and its refresh lock: a corp that cancelled the suite leaves no
// token behind. A later call for the corp fetches a token again (and fails
// if its permanent code is gone).
func (c *Client) ForgetCorp(ctx context.Context, corp string) error {
	return c.tokens.forget(ctx, c.corpTokenKey(corp))
}

// lockOwner is a random lock value, for whoever inspects the bucket.
func lockOwner() []byte {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return []byte(hex.EncodeToString(b[:]))
}

func (c *Client) corpTokenKey(corp string) string { return kvKey(c.app.Name, "corp", corp) }

func (c *Client) suiteTokenKey() string { return kvKey("suite", c.app.SuiteID) }

// accessToken returns the corp's access token: gettoken for zone apps, the
// suite's get_corp_token for archive apps.
func (c *Client) accessToken(ctx context.Context, corp string) (string, error) {
	if c.zone {
		return c.tokens.get(ctx, c.corpTokenKey(corp), c.countRefresh(TokenCorp, c.getToken))
	}
	return c.tokens.get(ctx, c.corpTokenKey(corp), c.countRefresh(TokenCorp, func(ctx context.Context) (string, time.Duration, error) {
		return c.getCorpToken(ctx, corp)
	}))
}

func (c *Client) invalidateToken(ctx context.Context, corp, bad string) error {
	return c.tokens.invalidate(ctx, c.corpTokenKey(corp), bad)
}

// tokenResponse covers gettoken, get_suite_token and get_corp_token;
// their success answers may leave errcode out.
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	SuiteAccessToken string `json:"suite_access_token"`
	ExpiresIn        int64  `json:"expires_in"`
}

func decodeToken(api string, body []byte, suite bool) (string, time.Duration, error) {
	var r tokenResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return "", 0, fmt.Errorf("wecom %s: decode response: %w", api, err)
	}
	tok := r.AccessToken
	if suite {
		tok = r.SuiteAccessToken
	}
	if tok == "" || r.ExpiresIn <= 0 {
		return "", 0, fmt.Errorf("wecom %s: response lacks a token or expires_in", api)
	}
	return tok, time.Duration(r.ExpiresIn) * time.Second, nil
}

// getToken is gettoken, for zone (and self-built) apps.
func (c *Client) getToken(ctx context.Context) (string, time.Duration, error) {
	const api = apiGetToken
	var body []byte
	err := c.retry(ctx, c.app.CorpID, api, "", func(ctx context.Context) error {
		q := url.Values{"corpid": {c.app.CorpID}, "corpsecret": {c.app.CorpSecret.Reveal()}}
		var err error
		body, err = c.roundTrip(ctx, api, http.MethodGet, "/cgi-bin/gettoken", q, nil)
		return err
	})
	if err != nil {
		return "", 0, err
	}
	return decodeToken(api, body, false)
}

// getCorpToken is get_corp_token with the suite token; on a suite-token
// error it drops the suite token, gets a new one and tries once more.
func (c *Client) getCorpToken(ctx context.Context, corp string) (string, time.Duration, error) {
	const api = apiGetCorpToken
	code, err := c.permanentCode(ctx, corp)
	if err != nil {
		return "", 0, err
	}
	req, err := json.Marshal(map[string]string{"auth_corpid": corp, "permanent_code": code})
	if err != nil {
		return "", 0, err
	}
	call := func(suiteToken string) ([]byte, error) {
		var body []byte
		err := c.retry(ctx, c.app.SuiteID, api, "", func(ctx context.Context) error {
			var err error
			body, err = c.post(ctx, api, "/cgi-bin/service/get_corp_token", "suite_access_token", suiteToken, req)
			return err
		})
		return body, err
	}
	suiteKey := c.suiteTokenKey()
	getSuiteToken := c.countRefresh(TokenSuite, c.getSuiteToken)
	st, err := c.tokens.get(ctx, suiteKey, getSuiteToken)
	if err != nil {
		return "", 0, err
	}
	body, err := call(st)
	if IsTokenInvalid(err) {
		if ierr := c.tokens.invalidate(ctx, suiteKey, st); ierr != nil {
			return "", 0, errors.Join(err, ierr)
		}
		if st, err = c.tokens.get(ctx, suiteKey, getSuiteToken); err != nil {
			return "", 0, err
		}
		body, err = call(st)
	}
	if err != nil {
		return "", 0, err
	}
	return decodeToken(api, body, false)
}

// getSuiteToken is get_suite_token with the current suite_ticket. On
// 40085 (invalid or expired ticket) it drops that ticket and tries once
// more with the previous one, if the store kept one; otherwise the suite
// waits for WeCom's next push (every 10 minutes), and get fails with
// ErrNoSuiteTicket until then.
func (c *Client) getSuiteToken(ctx context.Context) (string, time.Duration, error) {
	const api = apiGetSuiteToken
	for try := 1; ; try++ {
		ticket, err := c.tickets.Get(ctx, c.app.SuiteID)
		if err != nil {
			return "", 0, err
		}
		body, err := c.suiteTokenWith(ctx, ticket)
		if err == nil {
			return decodeToken(api, body, true)
		}
		if !errors.Is(err, ErrSuiteTicketInvalid) {
			return "", 0, err
		}
		fellBack, rerr := c.tickets.Reject(ctx, c.app.SuiteID, ticket)
		if rerr != nil {
			return "", 0, errors.Join(err, rerr)
		}
		ev := c.log.Warn().Str("suite", c.app.SuiteID).Err(err)
		if !fellBack {
			ev.Msg("suite_ticket rejected (40085) and dropped; no previous ticket, waiting for WeCom's next push")
			return "", 0, err
		}
		if try >= 2 {
			ev.Msg("suite_ticket rejected (40085) and dropped; the previous ticket is kept for the next refresh")
			return "", 0, err
		}
		ev.Msg("suite_ticket rejected (40085) and dropped; falling back to the previous ticket")
	}
}

// suiteTokenWith calls get_suite_token with ticket.
func (c *Client) suiteTokenWith(ctx context.Context, ticket string) ([]byte, error) {
	const api = apiGetSuiteToken
	req, err := json.Marshal(map[string]string{
		"suite_id": c.app.SuiteID, "suite_secret": c.app.SuiteSecret.Reveal(), "suite_ticket": ticket,
	})
	if err != nil {
		return nil, err
	}
	var body []byte
	err = c.retry(ctx, c.app.SuiteID, api, "", func(ctx context.Context) error {
		var err error
		body, err = c.roundTrip(ctx, api, http.MethodPost, "/cgi-bin/service/get_suite_token", nil, req)
		return err
	})
	return body, err
}
