package app

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corpauth"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// onCorpChange is the Mirror's hook: it runs on the watch's goroutine and
// must be quick, so it only queues the change (corpQueue), which never
// waits: a watch that waited would stop the Directory updating on this
// replica. The initial state needs nothing: Open serves it.
func (m *Main) onCorpChange(ch corps.Change) {
	if ch.Initial {
		return
	}
	m.corpChanges.put(ch)
}

// corpChangeLoop acts on registry changes seen by this replica, on two
// paths. A cancelled or removed corp stops being fetched here at once and
// its in-memory state goes (forgetLoop), whatever else is queued: a
// cancellation must stop fetching at once on every replica. Then, in
// order, a newly active corp gets its rules warmed and corpauth announces
// the latest change of each corp (and, for a cancellation, deletes the
// corp's data once more, now that this replica's fetches of it have
// stopped: idempotent), which may take long (announceLoop).
func (m *Main) corpChangeLoop(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		m.corpChanges.forgetLoop(ctx, func(c corpKey) {
			if err := m.forgetCorp(ctx, c.app, c.corp); err != nil {
				m.log.Warn().Err(err).Str("app", c.app).Str("corp_id", c.corp).Msg("stopping a cancelled corp failed")
			}
		})
	})
	wg.Go(func() {
		m.corpChanges.announceLoop(ctx, func(ch corps.Change) {
			c := ch.Corp
			if !ch.Deleted && c.State == corps.Active {
				m.warmer.Add(c.CorpID)
			}
			if m.auth == nil {
				return
			}
			actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if err := m.auth.Announce(actx, ch); err != nil {
				m.log.Warn().Err(err).Str("app", c.App).Str("corp_id", c.CorpID).Msg("announcing a corp change failed")
			}
		})
	})
	wg.Wait()
}

// corpKey names a corp of an app.
type corpKey struct{ app, corp string }

// corpQueue holds the registry changes this replica has yet to act on. It
// never blocks the Mirror's watch, and grows no larger than the registry:
// it keeps the latest change of each corp, in the order corps first
// changed (a first start seeding 10,000 corps queues 10,000 entries, not
// more, and a corp changing again before its turn is announced once, as
// it is now: erasing a cancelled corp's data after it was authorized
// again would be wrong anyway). Cancelled and removed corps go to a
// second set as well, which forgetLoop empties without waiting for any
// announcement; a corp cancelled and authorized again before its turn is
// still forgotten (its old fetches stopped), as it was when changes ran
// one at a time.
type corpQueue struct {
	mu       sync.Mutex
	latest   map[corpKey]corps.Change
	order    []corpKey
	forget   []corpKey
	forgets  map[corpKey]bool
	announce chan struct{} // a token when order is not empty
	stop     chan struct{} // a token when forget is not empty
}

func newCorpQueue() *corpQueue {
	return &corpQueue{
		latest: map[corpKey]corps.Change{}, forgets: map[corpKey]bool{},
		announce: make(chan struct{}, 1), stop: make(chan struct{}, 1),
	}
}

