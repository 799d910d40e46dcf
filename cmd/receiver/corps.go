package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corpauth"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// fixedCorps are the corps the configuration fixes: a zone app's one corp,
// and an archive app's listed corps when the registry is off. With the
// registry on, an archive app's corps are the registry's (its listed corps
// are seeds).
func fixedCorps(cfg *config.Config) map[string][]string {
	out := make(map[string][]string, len(cfg.Apps))
	for _, a := range cfg.Apps {
		switch {
		case a.Mode == config.ModeZone:
			out[a.Name] = []string{a.CorpID}
		case !cfg.Corps.Enabled():
			ids := make([]string, len(a.Corps))
			for i, c := range a.Corps {
				ids[i] = c.CorpID
			}
			out[a.Name] = ids
		}
	}
	return out
}

// corpView is the corps as the service or an operator command sees them:
// the registry (nil when off), its Mirror, and the Directory over both and
// the configuration, which answers every "which corps" question.
type corpView struct {
	reg    *corps.Registry
	mirror *corps.Mirror
	dir    *corps.Directory
}

// openCorpView opens (create true: the service) or binds (an operator
// command) the registry when the configuration turns it on, and loads its
// Mirror, which follows changes until close; onChange is the Mirror's.
func openCorpView(ctx context.Context, cfg *config.Config, js jetstream.JetStream, create bool,
	log zerolog.Logger, onChange func(corps.Change)) (*corpView, error) {
	fixed := fixedCorps(cfg)
	if !cfg.Corps.Enabled() {
		return &corpView{dir: corps.NewDirectory(fixed, nil)}, nil
	}
	keys, err := corps.NewKeyringBase64(cfg.Corps.Keys(), cfg.Corps.CurrentKey)
	if err != nil {
		return nil, fmt.Errorf("corps: %w", err)
	}
	opts := []corps.Option{
		corps.WithReplicas(cfg.NATS.Replicas), corps.WithMaxBytes(cfg.NATS.CorpsMaxBytes), corps.WithLogger(log),
	}
	var reg *corps.Registry
	if create {
		reg, err = corps.Open(ctx, js, keys, opts...)
	} else {
		reg, err = corps.Bind(ctx, js, keys, opts...)
	}
	if err != nil {
		return nil, err
	}
	// The watch outlives ctx (the service's start-up context): close ends it.
	m, err := reg.Mirror(context.WithoutCancel(ctx), "", onChange)
	if err != nil {
		return nil, err
	}
	return &corpView{reg: reg, mirror: m, dir: corps.NewDirectory(fixed, m)}, nil
}

// clientOptions are the options a's WeCom client needs to reach the corps
// of the registry.
func (v *corpView) clientOptions(a config.App) []wecom.Option {
	if v == nil || v.mirror == nil || a.Mode != config.ModeArchive {
		return nil
	}
	return []wecom.Option{wecom.WithPermanentCodes(v.mirror)}
}

func (v *corpView) close() {
	if v != nil && v.mirror != nil {
		v.mirror.Stop()
	}
}

// seed applies each archive app's listed corps to the registry.
func (v *corpView) seed(ctx context.Context, cfg *config.Config) error {
	if v.reg == nil {
		return nil
	}
	for _, a := range cfg.Apps {
		if a.Mode != config.ModeArchive || len(a.Corps) == 0 {
			continue
		}
		seeds := make([]corps.Seed, len(a.Corps))
		for i, c := range a.Corps {
			seeds[i] = corps.Seed{CorpID: c.CorpID, PermanentCode: c.PermanentCode}
		}
		if _, err := v.reg.Seed(ctx, a.Name, seeds); err != nil {
			return fmt.Errorf("app %s: seed corps: %w", a.Name, err)
		}
	}
	return nil
}

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
			select {
			case m.warm <- [2]string{c.App, c.CorpID}:
			default:
				// A full queue: the names are looked up rule by rule.
			}
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
func (m *Main) newCorpAuth() *corpauth.Handler {
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
	return corpauth.New(m.corpView.reg, suites, m.publisher, erasers, m.log)
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

// warmQueue is how many newly authorized corps may wait for their rules
// to be listed.
const warmQueue = 1024
