package app

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// FixedCorps are the corps the configuration fixes: a zone app's one corp,
// and an archive app's listed corps when the registry is off. With the
// registry on, an archive app's corps are the registry's (its listed corps
// are seeds).
func FixedCorps(cfg *config.Config) map[string][]string {
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

// CorpView is the corps as the service or an operator command sees them:
// the registry (nil when off), its Mirror, and the Directory over both and
// the configuration, which answers every "which corps" question.
type CorpView struct {
	Reg    *corps.Registry
	Mirror *corps.Mirror
	Dir    *corps.Directory
}

// OpenCorpView opens (create true: the service) or binds (an operator
// command) the registry when the configuration turns it on, and loads its
// Mirror, which follows changes until Close; onChange is the Mirror's.
func OpenCorpView(ctx context.Context, cfg *config.Config, js jetstream.JetStream, create bool,
	log zerolog.Logger, onChange func(corps.Change)) (*CorpView, error) {
	fixed := FixedCorps(cfg)
	if !cfg.Corps.Enabled() {
		return &CorpView{Dir: corps.NewDirectory(fixed, nil)}, nil
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
	// The watch outlives ctx (the service's start-up context): Close ends it.
	m, err := reg.Mirror(context.WithoutCancel(ctx), "", onChange)
	if err != nil {
		return nil, err
	}
	return &CorpView{Reg: reg, Mirror: m, Dir: corps.NewDirectory(fixed, m)}, nil
}

// ClientOptions are the options a's WeCom client needs to reach the corps
// of the registry.
func (v *CorpView) ClientOptions(a config.App) []wecom.Option {
	if v == nil || v.Mirror == nil || a.Mode != config.ModeArchive {
		return nil
	}
	return []wecom.Option{wecom.WithPermanentCodes(v.Mirror)}
}

// Close stops the Mirror's watch; a nil view is fine.
func (v *CorpView) Close() {
	if v != nil && v.Mirror != nil {
		v.Mirror.Stop()
	}
}

// Seed applies each archive app's listed corps to the registry.
func (v *CorpView) Seed(ctx context.Context, cfg *config.Config) error {
	if v.Reg == nil {
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
		if _, err := v.Reg.Seed(ctx, a.Name, seeds); err != nil {
			return fmt.Errorf("app %s: seed corps: %w", a.Name, err)
		}
	}
	return nil
}
