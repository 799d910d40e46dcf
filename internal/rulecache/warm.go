package rulecache

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Lister lists every rule of a corp with its name, calling set for each:
// get_rule_list through the corp's client.
type Lister interface {
	ListRuleNames(ctx context.Context, corpID string, set func(ruleID, name string)) error
}

// ListerFunc adapts a function to Lister.
type ListerFunc func(ctx context.Context, corpID string, set func(ruleID, name string)) error

// ListRuleNames calls f.
func (f ListerFunc) ListRuleNames(ctx context.Context, corpID string, set func(ruleID, name string)) error {
	return f(ctx, corpID, set)
}

// Warm-up defaults.
const (
	// DefaultWarmWorkers is how many corps' rules are listed at once: a
	// background trickle beside the fetches, never a burst of thousands.
	DefaultWarmWorkers = 2
	// DefaultWarmAttempts bounds the tries per corp, about three minutes
	// of retries: an archive app cannot call WeCom before the first
	// suite_ticket arrives (every 10 minutes, or at once when asked from
	// WeCom's console). Giving up costs only the names, which RuleName
	// then looks up rule by rule.
	DefaultWarmAttempts = 8
	warmFirstRetry      = time.Second
	warmMaxRetry        = 30 * time.Second
)

// Warmer lists corps' rules in the background, a few corps at a time, so
// that even the first events of a rule carry its name, while start-up
// makes no WeCom call of its own: a replica with 10,000 corps is ready
// at once, and their rules arrive over the following minutes. A corp that
// fails is retried later, with backoff, without holding up the others.
// Create it with NewWarmer, then Run; Add queues corps at any time.
type Warmer struct {
	cache    *Cache
	lister   func(corpID string) Lister // nil: the corp is not served (now)
	log      zerolog.Logger
	workers  int
	attempts int

	queue   chan struct{} // wakes the workers
	started chan struct{} // closed when the first batch has been listed or given up

	mu      sync.Mutex
	ready   []warmJob       // to list, in order
	retries warmRetries     // to list again, by time
	queued  map[string]bool // ready, retrying or being listed
	pending int             // corps of the first batch not finished
}

type warmJob struct {
	corp    string
	attempt int
	at      time.Time
	first   bool // of the first batch (Started)
}

// WarmOption changes a default of NewWarmer.
type WarmOption func(*Warmer) error

// WithWarmWorkers sets how many corps are listed at once. At least 1.
// Default DefaultWarmWorkers (2).
func WithWarmWorkers(n int) WarmOption {
	return func(w *Warmer) error {
		if n < 1 {
			return fmt.Errorf("%w: WithWarmWorkers: %d: must be at least 1", ErrInvalidOption, n)
		}
		w.workers = n
		return nil
	}
}

// WithWarmAttempts sets the tries per corp. At least 1. Default
// DefaultWarmAttempts (8).
func WithWarmAttempts(n int) WarmOption {
	return func(w *Warmer) error {
		if n < 1 {
			return fmt.Errorf("%w: WithWarmAttempts: %d: must be at least 1", ErrInvalidOption, n)
		}
		w.attempts = n
		return nil
	}
}

// WithWarmLogger sets the logger. Default zerolog.Nop().
func WithWarmLogger(l zerolog.Logger) WarmOption {
	return func(w *Warmer) error {
		w.log = l
		return nil
	}
}

// ErrInvalidOption: an option has a bad value.
var ErrInvalidOption = errors.New("rulecache: invalid option")

// NewWarmer returns a Warmer that fills cache through lister(corp), asked
// at each listing (corps come and go: nil means the corp is not served,
// and is skipped). first is the first batch, the corps served at start;
// Started closes once each has been listed or given up. It does no I/O.
func NewWarmer(cache *Cache, lister func(corpID string) Lister, first []string, opts ...WarmOption) (*Warmer, error) {
	if cache == nil || lister == nil {
		return nil, fmt.Errorf("%w: a cache and a lister are required", ErrInvalidOption)
	}
	w := &Warmer{
		cache: cache, lister: lister, log: zerolog.Nop(),
		workers: DefaultWarmWorkers, attempts: DefaultWarmAttempts,
		queue: make(chan struct{}, 1), started: make(chan struct{}),
		queued: map[string]bool{},
	}
	for _, o := range opts {
		if err := o(w); err != nil {
			return nil, err
		}
	}
	w.log = w.log.With().Str("component", "rulecache").Logger()
	for _, c := range first {
		if !w.queued[c] {
			w.queued[c] = true
			w.ready = append(w.ready, warmJob{corp: c, attempt: 1, first: true})
			w.pending++
		}
	}
	if w.pending == 0 {
		close(w.started)
	}
	return w, nil
}

