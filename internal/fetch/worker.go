package fetch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// ticket is one requested fetch. Every trigger until the fetch starts shares
// it, which is how callbacks coalesce; its done closes when the fetch ends.
type ticket struct {
	source  string
	done    chan struct{}
	err     error
	waiters int // callbacks holding their record until this fetch ends
}

func (t *ticket) wait(ctx context.Context) error {
	select {
	case <-t.done:
		return t.err
	case <-ctx.Done():
		return fmt.Errorf("fetch: waiting: %w", ctx.Err())
	}
}

// queue says where a corp is in the scheduler (sched.go).
type queue uint8

const (
	queueNone    queue = iota // idle: nothing to do, or a worker is on it
	queueUrgent               // callbacks: taken before any poll
	queuePoll                 // polls: taken within the token-less budget
	queueDelayed              // waiting for a lease, or for a budget
)

// corp is what the scheduler keeps about one (app, corp) while it has work,
// or has made token-less calls within the last minute (its own limiter):
// an idle corp has none (sweep drops it), so 10,000 quiet corps cost no
// memory beyond the directory's list, and no goroutine or timer.
//
// Its fields are guarded by the Fetcher's mu, except run, which only the
// worker holding the corp (busy) touches.
type corp struct {
	app, name, key string
	limiter        *limiter // token-less calls of this corp, sliding minute

	next *ticket // requested, not started
	run  *run    // started: lease held, more pages to go

	where    queue
	gen      uint64    // bumped on every enqueue; stale queue entries differ
	notAfter time.Time // queueDelayed: when to queue it again
	busy     bool      // a worker is on it
	// stop cuts the page under way (Forget); idle closes when the worker
	// lets go of the corp. Both set while busy.
	stop context.CancelFunc
	idle chan struct{}
	// stopped is set once the corp is forgotten or the fetcher stopped:
	// triggers fail at once.
	stopped error
	// leaseWait is the next wait for a lease another replica holds.
	leaseWait time.Duration
	// reserved: the dispatcher took a unit of the global token-less
	// budget for the next page (a poll), which the page uses, or returns.
	reserved bool
}

func newCorp(f *Fetcher, app, name string) *corp {
	return &corp{
		app: app, name: name, key: key(app, name),
		limiter: newLimiter(f.opts.tokenlessPerMinute, time.Minute, f.opts.now),
	}
}

// trigger asks for a fetch; the caller holds f.mu and queues the corp. A
// callback outranks a poll: a poll does not wait for another replica's
// lease, a callback does.
func (c *corp) trigger(source string) *ticket {
	if c.stopped != nil {
		// Forgotten (or shut down) after the caller found it: nobody
		// will run a fetch, so the ticket is over before it starts.
		t := &ticket{source: source, done: make(chan struct{}), err: c.stopped}
		close(t.done)
		return t
	}
	if c.next == nil {
		c.next = &ticket{source: source, done: make(chan struct{})}
	} else if source == wecomhit.SourceCallback {
		c.next.source = source
	}
	return c.next
}

// join asks for a fetch on behalf of a callback: first reports whether no
// other callback is waiting on the same not-yet-started fetch. The caller
// holds f.mu.
func (c *corp) join() (t *ticket, first bool) {
	t = c.trigger(wecomhit.SourceCallback)
	t.waiters++
	return t, t.waiters == 1
}

// urgent reports whether the corp's work is a callback's: its fetch under
// way, or the one a callback asked for since (whose token the pages of the
// fetch under way use too, so they need no token-less budget either).
func (c *corp) urgent() bool {
	return c.run != nil && c.run.t.source == wecomhit.SourceCallback ||
		c.next != nil && c.next.source == wecomhit.SourceCallback
}

// idleNow reports whether the corp has nothing to do and may be dropped.
func (c *corp) idleNow(now time.Time) bool {
	return !c.busy && c.where == queueNone && c.next == nil && c.run == nil && c.limiter.empty(now)
}

