package corps

import (
	"context"
	"errors"
	"fmt"

	"github.com/wecomhit/wecomhit/internal/secret"
)

// Seed is a corp listed in the configuration file.
type Seed struct {
	CorpID        string
	PermanentCode secret.Secret
}

// SeedReport says what Seed did, by corp id.
type SeedReport struct {
	// Created: entries that did not exist.
	Created []string
	// Updated: config-sourced entries whose permanent code the file changed.
	Updated []string
	// Unchanged: config-sourced entries that already matched.
	Unchanged []string
	// Kept: active entries whose code came from WeCom (create_auth or
	// reset_permanent_code); the file's code is older and was ignored.
	Kept []string
	// Cancelled: cancelled entries; the file does not bring them back
	// (only a new create_auth does). The file should drop them.
	Cancelled []string
}

// Seed makes the corps of the configuration file entries of app. The file
// is a seed, not the truth, so precedence is:
//
//   - no entry: created, source config;
//   - an active entry whose code came from the config: the file's code
//     replaces it if different (the operator edited the file);
//   - an active entry whose code came from WeCom (create_auth,
//     reset_permanent_code): kept; an exchange is always newer than the file;
//   - a cancelled entry: kept cancelled; WeCom said the corp removed the
//     suite, and its old permanent code no longer works.
//
// Corps in the registry but not in the file are left alone: replicas
// rolling out a new file would otherwise remove each other's corps.
// Running Seed again with the same file writes nothing. Seeds with an
// empty corp id or permanent code, or a corp listed twice, fail the whole
// call with ErrInvalid before anything is written.
func (r *Registry) Seed(ctx context.Context, app string, seeds []Seed) (SeedReport, error) {
	var rep SeedReport
	if err := validID("app", app); err != nil {
		return rep, err
	}
	seen := make(map[string]bool, len(seeds))
	for i, s := range seeds {
		if err := validID("corp id", s.CorpID); err != nil {
			return rep, fmt.Errorf("seed %d: %w", i, err)
		}
		if s.PermanentCode == "" {
			return rep, fmt.Errorf("%w: seed %d (corp %q): empty permanent code", ErrInvalid, i, s.CorpID)
		}
		if seen[s.CorpID] {
			return rep, fmt.Errorf("%w: corp %q listed twice", ErrInvalid, s.CorpID)
		}
		seen[s.CorpID] = true
	}
	if len(seeds) == 0 {
		return rep, nil
	}
	if r.keys == nil {
		return rep, ErrNoKeys
	}
	existing, err := r.List(ctx, app)
	if err != nil {
		return rep, err
	}
	have := make(map[string]Corp, len(existing))
	for _, c := range existing {
		have[c.CorpID] = c
	}
	var errs []error
	for _, s := range seeds {
		outcome, err := r.seedOne(ctx, app, s, have[s.CorpID])
		if err != nil {
			errs = append(errs, fmt.Errorf("seed corp %q: %w", s.CorpID, err))
			continue
		}
		switch outcome {
		case seedCreated:
			rep.Created = append(rep.Created, s.CorpID)
		case seedUpdated:
			rep.Updated = append(rep.Updated, s.CorpID)
		case seedUnchanged:
			rep.Unchanged = append(rep.Unchanged, s.CorpID)
		case seedKept:
			rep.Kept = append(rep.Kept, s.CorpID)
		case seedCancelled:
			rep.Cancelled = append(rep.Cancelled, s.CorpID)
		}
	}
	if len(rep.Kept) > 0 || len(rep.Cancelled) > 0 {
		r.log.Info().Str("app", app).Strs("kept", rep.Kept).Strs("cancelled", rep.Cancelled).
			Msg("config corps not applied: the registry has newer facts from WeCom")
	}
	return rep, errors.Join(errs...)
}

type seedOutcome int

const (
	seedCreated seedOutcome = iota
	seedUpdated
	seedUnchanged
	seedKept
	seedCancelled
)

// seedOne applies one seed against cur (zero Corp: none known), as listed
// before: a seed that needs no write costs no further read. A write goes
// through cas, which reads the entry again and re-applies the seed on a
// conflict with another replica seeding or an exchange landing.
func (r *Registry) seedOne(ctx context.Context, app string, s Seed, cur Corp) (seedOutcome, error) {
	if out, write := r.seedOutcome(s, cur); !write {
		return out, nil
	}
	var out seedOutcome
	_, err := r.cas(ctx, app, s.CorpID, func(cur Corp) (Corp, bool, error) {
		var write bool
		if out, write = r.seedOutcome(s, cur); !write {
			return cur, false, nil
		}
		next := cur
		if out == seedCreated {
			now := r.now()
			next = Corp{App: app, CorpID: s.CorpID, State: Active, Source: SourceConfig, AuthorizedAt: now}
		}
		sealed, err := r.keys.seal(app, s.CorpID, s.PermanentCode.Reveal())
		if err != nil {
			return Corp{}, false, err
		}
		next.Code, next.LastChange, next.ChangedAt = sealed, CauseSeed, r.now()
		return next, true, nil
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

// seedOutcome is what seeding s does to cur, and whether it writes.
func (r *Registry) seedOutcome(s Seed, cur Corp) (seedOutcome, bool) {
	switch {
	case cur.Revision == 0:
		return seedCreated, true
	case cur.State == Cancelled:
		return seedCancelled, false
	case cur.Source != SourceConfig:
		return seedKept, false
	}
	// A stored code that no longer opens (a key dropped too early) is
	// replaced by the file's: it is the same source.
	if old, err := r.PermanentCode(cur); err == nil && old == s.PermanentCode {
		return seedUnchanged, false
	}
	return seedUpdated, true
}
