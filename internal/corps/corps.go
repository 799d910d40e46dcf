// Package corps is the corp registry: which corps have authorized which app
// (suite), as a JetStream KV bucket every replica reads and watches, so that
// a corp installed or removed at run time is served, or dropped, by all of
// them without a restart.
//
// Each entry is one (app, corp): the corp's id and name, its state (active
// or cancelled), where its permanent code came from and when, the last
// change, and the permanent code itself, sealed with AES-256-GCM under a key
// of a Keyring (the key id is stored beside the ciphertext, so keys can
// rotate; Rekey re-seals under the current one). Reading metadata needs no
// key; reading a permanent code does. A permanent code never appears in an
// error, a log line or fmt output: callers get it as a secret.Secret.
//
// It leaves to others: exchanging auth codes with WeCom (Authorize takes
// the exchange as a function), deleting a cancelled corp's tokens, cursors
// and events (Cancel only drops what the registry holds), publishing
// lifecycle events, and starting or stopping fetches (Watch tells whoever
// does).
package corps

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/secret"
)

// Bucket names.
const (
	// Bucket holds one entry per (app, corp), key "<app>.<corp>" with both
	// escaped (see key).
	Bucket = "wecom_corps"
	// CodeBucket remembers auth codes already exchanged (by digest, never
	// the code), so a replayed create_auth or reset_permanent_code does not
	// exchange again. Entries expire after CodeMemory.
	CodeBucket = "wecom_corp_auth_codes"
)

// CodeMemory is how long CodeBucket remembers an auth code. WeCom's codes
// live 10 minutes; a week covers callback records redelivered long after.
const CodeMemory = 7 * 24 * time.Hour

// Errors callers branch on.
var (
	// ErrNotFound: no entry for the (app, corp).
	ErrNotFound = errors.New("corps: corp not found")
	// ErrConflict: the entry changed since the revision given (CAS).
	ErrConflict = errors.New("corps: entry changed concurrently")
	// ErrStale: the event is older than the last one applied to the entry
	// (e.g. a create_auth delivered after a later cancel_auth); nothing was
	// changed.
	ErrStale = errors.New("corps: event older than the entry's last change")
	// ErrInvalid: a bad argument; nothing was changed.
	ErrInvalid = errors.New("corps: invalid argument")
	// ErrInProgress: another replica is exchanging this auth code right now;
	// try again later.
	ErrInProgress = errors.New("corps: auth code exchange in progress elsewhere")
	// ErrCorpMismatch: the exchange of a reset_permanent_code answered for
	// another corp than the callback named; nothing was stored.
	ErrCorpMismatch = errors.New("corps: exchange answered for another corp")
)

// State is an entry's state.
type State string

// States.
const (
	// Active: the corp is served.
	Active State = "active"
	// Cancelled: the corp removed the suite (cancel_auth) or an operator
	// removed it; its permanent code and name are gone, and it is not served.
	Cancelled State = "cancelled"
)

// Source is where an entry's current permanent code came from. It decides
// Seed's precedence: only a code from the config file is replaced by the
// config file.
type Source string

// Sources.
const (
	SourceConfig     Source = "config"
	SourceCreateAuth Source = "create_auth"
	SourceReset      Source = "reset_permanent_code"
)

// Cause names what made the last change of an entry.
type Cause string

// Causes.
const (
	CauseSeed       Cause = "seed"
	CauseCreateAuth Cause = "create_auth"
	CauseChangeAuth Cause = "change_auth"
	CauseReset      Cause = "reset_permanent_code"
	CauseCancelAuth Cause = "cancel_auth"
	CauseOperator   Cause = "operator"
	CauseRekey      Cause = "rekey"
)

// Corp is one registry entry. It holds the permanent code sealed only;
// Registry.PermanentCode opens it.
type Corp struct {
	App      string `json:"app"`
	CorpID   string `json:"corp_id"`
	CorpName string `json:"corp_name,omitempty"`
	State    State  `json:"state"`
	// Source is where the current permanent code came from.
	Source Source `json:"source"`
	// AuthorizedAt is when the corp was last authorized (seeded or
	// create_auth); a reset keeps it.
	AuthorizedAt time.Time `json:"authorized_at"`
	// LastChange and ChangedAt are the cause and time of the newest write.
	LastChange Cause     `json:"last_change"`
	ChangedAt  time.Time `json:"changed_at"`
	// EventAt is WeCom's time of the newest callback applied; an older
	// callback is refused (ErrStale). Zero if none.
	EventAt time.Time `json:"event_at,omitzero"`
	// Code is the sealed permanent code; nil once cancelled.
	Code *Sealed `json:"permanent_code,omitempty"`
	// Revision is the KV revision the entry was read at; not stored.
	Revision uint64 `json:"-"`
}