// run is one fetch under way: its lease, renewed by keep, and its cursor.
type run struct {
	t      *ticket
	lease  *lease
	ctx    context.Context // cancelled when the lease is lost
	cancel context.CancelCauseFunc
	kept   chan struct{}
	cur    wecomhit.Cursor
	rev    uint64
}

// end stops renewing the lease and frees it.
func (r *run) end() {
	// Stop renewing before releasing: release needs the last revision.
	r.cancel(nil)
	<-r.kept
	r.lease.release()
}

// errDraining: the fetcher is shutting down; the callback is retried later.
var errDraining = errors.New("fetch: shutting down")

// errLeaseBusy: a poll found the lease taken and did not wait.
var errLeaseBusy = errors.New("fetch: lease held by another replica")

// outcome is what one step did, for the scheduler.
type outcome int

const (
	stepDone  outcome = iota // the fetch has ended (ticket closed)
	stepMore                 // a page done, more to fetch: queue again
	stepLater                // nothing done: queue again at c.notAfter
)

// step does one unit of a corp's work, a page at a time, so that a hot
// corp goes to the back of the queue after each page (fairness): it starts
// a fetch if none is under way, then fetches and publishes one page. It
// never waits for a lease or a budget: it says when to come back instead
// (c.notAfter), so a worker is never held by a corp that cannot proceed.
func (f *Fetcher) step(ctx context.Context, c *corp) outcome {
	if f.unserved(c) {
		return stepDone // release ends its fetch
	}
	r := c.run
	if r == nil {
		f.mu.Lock()
		t := c.next
		var source string
		if t != nil {
			// Triggers change it under mu until it starts: start takes
			// a poll's ticket only if it is still one (takePoll).
			source = t.source
		}
		f.mu.Unlock()
		if t == nil {
			f.giveBack(c)
			return stepDone
		}
		if !f.begin() {
			f.takeNext(c, t)
			f.finish(ctx, c, t, errDraining)
			return stepDone
		}
		out, err := f.start(ctx, c, t, source)
		if c.run == nil {
			f.end()
		}
		if out == stepDone {
			f.takeNext(c, t) // if start ended before taking it
			f.finish(ctx, c, t, err)
		}
		return out
	}
	if f.draining.Load() {
		f.stopRun(ctx, c, errDraining)
		return stepDone
	}
	pctx, cancel := stepContext(ctx, r)
	more, err := f.page(pctx, c, r)
	cancel()
	switch {
	case err == nil && more:
		return stepMore
	case errors.Is(err, errNoBudget):
		return stepLater
	}
	f.stopRun(ctx, c, err)
	return stepDone
}

// runContext is Run's context, which every fetch lives within.
func (f *Fetcher) runContext() context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctx
}

// stepContext is the context of one page of r: it ends with the fetch
// (its lease lost: the cause says so) and with the step (Forget).
func stepContext(step context.Context, r *run) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.ctx)
	stop := context.AfterFunc(step, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// takeNext marks t, c's next ticket, as started: callbacks from now on
// ask for another fetch.
func (f *Fetcher) takeNext(c *corp, t *ticket) {
	f.mu.Lock()
	if c.next == t {
		c.next = nil
	}
	f.mu.Unlock()
}

// takePoll marks t, c's next ticket, as started if it is still a poll's,
// reading its source and taking it in one locked section: a callback that
// joined it since the caller read the source (a poll) would otherwise be
// told done by a fetch that started before it arrived, or by none (a poll
// that finds another replica's lease ends with nothing done). false: t is
// a callback's now, and still c's next ticket.
func (f *Fetcher) takePoll(c *corp, t *ticket) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.source != wecomhit.SourcePoll {
		return false
	}
	if c.next == t {
		c.next = nil
	}
	return true
}

