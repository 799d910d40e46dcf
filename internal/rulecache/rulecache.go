// Package rulecache remembers keyword rules' names so hit events can carry
// them, looking unknown rules up with get_rule_detail.
//
// RuleName never waits. Resolve, which the publisher calls once per page
// before building its events, waits for the names the page lacks: their
// lookups run concurrently (at most 4 at a time), and the wait ends when
// they have answered or after DefaultWait (2 s) per page, whichever is
// first. So an event of an existing rule carries its name from the first
// page after start, and a WeCom that does not answer costs a page at most
// 2 s and the names, never the events. A rule whose lookup failed (deleted,
// say) is not asked again for DefaultRetry, so it delays no further page.
// A Warmer (warm.go) pre-loads every corp's names in the background, a few
// corps at a time, so that start-up makes no WeCom call per corp. Keeping
// names fresh is left to the TTL; which corps to warm, and when, to the
// caller.
package rulecache

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Getter fetches a rule's name from WeCom.
type Getter interface {
	RuleName(ctx context.Context, corpID, ruleID string) (string, error)
}

// GetterFunc adapts a function to Getter.
type GetterFunc func(ctx context.Context, corpID, ruleID string) (string, error)

// RuleName calls f.
func (f GetterFunc) RuleName(ctx context.Context, corpID, ruleID string) (string, error) {
	return f(ctx, corpID, ruleID)
}

// Defaults.
const (
	// DefaultTTL: rules are renamed rarely; an hour-old name is fine.
	DefaultTTL = time.Hour
	// DefaultRetry is how long a failed lookup is not retried.
	DefaultRetry = time.Minute
	// lookupTimeout bounds one background get_rule_detail.
	lookupTimeout = 10 * time.Second
	// maxLookups bounds concurrent background lookups.
	maxLookups = 4
	// DefaultWait bounds how long Resolve waits for one page's names.
	DefaultWait = 2 * time.Second
)

type entry struct {
	name    string
	ok      bool      // name is known
	until   time.Time // when to look again
	pending bool
	done    chan struct{} // closed when the pending lookup ends
}

// Cache maps (corp, rule) to a name. Safe for concurrent use.
type Cache struct {
	getter func(corpID string) Getter // nil: no lookups for the corp
	log    zerolog.Logger
	now    func() time.Time
	ttl    time.Duration
	retry  time.Duration
	wait   time.Duration

	mu      sync.Mutex
	entries map[[2]string]*entry
	sem     chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Option sets an optional setting of New and NewFunc.
type Option func(*options) error

type options struct {
	log zerolog.Logger
}

// WithLogger sets the logger of failed lookups; the Cache adds its
// component field. Default zerolog.Nop.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error {
		o.log = l
		return nil
	}
}

// New returns a Cache that looks rules of a corp up with getters[corp].
// Its options are NewFunc's.
func New(getters map[string]Getter, opts ...Option) (*Cache, error) {
	return NewFunc(func(corpID string) Getter { return getters[corpID] }, opts...)
}

// NewFunc returns a Cache that looks rules of a corp up with getter(corp),
// asked at each lookup, so corps that appear at run time get names too;
// getter returns nil for a corp it does not serve. Its one option is
// WithLogger (default zerolog.Nop). The Cache's lookups run until Close.
func NewFunc(getter func(corpID string) Getter, opts ...Option) (*Cache, error) {
	o := options{log: zerolog.Nop()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		getter: getter, log: o.log.With().Str("component", "rulecache").Logger(),
		now: time.Now, ttl: DefaultTTL, retry: DefaultRetry, wait: DefaultWait,
		entries: map[[2]string]*entry{}, sem: make(chan struct{}, maxLookups),
		ctx: ctx, cancel: cancel,
	}, nil
}

// RuleName returns the cached name, and on a miss or a stale entry starts
// a background lookup. It never blocks on WeCom.
func (c *Cache) RuleName(corpID, ruleID string) (string, bool) {
	k := [2]string{corpID, ruleID}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.startLocked(k)
	return e.name, e.ok
}

// startLocked returns k's entry, starting a lookup if the entry is missing
// or stale and none is pending.
func (c *Cache) startLocked(k [2]string) *entry {
	e := c.entries[k]
	if e == nil {
		e = &entry{}
		c.entries[k] = e
	}
	if !e.pending && !c.now().Before(e.until) {
		if g := c.getter(k[0]); g != nil && c.ctx.Err() == nil {
			e.pending = true
			e.done = make(chan struct{})
			c.wg.Add(1)
			go c.lookup(k, e, g)
		}
	}
	return e
}

// Resolve waits until every rule of ruleIDs in corpID has a name, or its
// lookup has failed, or DefaultWait has passed, or ctx is done, whichever
// comes first. Rules already named, or whose lookup failed less than
// DefaultRetry ago, cost no wait. Lookups it starts run concurrently and
// go on after it returns, for the pages that follow.
func (c *Cache) Resolve(ctx context.Context, corpID string, ruleIDs []string) {
	var waits []chan struct{}
	c.mu.Lock()
	for _, id := range ruleIDs {
		e := c.startLocked([2]string{corpID, id})
		if e.pending && !e.ok {
			waits = append(waits, e.done)
		}
	}
	c.mu.Unlock()
	if len(waits) == 0 {
		return
	}
	t := time.NewTimer(c.wait)
	defer t.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-t.C:
			c.log.Debug().Str("corp_id", corpID).Dur("wait", c.wait).Msg("rule names still unknown; publishing without them")
			return
		case <-ctx.Done():
			return
		}
	}
}

// Set records a name, e.g. right after the rule was created or read.
func (c *Cache) Set(corpID, ruleID, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]string{corpID, ruleID}
	e := c.entries[k]
	if e == nil {
		e = &entry{}
		c.entries[k] = e
	}
	// In place: a pending lookup keeps its done channel for its waiters.
	e.name, e.ok, e.until = name, true, c.now().Add(c.ttl)
}

func (c *Cache) lookup(k [2]string, e *entry, g Getter) {
	defer c.wg.Done()
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-c.ctx.Done():
		c.finish(k, e, "", c.ctx.Err())
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, lookupTimeout)
	defer cancel()
	name, err := g.RuleName(ctx, k[0], k[1])
	if err != nil {
		c.log.Debug().Err(err).Str("corp_id", k[0]).Str("rule_id", k[1]).Msg("rule lookup failed")
	}
	c.finish(k, e, name, err)
}

// finish ends e's lookup and records its result, unless Forget dropped e
// meanwhile: then the result is the forgotten corp's and is not kept.
func (c *Cache) finish(k [2]string, e *entry, name string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.pending = false
	close(e.done)
	if c.entries[k] != e {
		return
	}
	if err != nil {
		e.until = c.now().Add(c.retry)
		return
	}
	e.name, e.ok, e.until = name, true, c.now().Add(c.ttl)
}

// Forget drops every name of corpID (a corp that cancelled: its rule
// names are its data). A lookup under way is dropped too: it still
// releases its waiters, but its result is not kept (finish), so a name
// comes back only if asked for again.
func (c *Cache) Forget(corpID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k[0] == corpID {
			delete(c.entries, k)
		}
	}
}

// Close stops background lookups and waits for them.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
}
