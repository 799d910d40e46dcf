package app

import (
	"context"
	"errors"
	"time"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corpauth"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// corpChanges is how many registry changes may wait for the change loop
// before the registry watch waits for it.
const corpChanges = 1024

// onCorpChange is the Mirror's hook: it runs on the watch's goroutine and
// must be quick, so it only queues changes for corpChangeLoop. The initial
// state needs nothing: Open serves it.
func (m *Main) onCorpChange(ch corps.Change) {
	if ch.Initial {
		return
	}
	select {
	case m.corpChanges <- ch:
	case <-m.corpQuit:
		// Shutting down: nobody takes changes any more, and a watch
		// blocked here would never stop.
	}
}

// corpChangeLoop acts on registry changes seen by this replica, in order:
// a cancelled or removed corp stops being fetched here at once and its
// in-memory state goes; a newly active one gets its rules warmed; then
// corpauth announces the change (and, for a cancellation, deletes the
// corp's data once more, now that this replica's fetches of it have
// stopped: idempotent).
func (m *Main) corpChangeLoop(ctx context.Context) {
	for {
		var ch corps.Change
		select {
		case <-ctx.Done():
			return
		case ch = <-m.corpChanges:
		}
		c := ch.Corp
		log := m.log.With().Str("app", c.App).Str("corp_id", c.CorpID).Logger()
		if ch.Deleted || c.State == corps.Cancelled {
			if err := m.forgetCorp(ctx, c.App, c.CorpID); err != nil {
				log.Warn().Err(err).Msg("stopping a cancelled corp failed")
			}
		} else if c.State == corps.Active {
			m.warmer.Add(c.CorpID)
		}
		if m.auth != nil {
			actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if err := m.auth.Announce(actx, ch); err != nil {
				log.Warn().Err(err).Msg("announcing a corp change failed")
			}
			cancel()
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
