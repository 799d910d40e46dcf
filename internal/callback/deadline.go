package callback

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineSlot is how far apart the starts of two requests that share a
// store context may be. A request's deadline is at most this much later
// than a context of its own would give it.
const deadlineSlot = time.Millisecond

// deadlineShare hands out the contexts callbacks are stored under when
// the transport gives Receive context.Background (the fasthttp edge does).
// The requests that start within one slot share one context, which ends
// the ack timeout after the slot's end. A context of each request's own
// (context.WithTimeout) costs a timer, a channel and about 450 bytes of
// garbage per callback, a tenth of everything the process allocates per
// callback at full load (BENCHMARKS.md, "Callbacks share their store
// deadline"); shared, that is one of each per slot.
//
// A shared context is never cancelled early: it ends at its deadline,
// when its timer fires. What a request derives from it (a publish
// attempt's timeout) it cancels itself, as it would with a context of its
// own.
type deadlineShare struct {
	timeout time.Duration
	cur     atomic.Pointer[sharedDeadline]
	mu      sync.Mutex // serialises making the next one
}

// sharedDeadline is one slot's context.
type sharedDeadline struct {
	ctx      context.Context
	cancel   context.CancelFunc // kept, not called: the deadline ends ctx
	deadline time.Time
}

// context returns a context that ends between the timeout and the
// timeout plus one slot after now.
func (d *deadlineShare) context(now time.Time) context.Context {
	if s := d.cur.Load(); s != nil && d.fits(s, now) {
		return s.ctx
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.cur.Load(); s != nil && d.fits(s, now) {
		return s.ctx // made by another request meanwhile
	}
	s := &sharedDeadline{deadline: now.Add(d.timeout + deadlineSlot)}
	s.ctx, s.cancel = context.WithDeadline(context.Background(), s.deadline)
	// A request whose clock was read before the current context's was
	// made gets one of its own, which does not replace the later one:
	// requests racing at a slot's edge would otherwise take turns
	// replacing each other's.
	if cur := d.cur.Load(); cur == nil || s.deadline.After(cur.deadline) {
		d.cur.Store(s)
	}
	return s.ctx
}

// fits reports whether s's deadline is within a slot past now plus the
// timeout, and not before it.
func (d *deadlineShare) fits(s *sharedDeadline, now time.Time) bool {
	least := now.Add(d.timeout)
	return !s.deadline.Before(least) && !s.deadline.After(least.Add(deadlineSlot))
}
