package fetch

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wecomhit/wecomhit"
)

// The scheduler: one dispatcher goroutine hands corps with work to a fixed
// pool of workers, each of which does one step (a page) and gives the corp
// back. Three queues order the work:
//
//   - urgent: corps with a callback's fetch, first come first served; a
//     corp with more pages goes to the back after each page, so that a
//     hot corp takes its turn like the others instead of starving them;
//   - poll: token-less polls and their further pages, taken only when the
//     global token-less budget has a unit to spare, and only when no
//     callback is waiting;
//   - delayed: corps that must wait (a lease another replica holds, a
//     spent budget), in a heap by time; one timer, the dispatcher's,
//     serves them all.
//
// A corp appears in the Fetcher's map only while it has work (or has made
// token-less calls in the last minute, which its own limit must remember),
// and in no queue when idle: 10,000 quiet corps cost no goroutine, timer or
// queue entry. The poller walks the directory once per poll interval and
// asks for one poll at a time, spread evenly with jitter.

// entry is a corp in a queue; it is stale once the corp's gen moved on
// (it was queued elsewhere, taken by a worker, or forgotten).
type entry struct {
	c   *corp
	gen uint64
	at  time.Time // delayed only
}

// fifo is a queue of entries.
type fifo struct{ items []entry }

func (q *fifo) push(e entry) { q.items = append(q.items, e) }

// head drops stale entries and returns the first live one.
func (q *fifo) head() *corp {
	for len(q.items) > 0 {
		e := q.items[0]
		if e.c.gen == e.gen && e.c.stopped == nil {
			return e.c
		}
		q.pop()
	}
	return nil
}

func (q *fifo) pop() {
	q.items[0] = entry{}
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil // let the array go
	}
}

// later is the delayed queue: a heap by time.
type later []entry

func (h later) Len() int           { return len(h) }
func (h later) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h later) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *later) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *later) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = entry{}
	*h = old[:len(old)-1]
	return e
}

// handoff is a corp given to a worker; reserved says the dispatcher took a
// unit of the global budget for it.
type handoff struct {
	c        *corp
	reserved bool
}

// enqueueLocked puts c in the queue its work needs, unless it is there, or
// in a better one, already; a busy corp is queued by its worker when the
// step ends (release). The caller holds f.mu.
func (f *Fetcher) enqueueLocked(c *corp) {
	if c.stopped != nil || c.busy || (c.next == nil && c.run == nil) {
		return
	}
	q := queuePoll
	if c.urgent() {
		q = queueUrgent
	}
	switch {
	case c.where == queueUrgent, c.where == q, c.where == queueDelayed && q == queuePoll:
		return
	}
	c.gen++
	c.where = q
	e := entry{c: c, gen: c.gen}
	if q == queueUrgent {
		f.urgent.push(e)
	} else {
		f.polls.push(e)
	}
	f.kickLocked()
}

// delayLocked puts c in the delayed queue until c.notAfter.
func (f *Fetcher) delayLocked(c *corp) {
	c.gen++
	c.where = queueDelayed
	heap.Push(&f.delayed, entry{c: c, gen: c.gen, at: c.notAfter})
	f.kickLocked()
}

func (f *Fetcher) kickLocked() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// promoteLocked queues the delayed corps that are due (all of them while
// draining, when they only need to be ended) and returns when the next
// one is.
func (f *Fetcher) promoteLocked(now time.Time) time.Time {
	for f.delayed.Len() > 0 {
		e := f.delayed[0]
		if e.c.gen != e.gen || e.c.stopped != nil {
			heap.Pop(&f.delayed)
			continue
		}
		if e.at.After(now) && !f.draining.Load() {
			return e.at
		}
		heap.Pop(&f.delayed)
		e.c.where = queueNone
		f.enqueueLocked(e.c)
	}
	return time.Time{}
}