// KeyID is the id of the key the permanent code is sealed under, "" if
// there is none.
func (c Corp) KeyID() string {
	if c.Code == nil {
		return ""
	}
	return c.Code.KeyID
}

// Options of Open.
type options struct {
	maxBytes int64
	replicas int
	clock    func() time.Time
	log      zerolog.Logger
	claimTTL time.Duration
}

// Option changes a default of Open.
type Option func(*options) error

// WithReplicas sets the buckets' replicas (default 1).
func WithReplicas(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 5 {
			return fmt.Errorf("%w: replicas %d", ErrInvalid, n)
		}
		o.replicas = n
		return nil
	}
}

// WithMaxBytes caps each bucket (KV MaxBytes), so that a full store
// elsewhere cannot take their room; 0 (the default) means no cap. An entry
// takes 400 to 500 bytes of the registry bucket (BenchmarkRegistry_List
// reports it), so 10,000 corps need about 5 MB: more than the 4 MiB the
// other buckets get by default.
func WithMaxBytes(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("%w: max bytes %d", ErrInvalid, n)
		}
		o.maxBytes = n
		return nil
	}
}

// WithClock sets the time source of ChangedAt and AuthorizedAt.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalid)
		}
		o.clock = now
		return nil
	}
}

// WithLogger sets the logger; it gets component=corps.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithClaimTimeout sets how long an auth code exchange claimed by one
// replica blocks others (ErrInProgress) before they assume it crashed and
// take over. Default DefaultClaimTimeout.
func WithClaimTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: claim timeout %s", ErrInvalid, d)
		}
		o.claimTTL = d
		return nil
	}
}

// DefaultClaimTimeout bounds an auth code exchange claim: well beyond the
// few seconds an exchange takes with retries.
const DefaultClaimTimeout = 2 * time.Minute

// Registry is the corp registry. It is safe for concurrent use.
type Registry struct {
	kv, codes jetstream.KeyValue
	keys      *Keyring
	opt       options
	log       zerolog.Logger
}

// Open creates the buckets, or binds existing ones and updates those whose
// config differs (broker.EnsureKeyValue: safe for replicas starting at
// once, transient errors retried until ctx ends), and returns the
// registry. keys may be nil: the registry then reads metadata, cancels
// and deletes, and fails with ErrNoKeys on anything touching a permanent
// code.
//
// Defaults: WithReplicas 1; WithMaxBytes 0 (no cap); WithClock time.Now; WithLogger zerolog.Nop();
// WithClaimTimeout DefaultClaimTimeout (2m).
func Open(ctx context.Context, js jetstream.JetStream, keys *Keyring, opts ...Option) (*Registry, error) {
	r, err := newRegistry(keys, opts)
	if err != nil {
		return nil, err
	}
	open := func(c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		c.Replicas, c.History, c.Storage = r.opt.replicas, 1, jetstream.FileStorage
		c.MaxBytes = r.opt.maxBytes // 0: none
		kv, err := broker.EnsureKeyValue(ctx, js, c)
		if err != nil {
			return nil, fmt.Errorf("corps: %w", err)
		}
		return kv, nil
	}
	if r.kv, err = open(jetstream.KeyValueConfig{Bucket: Bucket, Description: "WeCom corps authorized per app"}); err != nil {
		return nil, err
	}
	if r.codes, err = open(jetstream.KeyValueConfig{Bucket: CodeBucket, Description: "WeCom auth codes already exchanged (digests)", TTL: CodeMemory}); err != nil {
		return nil, err
	}
	return r, nil
}

