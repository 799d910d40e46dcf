package corps

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/wecomhit/wecomhit/internal/secret"
)

// Mirror is an in-memory copy of the registry, kept current by a Watch: the
// lookups a replica makes per call (which corps an app serves, a corp's
// permanent code) read memory, not NATS. Permanent codes stay sealed in
// memory and are opened on each PermanentCode call. It is safe for
// concurrent use.
type Mirror struct {
	r *Registry
	w *Watch

	mu    sync.RWMutex
	corps map[string]map[string]Corp // app → corp id → entry
}

// Mirror loads the entries of app ("" for every app) and follows their
// changes until ctx ends or Stop. onChange, if not nil, is called after the
// mirror applied each change (Initial ones included), from the watch's
// goroutine, one at a time: the place to start or stop serving a corp.
func (r *Registry) Mirror(ctx context.Context, app string, onChange func(Change)) (*Mirror, error) {
	m := &Mirror{r: r, corps: make(map[string]map[string]Corp)}
	w, err := r.Watch(ctx, app, func(ch Change) {
		m.apply(ch)
		if onChange != nil {
			onChange(ch)
		}
	})
	if err != nil {
		return nil, err
	}
	m.w = w
	return m, nil
}

func (m *Mirror) apply(ch Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	app, id := ch.Corp.App, ch.Corp.CorpID
	if ch.Deleted {
		delete(m.corps[app], id)
		return
	}
	if m.corps[app] == nil {
		m.corps[app] = make(map[string]Corp)
	}
	m.corps[app][id] = ch.Corp
}

// Active returns the ids of app's active corps, sorted.
func (m *Mirror) Active(app string) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.corps[app]))
	for id, c := range m.corps[app] {
		if c.State == Active {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Get returns the entry of (app, corp) as last seen, cancelled ones
// included.
func (m *Mirror) Get(app, corp string) (Corp, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.corps[app][corp]
	return c, ok
}

// PermanentCode opens the permanent code of an active (app, corp). It
// fails with ErrNotFound for a corp the mirror does not know or that is
// cancelled, and as Registry.PermanentCode otherwise. The context is
// unused (the code is in memory); it is there for callers that look codes
// up over the network.
func (m *Mirror) PermanentCode(_ context.Context, app, corp string) (secret.Secret, error) {
	c, ok := m.Get(app, corp)
	if !ok || c.State != Active {
		return "", fmt.Errorf("%w: no active corp %q in app %q", ErrNotFound, corp, app)
	}
	return m.r.PermanentCode(c)
}

// Stop ends the watch; the mirror keeps its last state.
func (m *Mirror) Stop() { m.w.Stop() }

// Done is closed when the watch behind the mirror has ended.
func (m *Mirror) Done() <-chan struct{} { return m.w.Done() }

// Err is why the watch ended; nil while it runs.
func (m *Mirror) Err() error { return m.w.Err() }
