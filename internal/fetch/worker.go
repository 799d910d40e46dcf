package fetch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

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

// worker runs the fetches of one (app, corp), one at a time.
type worker struct {
	f         *Fetcher
	app, corp string
	key       string
	log       zerolog.Logger
	limiter   *limiter

	mu      sync.Mutex
	next    *ticket
	wake    chan struct{}
	stopped error // set when loop has returned: triggers fail at once
}

func newWorker(f *Fetcher, app, corp string) *worker {
	return &worker{
		f: f, app: app, corp: corp, key: key(app, corp),
		log:     f.log.With().Str("app", app).Str("corp_id", corp).Logger(),
		limiter: newLimiter(f.opts.TokenlessPerMinute, time.Minute, f.opts.Now),
		wake:    make(chan struct{}, 1),
	}
}

// trigger asks for a fetch. A callback outranks a poll: a poll does not wait
// for another replica's lease, a callback does.
func (w *worker) trigger(source string) *ticket {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped != nil {
		// Forgotten (or shut down) after the caller found it: nobody
		// will run a fetch, so the ticket is over before it starts.
		t := &ticket{source: source, done: make(chan struct{}), err: w.stopped}
		close(t.done)
		return t
	}
	if w.next == nil {
		w.next = &ticket{source: source, done: make(chan struct{})}
	} else if source == wecomhit.SourceCallback {
		w.next.source = source
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return w.next
}

// join asks for a fetch on behalf of a callback: first reports whether no
// other callback is waiting on the same not-yet-started fetch.
func (w *worker) join() (t *ticket, first bool) {
	t = w.trigger(wecomhit.SourceCallback)
	w.mu.Lock()
	defer w.mu.Unlock()
	t.waiters++
	return t, t.waiters == 1
}

func (w *worker) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			w.stopped = fmt.Errorf("fetch: %s/%s stopped: %w", w.app, w.corp, ctx.Err())
			if t := w.next; t != nil {
				w.next = nil
				t.err = ctx.Err()
				close(t.done)
			}
			w.mu.Unlock()
			return
		case <-w.wake:
		}
		w.mu.Lock()
		t := w.next
		w.next = nil
		w.mu.Unlock()
		if t == nil {
			continue
		}
		if !w.f.begin() {
			t.err = errDraining
		} else {
			t.err = w.fetch(ctx, t.source)
			w.f.end()
		}
		w.f.health.record(ctx, w.app, w.corp, t.err)
		if t.err != nil && !errors.Is(t.err, errLeaseBusy) {
			w.log.Warn().Err(t.err).Str("source", t.source).Msg("fetch failed")
			w.f.opts.Metrics.failed(w.app, w.corp)
		}
		if errors.Is(t.err, errLeaseBusy) {
			t.err = nil // a poll found another replica at work: nothing to do
		}
		close(t.done)
	}
}

// errDraining: the fetcher is shutting down; the callback is retried later.
var errDraining = errors.New("fetch: shutting down")

// errLeaseBusy: a poll found the lease taken and did not wait.
var errLeaseBusy = errors.New("fetch: lease held by another replica")

// fetch runs one fetch: lease, then pages until WeCom has no more.
func (w *worker) fetch(ctx context.Context, source string) error {
	lease, err := w.f.acquire(ctx, w.key, source != wecomhit.SourcePoll)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		lease.keep(ctx, cancel)
	}()
	defer func() {
		// Stop renewing before releasing: release needs the last revision.
		cancel(nil)
		<-kept
		lease.release()
	}()

	cur, rev, err := w.f.loadCursor(ctx, w.app, w.corp)
	if err != nil {
		return err
	}
	app := w.f.apps[w.app]
	for pageNo := 0; ; pageNo++ {
		if pageNo > 0 && w.f.draining.Load() {
			return errDraining
		}
		tok := w.f.currentToken(ctx, w.key)
		// source says what started the fetch; whether this page could use
		// a token is separate: a poll may find a live one, and a callback's
		// fetch may outlive its token.
		withToken := tok.Token != "" || tok.NotifyID != ""
		if !withToken {
			if err := w.limiter.wait(ctx); err != nil {
				return fmt.Errorf("fetch: token-less budget: %w", err)
			}
		}
		req := wecom.HitMsgListRequest{
			Token: tok.Token, NotifyID: tok.NotifyID, Cursor: cur.Cursor,
			Limit: w.f.opts.PageSize, NeedDetail: true,
		}
		started := w.f.opts.Now()
		page, err := app.API.GetHitMsgList(ctx, w.corp, req)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
				return fmt.Errorf("fetch: page: %w", cause)
			}
			if withToken && wecom.IsRateLimited(err) {
				// WeCom counted this call as token-less: the token is dead
				// (retired early). Forget it so the next try stays within
				// our token-less budget instead of spending WeCom's.
				w.f.dropToken(ctx, w.key, tok)
			}
			return fmt.Errorf("fetch: page: %w", err)
		}
		msgs := page.MsgList
		res, err := w.f.pub.Publish(ctx, &wecomhit.HitPage{
			App: w.app, CorpID: w.corp, Source: source, UsedHitToken: withToken,
			FetchedAt: started, Messages: msgs,
		})
		if err != nil {
			return fmt.Errorf("fetch: publish page: %w", err)
		}
		w.f.opts.Metrics.page(w.app, w.corp, source, w.f.opts.Now().Sub(started))
		// Every event is acked: now, and only now, the cursor may move.
		if page.NextCursor != "" && page.NextCursor != cur.Cursor {
			cur.Cursor = page.NextCursor
			cur.UpdatedAt = w.f.opts.Now().UTC()
			cur.Pages++
			cur.Events += int64(res.Published)
			for _, m := range msgs {
				if m.Detail != nil && m.Detail.SendTime > cur.LastHitTime {
					cur.LastHitTime = m.Detail.SendTime
				}
			}
			if rev, err = w.f.storeCursor(ctx, cur, rev); err != nil {
				return err
			}
		}
		w.f.opts.Metrics.lag(w.app, w.corp, cur.LastHitTime, w.f.opts.Now())
		w.log.Debug().Int("messages", len(msgs)).Int("published", res.Published).
			Int("duplicates", res.Duplicates).Bool("has_more", bool(page.HasMore)).
			Str("source", source).Bool("used_hit_token", withToken).Msg("page fetched")
		if !page.HasMore {
			return nil
		}
		if page.NextCursor == "" || page.NextCursor == req.Cursor {
			// Asking again would get the same page: stop rather than spin.
			return errors.New("fetch: WeCom says has_more without a new cursor")
		}
	}
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

func (l *limiter) wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := l.now()
		for len(l.times) > 0 && now.Sub(l.times[0]) >= l.period {
			l.times = l.times[1:]
		}
		if len(l.times) < l.n {
			l.times = append(l.times, now)
			l.mu.Unlock()
			return nil
		}
		delay := l.period - now.Sub(l.times[0])
		l.mu.Unlock()
		t := time.NewTimer(delay)
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