// Bind binds the buckets a running receiver created, changing nothing
// about them (for operator commands). Errors wrap jetstream.ErrBucketNotFound
// when there is no registry yet.
func Bind(ctx context.Context, js jetstream.JetStream, keys *Keyring, opts ...Option) (*Registry, error) {
	r, err := newRegistry(keys, opts)
	if err != nil {
		return nil, err
	}
	if r.kv, err = js.KeyValue(ctx, Bucket); err != nil {
		return nil, fmt.Errorf("corps: bind kv bucket %s: %w", Bucket, err)
	}
	if r.codes, err = js.KeyValue(ctx, CodeBucket); err != nil {
		return nil, fmt.Errorf("corps: bind kv bucket %s: %w", CodeBucket, err)
	}
	return r, nil
}

func newRegistry(keys *Keyring, opts []Option) (*Registry, error) {
	o := options{replicas: 1, clock: time.Now, log: zerolog.Nop(), claimTTL: DefaultClaimTimeout}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Registry{keys: keys, opt: o, log: o.log.With().Str("component", "corps").Logger()}, nil
}

func (r *Registry) now() time.Time { return r.opt.clock().UTC() }

// key is the KV key of an (app, corp). KV keys allow [-/_=.a-zA-Z0-9];
// anything else is escaped, reversibly, as =XX, and "." separates the two.
func key(app, corp string) string { return escape(app) + "." + escape(corp) }

func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	return b.String()
}

// splitKey reverses key.
func splitKey(k string) (app, corp string, ok bool) {
	a, c, found := strings.Cut(k, ".")
	if !found {
		return "", "", false
	}
	app, ok1 := unescape(a)
	corp, ok2 := unescape(c)
	return app, corp, ok1 && ok2
}

func unescape(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", false
		}
		b.WriteByte(v[0])
		i += 2
	}
	return b.String(), true
}

// validID: ids are what WeCom and the config give; empty ones and ones too
// long for a KV key are refused.
func validID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if len(id) > 256 {
		return fmt.Errorf("%w: %s longer than 256 bytes", ErrInvalid, what)
	}
	return nil
}

func decode(e jetstream.KeyValueEntry) (Corp, error) {
	var c Corp
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Corp{}, fmt.Errorf("corps: decode entry %s: %w", e.Key(), err)
	}
	c.Revision = e.Revision()
	return c, nil
}

// Get returns the entry of (app, corp), or ErrNotFound.
func (r *Registry) Get(ctx context.Context, app, corp string) (Corp, error) {
	if err := errors.Join(validID("app", app), validID("corp id", corp)); err != nil {
		return Corp{}, err
	}
	e, err := r.kv.Get(ctx, key(app, corp))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Corp{}, fmt.Errorf("%w: app %q corp %q", ErrNotFound, app, corp)
	}
	if err != nil {
		return Corp{}, fmt.Errorf("corps: get %s/%s: %w", app, corp, err)
	}
	return decode(e)
}

// PermanentCode opens c's sealed permanent code. It fails with ErrNoKeys,
// ErrUnknownKey or ErrDecrypt, and with ErrNotFound if c has none
// (cancelled).
func (r *Registry) PermanentCode(c Corp) (secret.Secret, error) {
	if c.Code == nil {
		return "", fmt.Errorf("%w: app %q corp %q has no permanent code (state %s)", ErrNotFound, c.App, c.CorpID, c.State)
	}
	code, err := r.keys.open(c.App, c.CorpID, c.Code)
	if err != nil {
		return "", fmt.Errorf("corps: app %q corp %q: %w", c.App, c.CorpID, err)
	}
	return secret.Secret(code), nil
}

// List returns the entries of app ("" for every app), sorted by app and
// corp id. It reads the bucket as one stream (a KV watch until caught up),
// not one request per entry, so 10,000 entries cost one round trip's
// latency plus their bytes.
func (r *Registry) List(ctx context.Context, app string) ([]Corp, error) {
	w, err := r.kv.Watch(ctx, filter(app), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("corps: list: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []Corp
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("corps: list: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("corps: list: watch ended early")
			}
			if e == nil {
				sortCorps(out)
				return out, nil
			}
			c, err := decode(e)
			if err != nil {
				r.log.Warn().Str("key", e.Key()).Err(err).Msg("skipping unreadable entry")
				continue
			}
			out = append(out, c)
		}
	}
}

func filter(app string) string {
	if app == "" {
		return ">"
	}
	return escape(app) + ".*"
}