// stopRun ends c's fetch under way with err.
func (f *Fetcher) stopRun(ctx context.Context, c *corp, err error) {
	r := c.run
	c.run = nil
	r.end()
	f.end()
	f.finish(ctx, c, r.t, err)
}

// finish records a fetch's outcome and tells its callbacks.
func (f *Fetcher) finish(ctx context.Context, c *corp, t *ticket, err error) {
	f.health.record(ctx, c.app, c.name, err)
	if err != nil && !errors.Is(err, errLeaseBusy) && !errors.Is(err, errDraining) && ctx.Err() == nil {
		f.log.Warn().Err(err).Str("app", c.app).Str("corp_id", c.name).Str("source", t.source).Msg("fetch failed")
		f.opts.metrics.failed(c.app, c.name)
	}
	if errors.Is(err, errLeaseBusy) {
		err = nil // a poll found another replica at work: nothing to do
	}
	t.err = err
	close(t.done)
}

// giveBack returns a global budget unit the dispatcher reserved for c that
// no page used.
func (f *Fetcher) giveBack(c *corp) {
	if c.reserved {
		c.reserved = false
		f.budget.refund()
	}
}

// errNoBudget: a token-less page must wait for the budget; c.notAfter
// says until when.
var errNoBudget = errors.New("fetch: token-less budget spent")

// start begins the fetch of t, c's next ticket, and does its first page.
// A poll fetches that page before taking the lease (reading WeCom changes
// nothing): a corp with nothing new, which is nearly every corp at nearly
// every poll, then costs no lease write, no cursor write and no renewals.
// Only a page with messages takes the lease, and is published only if the
// cursor it was read at is still the stored one: otherwise another replica
// has moved on, and has the page. stepLater leaves t as c's next ticket,
// so that callbacks keep joining it; stepDone returns the fetch's error.
// source is t's source as the caller read it: a poll's ticket that a
// callback joins before start takes it goes on as the callback's.
func (f *Fetcher) start(ctx context.Context, c *corp, t *ticket, source string) (outcome, error) {
	var peek *wecom.HitMsgList
	var peeked time.Time
	var rev uint64
	var peekTok bool
	if source == wecomhit.SourcePoll {
		// Another replica at work has the news: no call (a read, not a
		// write, of the lease).
		if f.leaseHeld(ctx, c.key) {
			if f.takePoll(c, t) {
				return stepDone, errLeaseBusy
			}
			// A callback joined t since step read its source: it needs
			// a fetch that starts after it, so t waits for the lease.
			source = wecomhit.SourceCallback
		}
	}
	var tok hitToken
	if source == wecomhit.SourcePoll {
		var err error
		if tok, err = f.allow(ctx, c); err != nil {
			return stepLater, nil
		}
		peekTok = tok.Token != "" || tok.NotifyID != ""
		if !f.takePoll(c, t) {
			// A callback joined t meanwhile: its fetch takes the lease
			// first, as every callback's does, and its pages ask for
			// the budget themselves.
			source = wecomhit.SourceCallback
			if !peekTok {
				c.limiter.unreserve()
				f.budget.refund()
			}
		}
	}
	if source == wecomhit.SourcePoll {
		cur, crev, err := f.loadCursor(ctx, c.app, c.name)
		if err != nil {
			return stepDone, err
		}
		rev, peeked = crev, f.opts.now()
		peek, err = f.list(ctx, c, tok, cur.Cursor)
		if err != nil {
			return stepDone, fmt.Errorf("fetch: page: %w", err)
		}
		if len(peek.MsgList) == 0 && !peek.HasMore {
			f.opts.metrics.page(c.app, c.name, source, f.opts.now().Sub(peeked))
			return stepDone, nil
		}
	}
	l, err := f.acquire(ctx, c.key)
	if errors.Is(err, errLeaseBusy) && source != wecomhit.SourcePoll {
		// A callback waits for the lease, but not in a worker: it comes
		// back a little later, at most half a second apart, so that it
		// takes a lapsed lease (a dead holder's) soon after it lapses.
		c.leaseWait = min(max(2*c.leaseWait, 50*time.Millisecond), acquireMaxDelay)
		f.setLater(c, c.leaseWait)
		return stepLater, nil
	}
	if err != nil {
		return stepDone, err
	}
	c.leaseWait = 0
	f.takeNext(c, t)
	r := &run{t: t, lease: l, kept: make(chan struct{})}
	// The fetch outlives this step: its context is Run's.
	r.ctx, r.cancel = context.WithCancelCause(f.runContext())
	go func() {
		defer close(r.kept)
		l.keep(r.ctx, r.cancel)
	}()
	pctx, cancel := stepContext(ctx, r)
	defer cancel()
	r.cur, r.rev, err = f.loadCursor(pctx, c.app, c.name)
	if err == nil && peek != nil && r.rev != rev {
		err = errLeaseBusy // moved since the peek: another replica had it
	}
	if err != nil {
		r.end()
		return stepDone, err
	}
	c.run = r
	var more bool
	if peek != nil {
		more, err = f.publishPage(pctx, c, r, peek, peeked, peekTok, r.cur.Cursor)
	} else {
		more, err = f.page(pctx, c, r)
	}
	switch {
	case err == nil && more:
		return stepMore, nil
	case errors.Is(err, errNoBudget):
		return stepLater, nil // the run goes on, its lease renewed
	}
	c.run = nil
	r.end()
	return stepDone, err
}