// put queues ch; it never waits.
func (q *corpQueue) put(ch corps.Change) {
	k := corpKey{ch.Corp.App, ch.Corp.CorpID}
	q.mu.Lock()
	if _, ok := q.latest[k]; !ok {
		q.order = append(q.order, k)
	}
	q.latest[k] = ch
	if (ch.Deleted || ch.Corp.State == corps.Cancelled) && !q.forgets[k] {
		q.forgets[k] = true
		q.forget = append(q.forget, k)
		signal(q.stop)
	}
	q.mu.Unlock()
	signal(q.announce)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// forgetLoop calls fn for each cancelled or removed corp, until ctx ends.
func (q *corpQueue) forgetLoop(ctx context.Context, fn func(corpKey)) {
	for {
		q.mu.Lock()
		var k corpKey
		ok := len(q.forget) > 0
		if ok {
			k = q.forget[0]
			q.forget[0] = corpKey{}
			q.forget = q.forget[1:]
			delete(q.forgets, k)
		}
		q.mu.Unlock()
		if ok {
			fn(k)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-q.stop:
		}
	}
}

// announceLoop calls fn with each corp's latest change, in order, until
// ctx ends.
func (q *corpQueue) announceLoop(ctx context.Context, fn func(corps.Change)) {
	for {
		q.mu.Lock()
		var ch corps.Change
		ok := len(q.order) > 0
		if ok {
			k := q.order[0]
			q.order[0] = corpKey{}
			q.order = q.order[1:]
			ch = q.latest[k]
			delete(q.latest, k)
		}
		q.mu.Unlock()
		if ok {
			fn(ch)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-q.announce:
		}
	}
}

// forgetCorp stops this replica's work for (app, corp) and drops what it
// keeps about the corp in memory and in the fetcher's buckets.
func (m *Main) forgetCorp(ctx context.Context, app, corp string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var errs []error
	errs = append(errs, m.fetcher.Forget(ctx, app, corp))
	if c := m.clients[app]; c != nil {
		errs = append(errs, c.ForgetCorp(ctx, corp))
	}
	m.rules.Forget(corp)
	return errors.Join(errs...)
}

// newCorpAuth wires the handler of authorization callbacks: each archive
// app's client makes the exchange, and a cancellation deletes the corp's
// data from every store (docs/corps.md, "What cancel_auth deletes").
func (m *Main) newCorpAuth() (*corpauth.Handler, error) {
	suites := map[string]corpauth.Suite{}
	for _, a := range m.cfg.Apps {
		if a.Mode == config.ModeArchive {
			suites[a.Name] = m.clients[a.Name]
		}
	}
	erasers := []corpauth.Eraser{
		{Data: []string{wecomhit.CorpDataAccessTokens}, Erase: func(ctx context.Context, app, corp string) error {
			if c := m.clients[app]; c != nil {
				return c.ForgetCorp(ctx, corp)
			}
			return nil
		}},
		{Data: []string{wecomhit.CorpDataCursor, wecomhit.CorpDataLeases, wecomhit.CorpDataHitTokens}, Erase: m.fetcher.Forget},
		{Data: []string{wecomhit.CorpDataRuleNames}, Erase: func(_ context.Context, _, corp string) error {
			m.rules.Forget(corp)
			return nil
		}},
		{Data: []string{wecomhit.CorpDataHitEvents}, Erase: func(ctx context.Context, _, corp string) error {
			return m.publisher.PurgeCorp(ctx, corp)
		}},
		{Data: []string{wecomhit.CorpDataDeadLetters}, Erase: m.dlq.DeleteCorp},
		// After the event: the cancelled event stays as the corp's only
		// trace in WECOM_CORP_EVENTS, and it must be there first.
		{Data: []string{wecomhit.CorpDataAuthorizedEvents}, AfterEvent: true, Erase: func(ctx context.Context, _, corp string) error {
			return m.publisher.PurgeCorpAuthorized(ctx, corp)
		}},
		{Data: []string{wecomhit.CorpDataCallbackRecords}, AfterEvent: true, Erase: func(ctx context.Context, app, corp string) error {
			_, err := m.intake.DeleteCorp(ctx, app, corp)
			return err
		}},
	}
	return corpauth.New(m.corpView.Reg, suites, m.publisher, erasers, corpauth.WithLogger(m.log))
}

// dispatchAuth routes an authorization callback to corpauth, turning what
// retrying cannot fix into a dead letter.
func (m *Main) dispatchAuth(ctx context.Context, cb *wecomhit.Callback) error {
	if m.auth == nil {
		return intake.Reject(wecomhit.ReasonPermanent, errors.New("the corp registry is off (no corps.encryption_keys): authorization callbacks cannot be applied"))
	}
	err := m.auth.Handle(ctx, cb)
	switch {
	case errors.Is(err, corpauth.ErrBadRecord):
		return intake.Reject(wecomhit.ReasonBadRecord, err)
	case errors.Is(err, corpauth.ErrNoApp):
		return intake.Reject(wecomhit.ReasonUnknownApp, err)
	case errors.Is(err, corps.ErrCorpMismatch), errors.Is(err, corps.ErrInvalid):
		return intake.Reject(wecomhit.ReasonPermanent, err)
	}
	return err
}
