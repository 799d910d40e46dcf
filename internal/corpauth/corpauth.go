// Package corpauth applies WeCom's authorization callbacks (create_auth,
// change_auth, reset_permanent_code, cancel_auth) to the corp registry, and
// carries out what a cancellation requires: delete the corp's data
// everywhere the receiver keeps it, then announce the corp's lifecycle
// events (docs/corps.md).
//
// It leaves to others: storing entries and sealing codes (corps), the WeCom
// calls (a Suite: *wecom.Client), each store's deletion (the Erasers the
// caller wires), publishing (an Announcer: *publish.Publisher), and
// starting or stopping fetches (the caller, from the registry's Mirror).
package corpauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/secret"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// ErrBadRecord: the callback lacks what its kind needs (an auth code, a
// corp id); retrying cannot help.
var ErrBadRecord = errors.New("corpauth: bad authorization record")

// ErrNoApp: the callback names an app without a suite.
var ErrNoApp = errors.New("corpauth: app has no suite")

// Suite makes the suite's authorization calls for one app: *wecom.Client.
type Suite interface {
	GetPermanentCode(ctx context.Context, authCode string) (wecom.PermanentCode, error)
	GetAuthInfo(ctx context.Context, corpID string, permanentCode secret.Secret) (wecom.AuthInfo, error)
}

// Announcer publishes lifecycle events: *publish.Publisher. at is the
// time the event's de-duplication id derives from, so every replica that
// announces the same change publishes one event.
type Announcer interface {
	PublishCorp(ctx context.Context, ev wecomhit.CorpLifecycleEvent, at time.Time) error
}

// Eraser deletes one kind of a cancelled corp's data. It must succeed when
// there is nothing to delete, and may run on several replicas at once.
type Eraser struct {
	// Data is what it deletes, as the cancelled event lists it
	// (wecomhit.CorpData...).
	Data []string
	// Erase deletes it.
	Erase func(ctx context.Context, app, corp string) error
	// AfterEvent runs it after the cancelled event is published: for the
	// callback records, among which is the cancel_auth being handled, whose
	// redelivery must stay possible until everything else is done.
	AfterEvent bool
}

// Handler applies authorization callbacks. It is safe for concurrent use.
type Handler struct {
	reg     *corps.Registry
	suites  map[string]Suite
	ann     Announcer
	erasers []Eraser
	log     zerolog.Logger
}

// Option sets an optional setting of New.
type Option func(*options) error

type options struct {
	log zerolog.Logger
}

// WithLogger sets the logger; New adds the component field. Default
// zerolog.Nop.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error {
		o.log = l
		return nil
	}
}

