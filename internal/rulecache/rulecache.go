// Package rulecache remembers keyword rules' names so hit events can carry
// them. A lookup never waits: an unknown rule is looked up in the background
// with get_rule_detail and named in the events that follow.
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
)

type entry struct {
	name    string
	ok      bool      // name is known
	until   time.Time // when to look again
	pending bool
}

// Cache maps (corp, rule) to a name. Safe for concurrent use.
type Cache struct {
	getters map[string]Getter // by corp
	log     zerolog.Logger
	now     func() time.Time
	ttl     time.Duration
	retry   time.Duration

	mu      sync.Mutex
	entries map[[2]string]*entry
	sem     chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New returns a Cache that looks rules of a corp up with getters[corp].
func New(getters map[string]Getter, log zerolog.Logger) *Cache {
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{
		getters: getters, log: log.With().Str("component", "rulecache").Logger(),
		now: time.Now, ttl: DefaultTTL, retry: DefaultRetry,
		entries: map[[2]string]*entry{}, sem: make(chan struct{}, maxLookups),
		ctx: ctx, cancel: cancel,
	}
}

// RuleName returns the cached name, and on a miss or a stale entry starts
// a background lookup. It never blocks on WeCom.
func (c *Cache) RuleName(corpID, ruleID string) (string, bool) {
	k := [2]string{corpID, ruleID}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		e = &entry{}
		c.entries[k] = e
	}
	if !e.pending && !c.now().Before(e.until) {
		if g := c.getters[corpID]; g != nil && c.ctx.Err() == nil {
			e.pending = true
			c.wg.Add(1)
			go c.lookup(k, g)
		}
	}
	return e.name, e.ok
}

// Set records a name, e.g. right after the rule was created or read.
func (c *Cache) Set(corpID, ruleID, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[[2]string{corpID, ruleID}] = &entry{name: name, ok: true, until: c.now().Add(c.ttl)}
}

func (c *Cache) lookup(k [2]string, g Getter) {
	defer c.wg.Done()
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-c.ctx.Done():
		c.finish(k, "", c.ctx.Err())
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, lookupTimeout)
	defer cancel()
	name, err := g.RuleName(ctx, k[0], k[1])
	if err != nil {
		c.log.Debug().Err(err).Str("corp_id", k[0]).Str("rule_id", k[1]).Msg("rule lookup failed")
	}
	c.finish(k, name, err)
}

func (c *Cache) finish(k [2]string, name string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	e.pending = false
	if err != nil {
		e.until = c.now().Add(c.retry)
		return
	}
	e.name, e.ok, e.until = name, true, c.now().Add(c.ttl)
}

// Close stops background lookups and waits for them.
func (c *Cache) Close() {
	c.cancel()
	c.wg.Wait()
}