// allow returns the token to fetch c's next page with, or, when there is
// none, takes a unit of c's own token-less budget and of the global one;
// errNoBudget (c.notAfter set) when either is spent.
func (f *Fetcher) allow(ctx context.Context, c *corp) (hitToken, error) {
	tok := f.currentToken(ctx, c.key)
	if tok.Token != "" || tok.NotifyID != "" {
		f.giveBack(c)
		return tok, nil
	}
	now := f.opts.now()
	if wait := c.limiter.reserve(now); wait > 0 {
		f.setLater(c, wait)
		return tok, errNoBudget
	}
	if c.reserved {
		c.reserved = false
	} else if wait := f.budget.take(); wait > 0 {
		c.limiter.unreserve()
		f.setLater(c, wait)
		return tok, errNoBudget
	}
	f.opts.metrics.tokenless(c.app)
	return tok, nil
}

func (f *Fetcher) setLater(c *corp, wait time.Duration) {
	f.mu.Lock()
	c.notAfter = time.Now().Add(wait)
	f.mu.Unlock()
}

// list calls get_hit_msg_list for c from cursor, with tok if it has one.
func (f *Fetcher) list(ctx context.Context, c *corp, tok hitToken, cursor string) (*wecom.HitMsgList, error) {
	req := wecom.HitMsgListRequest{
		Token: tok.Token, NotifyID: tok.NotifyID, Cursor: cursor,
		Limit: f.opts.pageSize, NeedDetail: true,
	}
	page, err := f.apps[c.app].API.GetHitMsgList(ctx, c.name, req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return nil, cause
		}
		if (tok.Token != "" || tok.NotifyID != "") && wecom.IsRateLimited(err) {
			// WeCom counted this call as token-less: the token is dead
			// (retired early). Forget it so the next try stays within
			// our token-less budget instead of spending WeCom's.
			f.dropToken(ctx, c.key, tok)
		}
		return nil, err
	}
	return page, nil
}

// page fetches and publishes the next page of r; more reports whether
// WeCom has more.
func (f *Fetcher) page(ctx context.Context, c *corp, r *run) (more bool, err error) {
	tok, err := f.allow(ctx, c)
	if err != nil {
		return false, err
	}
	// r.t.source says what started the fetch; whether this page could use
	// a token is separate: a poll may find a live one, and a callback's
	// fetch may outlive its token.
	withToken := tok.Token != "" || tok.NotifyID != ""
	started := f.opts.now()
	from := r.cur.Cursor
	pg, err := f.list(ctx, c, tok, from)
	if err != nil {
		return false, fmt.Errorf("fetch: page: %w", err)
	}
	return f.publishPage(ctx, c, r, pg, started, withToken, from)
}