// New returns a Handler for the apps in suites. erasers run in order on
// every cancellation. Its one option is WithLogger (default zerolog.Nop).
func New(reg *corps.Registry, suites map[string]Suite, ann Announcer, erasers []Eraser, opts ...Option) (*Handler, error) {
	o := options{log: zerolog.Nop()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return &Handler{
		reg: reg, suites: suites, ann: ann, erasers: erasers,
		log: o.log.With().Str("component", "corpauth").Logger(),
	}, nil
}

// Handle applies cb and returns once its effect is stored (and, for
// cancel_auth, the corp's data deleted and the event published), so that
// the caller may then acknowledge the record. Other kinds return nil.
//
// Errors: ErrNoApp, ErrBadRecord, corps.ErrCorpMismatch and corps.ErrInvalid
// are permanent; corps.ErrInProgress and the rest are worth retrying.
func (h *Handler) Handle(ctx context.Context, cb *wecomhit.Callback) error {
	var at time.Time
	if cb.EventTime > 0 {
		at = time.Unix(cb.EventTime, 0).UTC()
	}
	switch cb.Kind {
	case wecomhit.KindCreateAuth:
		return h.authorize(ctx, cb, corps.CauseCreateAuth, at)
	case wecomhit.KindResetPermanentCode:
		if cb.CorpID == "" {
			return fmt.Errorf("%w: reset_permanent_code without a corp id", ErrBadRecord)
		}
		return h.authorize(ctx, cb, corps.CauseReset, at)
	case wecomhit.KindChangeAuth:
		return h.changeAuth(ctx, cb, at)
	case wecomhit.KindCancelAuth:
		if cb.CorpID == "" {
			return fmt.Errorf("%w: cancel_auth without a corp id", ErrBadRecord)
		}
		return h.Cancel(ctx, cb.App, cb.CorpID, at, corps.CauseCancelAuth)
	}
	return nil
}

func (h *Handler) authorize(ctx context.Context, cb *wecomhit.Callback, cause corps.Cause, at time.Time) error {
	s, ok := h.suites[cb.App]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoApp, cb.App)
	}
	if cb.AuthCode == "" {
		return fmt.Errorf("%w: %s without an auth code", ErrBadRecord, cause)
	}
	out, err := h.reg.Authorize(ctx, corps.Authorization{
		App: cb.App, AuthCode: cb.AuthCode, Cause: cause, CorpID: cb.CorpID, EventTime: at,
		Exchange: func(ctx context.Context) (corps.Grant, error) {
			pc, err := s.GetPermanentCode(ctx, cb.AuthCode)
			if err != nil {
				return corps.Grant{}, err
			}
			return corps.Grant{CorpID: pc.CorpID, CorpName: pc.CorpName, PermanentCode: pc.PermanentCode}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("corpauth: %s: %w", cause, err)
	}
	ev := h.log.Info().Str("app", cb.App).Str("cause", string(cause))
	switch {
	case out.Replayed:
		ev.Bool("replayed", true).Msg("auth code exchanged before; nothing to do")
	case out.Stale:
		ev.Str("corp_id", out.Corp.CorpID).Msg("authorization older than the corp's last change; not applied")
	default:
		// The authorized event is published by every replica's watch
		// (Announce), not here: the entry is the fact, and a replica that
		// fails right after storing it must not lose the event.
		ev.Str("corp_id", out.Corp.CorpID).Msg("corp authorized")
	}
	return nil
}

func (h *Handler) changeAuth(ctx context.Context, cb *wecomhit.Callback, at time.Time) error {
	s, ok := h.suites[cb.App]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoApp, cb.App)
	}
	if cb.CorpID == "" {
		return fmt.Errorf("%w: change_auth without a corp id", ErrBadRecord)
	}
	c, err := h.reg.Get(ctx, cb.App, cb.CorpID)
	if errors.Is(err, corps.ErrNotFound) {
		// A grant change of a corp we do not have (its create_auth is
		// still on its way, or it was removed): the next create_auth
		// brings the grant.
		h.log.Info().Str("app", cb.App).Str("corp_id", cb.CorpID).Msg("change_auth for a corp not in the registry; ignored")
		return nil
	}
	if err != nil {
		return fmt.Errorf("corpauth: change_auth: %w", err)
	}
	if c.State != corps.Active {
		return nil
	}
	code, err := h.reg.PermanentCode(c)
	if err != nil {
		return fmt.Errorf("corpauth: change_auth: %w", err)
	}
	info, err := s.GetAuthInfo(ctx, cb.CorpID, code)
	if err != nil {
		return fmt.Errorf("corpauth: change_auth: %w", err)
	}
	_, err = h.reg.Update(ctx, cb.App, cb.CorpID, corps.CauseChangeAuth, func(c *corps.Corp) error {
		if !at.IsZero() && c.EventAt.After(at) {
			return corps.ErrStale
		}
		if !at.IsZero() {
			c.EventAt = at
		}
		if info.CorpName != "" {
			c.CorpName = info.CorpName
		}
		return nil
	})
	if errors.Is(err, corps.ErrStale) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("corpauth: change_auth: %w", err)
	}
	return nil
}

