package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// CorpEntry is a corp as `receiver corps` and the admin API show it: the
// registry's metadata, never the permanent code.
type CorpEntry struct {
	App          string     `json:"app"`
	CorpID       string     `json:"corp_id"`
	CorpName     string     `json:"corp_name,omitempty"`
	State        string     `json:"state"`
	Source       string     `json:"source"`
	AuthorizedAt *time.Time `json:"authorized_at,omitempty"`
	LastChange   string     `json:"last_change,omitempty"`
	ChangedAt    *time.Time `json:"changed_at,omitempty"`
	EventAt      *time.Time `json:"event_at,omitempty"`
	// KeyID names the key the permanent code is sealed under; "" if none.
	KeyID string `json:"key_id,omitempty"`
	// Fixed: the corp comes from the configuration, not the registry.
	Fixed bool `json:"fixed,omitempty"`
}

func newCorpEntry(c corps.Corp) CorpEntry {
	e := CorpEntry{
		App: c.App, CorpID: c.CorpID, CorpName: c.CorpName, State: string(c.State), Source: string(c.Source),
		LastChange: string(c.LastChange), KeyID: c.KeyID(),
	}
	for _, p := range []struct {
		t   time.Time
		dst **time.Time
	}{{c.AuthorizedAt, &e.AuthorizedAt}, {c.ChangedAt, &e.ChangedAt}, {c.EventAt, &e.EventAt}} {
		if !p.t.IsZero() {
			t := p.t
			*p.dst = &t
		}
	}
	return e
}

func fixedEntry(app, corp string) CorpEntry {
	return CorpEntry{App: app, CorpID: corp, State: string(corps.Active), Source: string(corps.SourceConfig), Fixed: true}
}

// ListCorps is every corp of app ("" for all): the configuration's fixed
// corps, then the registry's (reg may be nil), sorted by app and corp.
func ListCorps(ctx context.Context, cfg *config.Config, reg *corps.Registry, app string) ([]CorpEntry, error) {
	var out []CorpEntry
	fixed := FixedCorps(cfg)
	for _, a := range cfg.Apps {
		if app != "" && a.Name != app {
			continue
		}
		for _, id := range fixed[a.Name] {
			out = append(out, fixedEntry(a.Name, id))
		}
	}
	if reg != nil {
		all, err := reg.List(ctx, app)
		if err != nil {
			return nil, err
		}
		for _, c := range all {
			if _, ok := cfg.App(c.App); ok {
				out = append(out, newCorpEntry(c))
			}
		}
	}
	slices.SortFunc(out, func(a, b CorpEntry) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.CorpID, b.CorpID))
	})
	return out, nil
}

// GetCorp is one corp of a configured app, as ListCorps shows it: fixed by
// the configuration, or else the registry's entry (reg may be nil). A corp
// that is neither is corps.ErrNotFound.
func GetCorp(ctx context.Context, cfg *config.Config, reg *corps.Registry, app, corp string) (CorpEntry, error) {
	if _, ok := cfg.App(app); !ok {
		return CorpEntry{}, fmt.Errorf("%w: no app %q", corps.ErrNotFound, app)
	}
	if slices.Contains(FixedCorps(cfg)[app], corp) {
		return fixedEntry(app, corp), nil
	}
	if reg == nil {
		return CorpEntry{}, fmt.Errorf("%w: app %q corp %q", corps.ErrNotFound, app, corp)
	}
	c, err := reg.Get(ctx, app, corp)
	if errors.Is(err, corps.ErrInvalid) {
		// An id the registry cannot hold is not there.
		return CorpEntry{}, fmt.Errorf("%w: %w", corps.ErrNotFound, err)
	}
	if err != nil {
		return CorpEntry{}, err
	}
	return newCorpEntry(c), nil
}

// RemoveTimeout bounds a corp's removal: the receivers delete the corp's
// data, which scans its app's callback records.
const RemoveTimeout = 2 * time.Minute

// RemoveCorp cancels (app, corp) with cancel, which returns once the corp's
// data is deleted, and then erases its registry entry. Erasing first would
// leave the receivers nothing to act on.
func RemoveCorp(ctx context.Context, reg *corps.Registry, cancel func(ctx context.Context, app, corp string) error, app, corp string) error {
	if _, err := reg.Get(ctx, app, corp); err != nil {
		return err
	}
	if err := cancel(ctx, app, corp); err != nil {
		return err
	}
	return reg.Delete(ctx, app, corp)
}

// CancelAndWait cancels (app, corp) in the registry as the operator and
// waits until a receiver has deleted its data, which it announces with the
// corp's cancelled event: the receivers' registry watches do the work. js
// is the connection the registry was bound on; prefix the subject prefix.
func CancelAndWait(ctx context.Context, reg *corps.Registry, js jetstream.StreamManager, prefix, app, corp string) error {
	c, err := reg.Cancel(ctx, app, corp, time.Time{}, corps.CauseOperator)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, publish.CorpStreamName)
	if err != nil {
		return err
	}
	subject := publish.CorpSubject(prefix, corp, wecomhit.CorpCancelled)
	for {
		if m, err := s.GetLastMsgForSubject(ctx, subject); err == nil {
			var ev wecomhit.CorpLifecycleEvent
			// Published after this cancellation (clocks a minute apart
			// at most): the corp's data is gone.
			if json.Unmarshal(m.Data, &ev) == nil && ev.App == app && ev.PublishedAt.After(c.ChangedAt.Add(-time.Minute)) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no receiver confirmed deleting the data of %s/%s (is one running?); the corp stays cancelled, run remove again: %w", app, corp, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