func sortCorps(cs []Corp) {
	// Keys arrive in stream order (last write); list in id order.
	slices.SortFunc(cs, func(a, b Corp) int {
		if c := strings.Compare(a.App, b.App); c != 0 {
			return c
		}
		return strings.Compare(a.CorpID, b.CorpID)
	})
}

// Put writes c as given, with ChangedAt set to now and, if code is not
// empty, code sealed under the current key as c's permanent code. rev 0
// creates the entry (ErrConflict if it exists); otherwise the entry must
// still be at rev (ErrConflict if not). It returns the new revision.
func (r *Registry) Put(ctx context.Context, c Corp, code secret.Secret, rev uint64) (uint64, error) {
	if err := errors.Join(validID("app", c.App), validID("corp id", c.CorpID)); err != nil {
		return 0, err
	}
	switch c.State {
	case Active, Cancelled:
	default:
		return 0, fmt.Errorf("%w: state %q", ErrInvalid, c.State)
	}
	if code != "" {
		s, err := r.keys.seal(c.App, c.CorpID, code.Reveal())
		if err != nil {
			return 0, err
		}
		c.Code = s
	}
	if c.State == Active && c.Code == nil {
		return 0, fmt.Errorf("%w: an active corp needs a permanent code", ErrInvalid)
	}
	c.ChangedAt = r.now()
	return r.write(ctx, c, rev)
}

// write stores c with CAS on rev (0: create).
func (r *Registry) write(ctx context.Context, c Corp, rev uint64) (uint64, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return 0, fmt.Errorf("corps: encode entry: %w", err)
	}
	k := key(c.App, c.CorpID)
	var next uint64
	if rev == 0 {
		next, err = r.kv.Create(ctx, k, data)
	} else {
		next, err = r.kv.Update(ctx, k, data, rev)
	}
	if err != nil {
		if broker.CASConflict(err) {
			return 0, fmt.Errorf("%w: app %q corp %q: %w", ErrConflict, c.App, c.CorpID, err)
		}
		return 0, fmt.Errorf("corps: write %s/%s: %w", c.App, c.CorpID, err)
	}
	return next, nil
}

// casRetries bounds the read-modify-write loops: each conflict means
// another replica wrote in between, which settles within a few rounds.
const casRetries = 10

// cas applies change to the entry of (app, corp) under compare-and-set
// (broker.UpdateKey), re-reading and re-applying on a conflict. change gets
// the entry (the zero Corp, Revision 0, when there is none) and returns the
// entry to store, or write=false to leave it; what change returns last is
// returned, with its new revision if written. Running out of tries is
// ErrConflict.
func (r *Registry) cas(ctx context.Context, app, corp string, change func(cur Corp) (next Corp, write bool, err error)) (Corp, error) {
	var (
		out Corp
		own error // the error change (or decoding) returned, passed on as is
	)
	rev, err := broker.UpdateKey(ctx, r.kv, key(app, corp), casRetries, func(e jetstream.KeyValueEntry) ([]byte, error) {
		var cur Corp
		if e != nil {
			if cur, own = decode(e); own != nil {
				return nil, own
			}
		}
		next, write, err := change(cur)
		out, own = next, err
		if err != nil || !write {
			return nil, err
		}
		data, err := json.Marshal(next)
		if err != nil {
			own = fmt.Errorf("corps: encode entry: %w", err)
			return nil, own
		}
		return data, nil
	})
	switch {
	case err == nil:
		if rev != 0 {
			out.Revision = rev
		}
		return out, nil
	case own != nil && err == own:
		return out, err
	case errors.Is(err, broker.ErrCASGaveUp):
		return Corp{}, fmt.Errorf("%w: app %q corp %q: %w", ErrConflict, app, corp, err)
	}
	return Corp{}, fmt.Errorf("corps: %w", err)
}