// Started is closed when every corp of the first batch has been listed,
// or given up.
func (w *Warmer) Started() <-chan struct{} { return w.started }

// Add queues corps (newly authorized ones) to be listed, behind those
// queued already. A corp queued or being listed is not queued twice.
func (w *Warmer) Add(corps ...string) {
	w.mu.Lock()
	for _, c := range corps {
		if !w.queued[c] {
			w.queued[c] = true
			w.ready = append(w.ready, warmJob{corp: c, attempt: 1})
		}
	}
	w.mu.Unlock()
	w.wake()
}

func (w *Warmer) wake() {
	select {
	case w.queue <- struct{}{}:
	default:
	}
}

// Run lists the queued corps with the configured number of workers until
// ctx ends.
func (w *Warmer) Run(ctx context.Context) {
	done := make(chan struct{})
	for range w.workers {
		go func() {
			defer func() { done <- struct{}{} }()
			w.work(ctx)
		}()
	}
	for range w.workers {
		<-done
	}
}

// next takes the next job: a ready one, or a retry that is due; else it
// says how long until the next retry (0: none waiting).
func (w *Warmer) next(now time.Time) (warmJob, bool, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ready) > 0 {
		j := w.ready[0]
		w.ready = w.ready[1:]
		return j, true, 0
	}
	if w.retries.Len() > 0 {
		if j := w.retries[0]; !j.at.After(now) {
			heap.Pop(&w.retries)
			return j, true, 0
		}
		return warmJob{}, false, w.retries[0].at.Sub(now)
	}
	return warmJob{}, false, 0
}

func (w *Warmer) work(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		j, ok, wait := w.next(time.Now())
		if !ok {
			var tc <-chan time.Time
			if wait > 0 {
				timer.Reset(wait)
				tc = timer.C
			}
			select {
			case <-ctx.Done():
				return
			case <-w.queue:
			case <-tc:
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			continue
		}
		w.list(ctx, j)
		if ctx.Err() != nil {
			return
		}
	}
}

// listTimeout bounds one corp's listing.
const listTimeout = time.Minute

// list lists j's corp, and retries it later on failure.
func (w *Warmer) list(ctx context.Context, j warmJob) {
	log := w.log.With().Str("corp_id", j.corp).Logger()
	l := w.lister(j.corp)
	var err error
	n := 0
	if l != nil {
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		err = l.ListRuleNames(lctx, j.corp, func(ruleID, name string) {
			w.cache.Set(j.corp, ruleID, name)
			n++
		})
		cancel()
		if w.lister(j.corp) == nil {
			// Cancelled while being listed: its names are its data.
			w.cache.Forget(j.corp)
			l = nil
		}
	}
	switch {
	case l == nil:
	case err == nil:
		log.Debug().Int("rules", n).Msg("rule names loaded")
	case j.attempt < w.attempts && ctx.Err() == nil:
		retry := min(warmFirstRetry<<(j.attempt-1), warmMaxRetry)
		j.attempt++
		j.at = time.Now().Add(retry)
		w.mu.Lock()
		heap.Push(&w.retries, j)
		w.mu.Unlock()
		w.wake()
		return
	default:
		log.Warn().Err(err).Msg("listing rules failed; names will be looked up one by one")
	}
	w.mu.Lock()
	delete(w.queued, j.corp)
	if j.first {
		w.pending--
		if w.pending == 0 {
			close(w.started)
		}
	}
	w.mu.Unlock()
}

// warmRetries is a heap of jobs by time.
type warmRetries []warmJob

func (h warmRetries) Len() int           { return len(h) }
func (h warmRetries) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h warmRetries) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *warmRetries) Push(x any)        { *h = append(*h, x.(warmJob)) }
func (h *warmRetries) Pop() any {
	old := *h
	j := old[len(old)-1]
	*h = old[:len(old)-1]
	return j
}
