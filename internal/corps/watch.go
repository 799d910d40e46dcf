package corps

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Change is one registry change as Watch delivers it.
type Change struct {
	// Corp is the entry as it is now. When Deleted, only App and CorpID
	// are set.
	Corp Corp
	// Deleted: the entry was removed (Delete).
	Deleted bool
	// Initial: the entry was delivered as part of the state at the start
	// of the watch, not as a change.
	Initial bool
}

// Watch is a running watch of the registry; Stop ends it.
type Watch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error
}

// Watch calls fn with every entry of app ("" for every app) as it is now,
// with Initial set, then returns; from then on it calls fn with every
// change, in order, from a goroutine of its own, until ctx ends or Stop.
// fn is never called concurrently and should return quickly: a slow fn
// holds up the changes after it. Every replica running a Watch sees every
// change, which is how a corp authorized or cancelled on one replica is
// served, or dropped, by all.
//
// It returns an error, and calls fn no more, if the current state cannot
// be read (ctx ended first, or NATS failed). Entries that do not decode are
// skipped and logged.
func (r *Registry) Watch(ctx context.Context, app string, fn func(Change)) (*Watch, error) {
	if fn == nil {
		return nil, fmt.Errorf("%w: nil watch function", ErrInvalid)
	}
	wctx, cancel := context.WithCancel(ctx)
	kw, err := r.kv.Watch(wctx, filter(app))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("corps: watch: %w", err)
	}
	w := &Watch{cancel: cancel, done: make(chan struct{})}
	synced := make(chan struct{})
	go func() {
		defer close(w.done)
		defer func() { _ = kw.Stop() }()
		initial := true
		for {
			select {
			case <-wctx.Done():
				w.setErr(wctx.Err())
				return
			case e, ok := <-kw.Updates():
				if !ok {
					w.setErr(errors.New("corps: watch ended"))
					return
				}
				if e == nil {
					if initial {
						initial = false
						close(synced)
					}
					continue
				}
				ch, ok := r.change(e)
				if !ok {
					continue
				}
				ch.Initial = initial
				fn(ch)
			}
		}
	}()
	select {
	case <-synced:
		return w, nil
	case <-w.done:
		cancel()
		return nil, fmt.Errorf("corps: watch: reading current state: %w", w.Err())
	}
}

// change turns a KV entry into a Change.
func (r *Registry) change(e jetstream.KeyValueEntry) (Change, bool) {
	if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
		app, corp, ok := splitKey(e.Key())
		if !ok {
			r.log.Warn().Str("key", e.Key()).Msg("skipping deletion of an unreadable key")
			return Change{}, false
		}
		return Change{Corp: Corp{App: app, CorpID: corp, Revision: e.Revision()}, Deleted: true}, true
	}
	c, err := decode(e)
	if err != nil {
		r.log.Warn().Str("key", e.Key()).Err(err).Msg("skipping unreadable entry")
		return Change{}, false
	}
	return Change{Corp: c}, true
}

func (w *Watch) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// Err is why the watch ended: context.Canceled after Stop; nil while it
// runs.
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Done is closed when the watch has ended and fn will not be called again.
func (w *Watch) Done() <-chan struct{} { return w.done }

// Stop ends the watch and waits until fn is no longer running.
func (w *Watch) Stop() {
	w.cancel()
	<-w.done
}