// Cancel stops serving (app, corp) (the registry entry is cancelled, which
// every replica's watch sees), deletes its data with every Eraser, and
// publishes the cancelled event. It is idempotent: a cancelled or unknown
// corp has its data deleted (again) and the event published (again, and
// de-duplicated).
func (h *Handler) Cancel(ctx context.Context, app, corp string, at time.Time, cause corps.Cause) error {
	c, err := h.reg.Cancel(ctx, app, corp, at, cause)
	switch {
	case errors.Is(err, corps.ErrStale):
		// Re-authorized after this cancellation: its data is in use again.
		h.log.Info().Str("app", app).Str("corp_id", corp).Msg("cancellation older than the corp's last authorization; not applied")
		return nil
	case errors.Is(err, corps.ErrNotFound):
		// Not in the registry (removed, or never stored): its data may
		// still be around.
		c = corps.Corp{App: app, CorpID: corp, LastChange: cause, ChangedAt: at}
	case err != nil:
		return fmt.Errorf("corpauth: cancel: %w", err)
	}
	if err := h.erase(ctx, c, at); err != nil {
		return err
	}
	h.log.Info().Str("app", app).Str("corp_id", corp).Str("cause", string(cause)).Msg("corp cancelled and its data deleted")
	return nil
}

// erase runs the erasers and publishes the cancelled event of c.
func (h *Handler) erase(ctx context.Context, c corps.Corp, at time.Time) error {
	var deleted []string
	run := func(after bool) error {
		for _, e := range h.erasers {
			if e.AfterEvent != after {
				continue
			}
			if err := e.Erase(ctx, c.App, c.CorpID); err != nil {
				return fmt.Errorf("corpauth: delete %v of %s/%s: %w", e.Data, c.App, c.CorpID, err)
			}
		}
		return nil
	}
	if err := run(false); err != nil {
		return err
	}
	deleted = append(deleted, wecomhit.CorpDataPermanentCode)
	for _, e := range h.erasers {
		deleted = append(deleted, e.Data...)
	}
	ev := wecomhit.CorpLifecycleEvent{
		Type: wecomhit.CorpCancelled, App: c.App, CorpID: c.CorpID,
		Cause: string(c.LastChange), Deleted: deleted,
	}
	if ev.Cause == "" || ev.Cause == string(corps.CauseSeed) {
		ev.Cause = string(corps.CauseOperator)
	}
	if !at.IsZero() {
		ev.EventTime = &at
	}
	if err := h.ann.PublishCorp(ctx, ev, idTime(c, at)); err != nil {
		return fmt.Errorf("corpauth: announce cancel: %w", err)
	}
	return run(true)
}

// idTime is what a lifecycle event's id derives from: WeCom's event time
// if any, else the entry's last change.
func idTime(c corps.Corp, at time.Time) time.Time {
	if !at.IsZero() {
		return at
	}
	if !c.EventAt.IsZero() {
		return c.EventAt
	}
	return c.ChangedAt
}

// Announce is for every replica's registry watch (corps.Registry.Mirror's
// onChange), for changes after the initial state: it publishes the
// authorized event of a corp that became active through create_auth,
// reset_permanent_code or a seed, and for a cancelled corp deletes its
// data and publishes the cancelled event. Every replica doing so is what
// makes the event survive the failure of the one that wrote the change;
// the events' ids de-duplicate them. The replica that carried out the
// cancellation (Cancel) erases again here too: its Cancel may have run
// before its own watch stopped its fetches, and a fetch in between writes
// the corp's events, cursor and lease again; this erase, which the caller
// runs after stopping them, is the one sure to come after all of them.
func (h *Handler) Announce(ctx context.Context, ch corps.Change) error {
	if ch.Initial || ch.Deleted {
		return nil
	}
	c := ch.Corp
	switch {
	case c.State == corps.Active && (c.LastChange == corps.CauseCreateAuth || c.LastChange == corps.CauseReset || c.LastChange == corps.CauseSeed):
		cause := string(c.Source)
		ev := wecomhit.CorpLifecycleEvent{Type: wecomhit.CorpAuthorized, App: c.App, CorpID: c.CorpID, CorpName: c.CorpName, Cause: cause}
		if !c.EventAt.IsZero() {
			t := c.EventAt
			ev.EventTime = &t
		}
		return h.ann.PublishCorp(ctx, ev, idTime(c, time.Time{}))
	case c.State == corps.Cancelled:
		return h.erase(ctx, c, c.EventAt)
	}
	return nil
}