// publishPage publishes pg, read at cursor from, and moves the cursor once
// every event is acked.
func (f *Fetcher) publishPage(ctx context.Context, c *corp, r *run, pg *wecom.HitMsgList, started time.Time, withToken bool, from string) (bool, error) {
	if started.IsZero() {
		started = f.opts.now()
	}
	msgs := pg.MsgList
	res, err := f.pub.Publish(ctx, &wecomhit.HitPage{
		App: c.app, CorpID: c.name, Source: r.t.source, UsedHitToken: withToken,
		FetchedAt: started, Messages: msgs,
	})
	if err != nil {
		return false, fmt.Errorf("fetch: publish page: %w", err)
	}
	f.opts.metrics.page(c.app, c.name, r.t.source, f.opts.now().Sub(started))
	// Every event is acked: now, and only now, the cursor may move.
	cur := &r.cur
	if pg.NextCursor != "" && pg.NextCursor != cur.Cursor {
		cur.Cursor = pg.NextCursor
		cur.UpdatedAt = f.opts.now().UTC()
		cur.Pages++
		cur.Events += int64(res.Published)
		for _, m := range msgs {
			if m.Detail != nil && m.Detail.SendTime > cur.LastHitTime {
				cur.LastHitTime = m.Detail.SendTime
			}
		}
		if r.rev, err = f.storeCursor(ctx, *cur, r.rev); err != nil {
			return false, err
		}
	}
	f.opts.metrics.lag(c.app, c.name, cur.LastHitTime, f.opts.now())
	f.log.Debug().Str("app", c.app).Str("corp_id", c.name).Int("messages", len(msgs)).
		Int("published", res.Published).Int("duplicates", res.Duplicates).Bool("has_more", bool(pg.HasMore)).
		Str("source", r.t.source).Bool("used_hit_token", withToken).Msg("page fetched")
	if !pg.HasMore {
		return false, nil
	}
	if pg.NextCursor == "" || pg.NextCursor == from {
		// Asking again would get the same page: stop rather than spin.
		return false, errors.New("fetch: WeCom says has_more without a new cursor")
	}
	return true, nil
}

// limiter allows n events per period, sliding.
type limiter struct {
	mu     sync.Mutex
	n      int
	period time.Duration
	now    func() time.Time
	times  []time.Time
}

func newLimiter(n int, period time.Duration, now func() time.Time) *limiter {
	return &limiter{n: n, period: period, now: now}
}

// reserve takes a slot at now, or returns how long until one is free.
func (l *limiter) reserve(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
	if len(l.times) < l.n {
		l.times = append(l.times, now)
		return 0
	}
	return max(l.period-now.Sub(l.times[0]), time.Millisecond)
}

// unreserve gives back the slot reserve took last.
func (l *limiter) unreserve() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.times) > 0 {
		l.times = l.times[:len(l.times)-1]
	}
}

// empty reports whether no slot is taken at now.
func (l *limiter) empty(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now)
	return len(l.times) == 0
}

func (l *limiter) pruneLocked(now time.Time) {
	i := 0
	for i < len(l.times) && now.Sub(l.times[i]) >= l.period {
		i++
	}
	l.times = l.times[i:]
	if len(l.times) == 0 {
		l.times = nil // let an idle corp's array go
	}
}

// wait takes a slot, waiting until one is free or ctx ends (Backfill).
func (l *limiter) wait(ctx context.Context) error {
	for {
		d := l.reserve(l.now())
		if d == 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// kvNotFound reports a missing key.
func kvNotFound(err error) bool { return errors.Is(err, jetstream.ErrKeyNotFound) }