// Update applies mutate to the entry of (app, corp) and writes it if the
// entry did not change meanwhile, re-reading and re-applying on a conflict.
// mutate may return an error to abort; ErrStale from mutate is returned as
// is. It fails with ErrNotFound when there is no entry. mutate must not set
// Code (use Put or Authorize).
func (r *Registry) Update(ctx context.Context, app, corp string, cause Cause, mutate func(*Corp) error) (Corp, error) {
	if err := errors.Join(validID("app", app), validID("corp id", corp)); err != nil {
		return Corp{}, err
	}
	return r.cas(ctx, app, corp, func(c Corp) (Corp, bool, error) {
		if c.Revision == 0 {
			return Corp{}, false, fmt.Errorf("%w: app %q corp %q", ErrNotFound, app, corp)
		}
		code := c.Code
		if err := mutate(&c); err != nil {
			return c, false, err
		}
		c.App, c.CorpID, c.Code = app, corp, code
		c.LastChange, c.ChangedAt = cause, r.now()
		return c, true, nil
	})
}

// Cancel marks (app, corp) cancelled as of at (WeCom's event time; zero
// for an operator) and drops its permanent code and name from the entry at
// once, so every watching replica stops serving it. Cancelling a cancelled
// corp changes nothing. It fails with ErrNotFound, or ErrStale if the entry
// applied a newer event (a re-authorization after this cancellation).
//
// The entry itself stays, holding the corp id, state and times, until
// Delete: a replayed older create_auth must not bring the corp back. For
// the same reason WeCom's cancellation (at not zero) of a corp without an
// entry writes a cancelled one: its create_auth may still be on its way
// (being exchanged, or retried after a failure) and must then be stale.
func (r *Registry) Cancel(ctx context.Context, app, corp string, at time.Time, cause Cause) (Corp, error) {
	if err := errors.Join(validID("app", app), validID("corp id", corp)); err != nil {
		return Corp{}, err
	}
	return r.cas(ctx, app, corp, func(c Corp) (Corp, bool, error) {
		switch {
		case c.Revision == 0 && at.IsZero():
			return Corp{}, false, fmt.Errorf("%w: app %q corp %q", ErrNotFound, app, corp)
		case c.Revision == 0:
			c = Corp{App: app, CorpID: corp}
		}
		if !at.IsZero() && c.EventAt.After(at) {
			return c, false, fmt.Errorf("%w: app %q corp %q changed at %s, cancel is of %s", ErrStale, app, corp,
				c.EventAt.Format(time.RFC3339), at.UTC().Format(time.RFC3339))
		}
		if c.State == Cancelled {
			return c, false, nil
		}
		c.State, c.Code, c.CorpName = Cancelled, nil, ""
		c.LastChange, c.ChangedAt = cause, r.now()
		if !at.IsZero() {
			c.EventAt = at.UTC()
		}
		return c, true, nil
	})
}

// Delete removes every trace of (app, corp) from the registry bucket (a KV
// purge: no revision of it is kept). Deleting what is not there succeeds.
// Watchers see it as a Change with Deleted set.
func (r *Registry) Delete(ctx context.Context, app, corp string) error {
	if err := errors.Join(validID("app", app), validID("corp id", corp)); err != nil {
		return err
	}
	if err := r.kv.Purge(ctx, key(app, corp)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("corps: delete %s/%s: %w", app, corp, err)
	}
	return nil
}

// Rekey re-seals every permanent code not under the current key, so that
// old keys can be dropped from the configuration. It returns how many
// entries it re-sealed; entries it cannot open (ErrUnknownKey, ErrDecrypt)
// are left as they are and reported in the joined error, one per entry.
func (r *Registry) Rekey(ctx context.Context) (int, error) {
	if r.keys == nil {
		return 0, ErrNoKeys
	}
	all, err := r.List(ctx, "")
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, c := range all {
		if c.Code == nil || c.Code.KeyID == r.keys.current {
			continue
		}
		done, err := r.rekey(ctx, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if done {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// rekey re-seals one entry, re-reading it on a conflict. It reports
// whether it wrote.
func (r *Registry) rekey(ctx context.Context, c Corp) (bool, error) {
	written := false
	_, err := r.cas(ctx, c.App, c.CorpID, func(c Corp) (Corp, bool, error) {
		written = false
		if c.Code == nil || c.Code.KeyID == r.keys.current {
			return c, false, nil
		}
		code, err := r.PermanentCode(c)
		if err != nil {
			return c, false, err
		}
		s, err := r.keys.seal(c.App, c.CorpID, code.Reveal())
		if err != nil {
			return c, false, err
		}
		c.Code = s
		c.LastChange, c.ChangedAt = CauseRekey, r.now()
		written = true
		return c, true, nil
	})
	return written && err == nil, err
}