// dispatch hands queued corps to workers, callbacks first, until ctx ends.
func (f *Fetcher) dispatch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	reserved := false // a budget unit held for the poll at the head
	defer func() {
		if reserved {
			f.budget.refund()
		}
	}()
	sweep := time.Now().Add(sweepEvery)
	for {
		now := time.Now()
		f.mu.Lock()
		wake := f.promoteLocked(now)
		c, fromPoll := f.urgent.head(), false
		if c == nil {
			c = f.polls.head()
			fromPoll = c != nil
		}
		f.opts.metrics.queues(len(f.urgent.items), len(f.polls.items), f.delayed.Len())
		if !now.Before(sweep) {
			f.sweepLocked(now)
			sweep = now.Add(sweepEvery)
		}
		f.mu.Unlock()
		if c != nil && fromPoll && !reserved && !f.draining.Load() {
			if w := f.budget.take(); w > 0 {
				c = nil
				if at := now.Add(w); wake.IsZero() || at.Before(wake) {
					wake = at
				}
			} else {
				reserved = true
			}
		}
		var out chan handoff
		if c != nil {
			out = f.handoffs
		}
		if wake.IsZero() || sweep.Before(wake) {
			wake = sweep
		}
		timer.Reset(max(time.Until(wake), time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case out <- handoff{c: c, reserved: fromPoll && reserved}:
			// Only this goroutine pops: the head is still c's entry.
			f.mu.Lock()
			if fromPoll {
				f.polls.pop()
			} else {
				f.urgent.pop()
			}
			f.mu.Unlock()
			if fromPoll {
				reserved = false
			}
		case <-f.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// sweepEvery is how often the dispatcher drops idle corps from the map.
const sweepEvery = 30 * time.Second

func (f *Fetcher) sweepLocked(now time.Time) {
	for k, c := range f.corps {
		if c.idleNow(now) {
			delete(f.corps, k)
		}
	}
}

// work runs the steps the dispatcher hands over, until ctx ends.
func (f *Fetcher) work(ctx context.Context) {
	for {
		var h handoff
		select {
		case <-ctx.Done():
			return
		case h = <-f.handoffs:
		}
		c := h.c
		f.mu.Lock()
		if c.stopped != nil || c.busy {
			f.mu.Unlock()
			if h.reserved {
				f.budget.refund()
			}
			continue
		}
		c.busy, c.where, c.reserved = true, queueNone, h.reserved
		c.gen++
		sctx, stop := context.WithCancel(ctx)
		c.stop, c.idle = stop, make(chan struct{})
		f.mu.Unlock()
		out := f.step(sctx, c)
		f.release(c, out)
		stop()
	}
}

// release gives c back after a step: to a queue if it has more to do, or
// to nobody. A corp forgotten during the step has its fetch ended here.
func (f *Fetcher) release(c *corp, out outcome) {
	f.giveBack(c)
	f.unserved(c)
	f.mu.Lock()
	c.busy, c.stop = false, nil
	idle := c.idle
	c.idle = nil
	stopped := c.stopped != nil
	if !stopped {
		switch {
		case out == stepLater:
			f.delayLocked(c)
		default:
			f.enqueueLocked(c)
		}
	}
	f.mu.Unlock()
	if stopped {
		f.abandon(c)
		f.mu.Lock()
		if f.corps[c.key] == c {
			// Stopped by unserved: a corp authorized again starts
			// afresh. (Forget and shutdown took it out themselves.)
			delete(f.corps, c.key)
		}
		f.mu.Unlock()
	}
	close(idle)
}

// unserved reports whether c's app no longer serves it, and then marks it
// stopped, which the worker's release turns into the end of its fetch and
// tickets, recording nothing. The Corps is asked before every page, not
// only before every callback and poll: a corp cancelled mid-fetch leaves
// the Directory at once on every replica, while its Forget may come much
// later, and a cancelled corp must not be fetched (nor its hits published)
// one page more. Only the worker holding c (busy) calls it.
func (f *Fetcher) unserved(c *corp) bool {
	if f.serves(c.app, c.name) {
		return false
	}
	f.mu.Lock()
	if c.stopped == nil {
		c.stopped = fmt.Errorf("fetch: %s/%s: no longer served: %w", c.app, c.name, context.Canceled)
	}
	f.mu.Unlock()
	return true
}

// abandon ends a stopped corp's fetch under way and its waiting ticket,
// with c.stopped, recording nothing (a forgotten corp's health must not
// come back; a stopping fetcher has nothing to say about WeCom); nobody
// else holds c.
func (f *Fetcher) abandon(c *corp) {
	if r := c.run; r != nil {
		c.run = nil
		r.end()
		f.end()
		r.t.err = c.stopped
		close(r.t.done)
	}
	f.mu.Lock()
	t := c.next
	c.next = nil
	f.mu.Unlock()
	if t != nil {
		t.err = c.stopped
		close(t.done)
	}
}

// poll walks the corps once per interval, asking for one poll at a time,
// evenly spread with jitter, from a random place in the list (replicas do
// not poll a corp at the same moment). Corps authorized during a round are
// polled from the next one.
func (f *Fetcher) poll(ctx context.Context) {
	every := f.opts.pollInterval
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	wait := func(at time.Time) bool {
		timer.Reset(max(time.Until(at), 0))
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		}
	}
	for {
		round := time.Now()
		all := f.allCorps()
		if n := len(all); n > 0 {
			gap := every / time.Duration(n)
			off := rand.IntN(n)
			for i := range n {
				at := round.Add(time.Duration(i) * gap)
				if gap > 0 {
					at = at.Add(rand.N(gap))
				}
				if !wait(at) {
					return
				}
				ac := all[(off+i)%n]
				f.trigger(ac[0], ac[1], wecomhit.SourcePoll)
			}
		}
		if !wait(round.Add(every)) {
			return
		}
	}
}

// allCorps lists every (app, corp) served now.
func (f *Fetcher) allCorps() [][2]string {
	var all [][2]string
	for _, name := range f.appNames() {
		for _, c := range f.opts.corps.Corps(name) {
			all = append(all, [2]string{name, c})
		}
	}
	return all
}

// budget is the global token-less budget: a token bucket refilled at
// perMinute/60 a second, holding at most a second's worth, so that calls
// go out evenly rather than in bursts. It runs on the real clock, like
// every wait of the scheduler.
type budget struct {
	mu     sync.Mutex
	rate   float64 // units per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBudget(perMinute int) *budget {
	rate := float64(perMinute) / 60
	burst := max(1, rate)
	return &budget{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

// take takes a unit, or returns how long until one is there.
func (b *budget) take() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return max(time.Duration((1-b.tokens)/b.rate*float64(time.Second)), time.Millisecond)
}

// refund gives back a unit taken but not used.
func (b *budget) refund() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.burst, b.tokens+1)
}
