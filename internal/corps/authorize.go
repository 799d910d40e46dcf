package corps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/secret"
)

// Grant is what an auth code exchange answers: the corp and its permanent
// code (get_permanent_code).
type Grant struct {
	CorpID        string
	CorpName      string
	PermanentCode secret.Secret
}

// Authorization is a create_auth or reset_permanent_code callback to apply.
type Authorization struct {
	App string
	// AuthCode is the callback's single-use code. Only a digest of it is
	// stored.
	AuthCode string
	// Cause is CauseCreateAuth or CauseReset.
	Cause Cause
	// CorpID is the corp a reset_permanent_code names; empty for
	// create_auth, whose corp is learned from the exchange.
	CorpID string
	// EventTime is WeCom's TimeStamp of the callback; zero if absent.
	EventTime time.Time
	// Exchange trades the code for a Grant (the WeCom call). It runs at
	// most once per code across all replicas, unless it fails.
	Exchange func(ctx context.Context) (Grant, error)
}

// Outcome is what Authorize did.
type Outcome struct {
	// Corp is the entry after the change; zero when Replayed.
	Corp Corp
	// Replayed: the code was exchanged before (a redelivered or replayed
	// callback); nothing was called or written.
	Replayed bool
	// Stale: the exchange worked but the entry had applied a newer event
	// (e.g. a later cancel_auth); the entry was left as it was.
	Stale bool
}

// code record states in CodeBucket: claimed for an exchange, exchanged
// (the grant kept, sealed, until the corp entry has it), done.
const (
	codeExchanging = "exchanging"
	codeExchanged  = "exchanged"
	codeDone       = "done"
)

// codeRecord is an auth code's record in CodeBucket. Between the exchange
// and the write of the corp entry it holds the grant, its permanent code
// sealed like an entry's, so that a failure in between does not lose a
// code WeCom will not give again; done drops it.
type codeRecord struct {
	State    string    `json:"state"`
	At       time.Time `json:"at"`
	CorpID   string    `json:"corp_id,omitempty"`
	CorpName string    `json:"corp_name,omitempty"`
	Code     *Sealed   `json:"permanent_code,omitempty"`
}

// codeKey is the CodeBucket key of an app's auth code: a digest, so the
// bucket holds nothing that could be exchanged.
func codeKey(app, code string) string {
	sum := sha256.Sum256([]byte("wecomhit/corps/authcode\x00" + app + "\x00" + code))
	return escape(app) + "." + hex.EncodeToString(sum[:20])
}

// Authorize applies a create_auth or reset_permanent_code: it exchanges
// the auth code once (claimed in CodeBucket, so two replicas or a
// redelivery never both exchange it) and stores the grant before
// returning, so the caller may then acknowledge the callback.
//
//   - A code already exchanged: Outcome.Replayed, no call, no write.
//   - A code another replica is exchanging: ErrInProgress (retry later);
//     after WithClaimTimeout the claim is taken over.
//   - The exchange fails: its error, the claim released, nothing stored;
//     a retry exchanges again (WeCom refuses a used code, so a code that was
//     spent by a lost answer ends in WeCom's errcode, not in a double grant).
//   - A grant for another corp than a reset named: ErrCorpMismatch.
//   - An entry that applied a newer event: Outcome.Stale, entry unchanged.
//   - Storing the grant fails after the exchange: the error; the grant is
//     kept, sealed, in the code's record, and a retry stores it without
//     calling Exchange.
//
// create_auth makes the entry active with source create_auth and a new
// AuthorizedAt; reset_permanent_code replaces the code and keeps
// AuthorizedAt. Both set EventAt to a.EventTime and store the name.
func (r *Registry) Authorize(ctx context.Context, a Authorization) (Outcome, error) {
	if err := r.checkAuthorization(a); err != nil {
		return Outcome{}, err
	}
	ck := codeKey(a.App, a.AuthCode)
	rev, kept, replayed, err := r.claim(ctx, ck)
	if err != nil || replayed {
		return Outcome{Replayed: replayed}, err
	}
	var g Grant
	if kept != nil {
		// An earlier attempt exchanged the code but did not store the
		// grant: store it now, without asking WeCom again.
		code, err := r.keys.open(a.App, kept.CorpID, kept.Code)
		if err != nil {
			return Outcome{}, fmt.Errorf("corps: %s for app %q: kept grant: %w", a.Cause, a.App, err)
		}
		g = Grant{CorpID: kept.CorpID, CorpName: kept.CorpName, PermanentCode: secret.Secret(code)}
		if err := checkGrant(a, g); err != nil {
			return Outcome{}, fmt.Errorf("corps: %s for app %q: %w", a.Cause, a.App, err)
		}
	} else {
		if g, err = r.exchange(ctx, a, ck, rev); err != nil {
			return Outcome{}, err
		}
		rev = r.keep(ctx, a, ck, rev, g)
	}
	out, err := r.applyGrant(ctx, a, g)
	if err != nil {
		// The code is spent: the record keeps the grant (or, if keeping
		// failed, the claim) for the retry.
		return Outcome{}, err
	}
	done, _ := json.Marshal(codeRecord{State: codeDone, At: r.now()})
	if _, err := r.codes.Update(ctx, ck, done, rev); err != nil {
		// The grant is stored. A replay takes the record over and writes
		// the same grant again, or after a timed-out claim fails at WeCom
		// (code spent); it never undoes the entry.
		r.log.Warn().Str("app", a.App).Err(err).Msg("auth code exchanged and stored, but not marked done")
	}
	return out, nil
}

// exchange calls a.Exchange under the claim at rev, releasing the claim if
// it fails so a retry may try again.
func (r *Registry) exchange(ctx context.Context, a Authorization, ck string, rev uint64) (Grant, error) {
	g, err := a.Exchange(ctx)
	if err == nil {
		err = checkGrant(a, g)
	}
	if err == nil {
		return g, nil
	}
	// Not ctx, which may be what ended the exchange.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if derr := r.codes.Delete(dctx, ck, jetstream.LastRevision(rev)); derr != nil && !broker.CASConflict(derr) {
		err = errors.Join(err, fmt.Errorf("corps: release auth code claim: %w", derr))
	}
	return Grant{}, fmt.Errorf("corps: %s for app %q: %w", a.Cause, a.App, err)
}

// keep writes the grant, sealed, into the code's record and returns the
// record's new revision; on failure it logs and returns rev: the grant is
// then only in memory until applyGrant stores it.
func (r *Registry) keep(ctx context.Context, a Authorization, ck string, rev uint64, g Grant) uint64 {
	sealed, err := r.keys.seal(a.App, g.CorpID, g.PermanentCode.Reveal())
	if err == nil {
		var data []byte
		data, err = json.Marshal(codeRecord{State: codeExchanged, At: r.now(), CorpID: g.CorpID, CorpName: g.CorpName, Code: sealed})
		if err == nil {
			var next uint64
			if next, err = r.codes.Update(ctx, ck, data, rev); err == nil {
				return next
			}
		}
	}
	r.log.Warn().Str("app", a.App).Str("corp", g.CorpID).Err(err).Msg("cannot keep the exchanged grant before storing it")
	return rev
}

func (r *Registry) checkAuthorization(a Authorization) error {
	if err := validID("app", a.App); err != nil {
		return err
	}
	if a.AuthCode == "" || len(a.AuthCode) > 512 {
		return fmt.Errorf("%w: auth code must be 1 to 512 bytes", ErrInvalid)
	}
	if a.Exchange == nil {
		return fmt.Errorf("%w: no exchange function", ErrInvalid)
	}
	switch a.Cause {
	case CauseCreateAuth:
	case CauseReset:
		if err := validID("corp id", a.CorpID); err != nil {
			return fmt.Errorf("reset_permanent_code: %w", err)
		}
	default:
		return fmt.Errorf("%w: cause %q is not create_auth or reset_permanent_code", ErrInvalid, a.Cause)
	}
	if r.keys == nil {
		return ErrNoKeys
	}
	return nil
}

func checkGrant(a Authorization, g Grant) error {
	if g.CorpID == "" || g.PermanentCode == "" {
		return fmt.Errorf("%w: the exchange answered no corp id or permanent code", ErrInvalid)
	}
	if a.CorpID != "" && g.CorpID != a.CorpID {
		return fmt.Errorf("%w: callback named %q, exchange answered %q", ErrCorpMismatch, a.CorpID, g.CorpID)
	}
	return validID("corp id", g.CorpID)
}

// claim takes the auth code's record in CodeBucket. It returns the claim's
// revision and, if an earlier attempt exchanged the code without storing
// the grant, the record holding it; or replayed if the code is done.
func (r *Registry) claim(ctx context.Context, ck string) (uint64, *codeRecord, bool, error) {
	var (
		kept      *codeRecord
		replayed  bool
		takenOver time.Time // the timed-out claim taken over, if one was
		claimErr  error
	)
	rev, err := broker.UpdateKey(ctx, r.codes, ck, casRetries, func(e jetstream.KeyValueEntry) ([]byte, error) {
		kept, replayed, takenOver, claimErr = nil, false, time.Time{}, nil
		exchanging, _ := json.Marshal(codeRecord{State: codeExchanging, At: r.now()})
		if e == nil {
			return exchanging, nil
		}
		var rec codeRecord
		if json.Unmarshal(e.Value(), &rec) != nil {
			rec = codeRecord{} // unreadable: treat as a stale claim
		}
		switch {
		case rec.State == codeDone:
			replayed = true
			return nil, nil
		case rec.State == codeExchanged && rec.Code != nil:
			// Storing a kept grant is idempotent: take it over at once.
			rec.At = r.now()
			kept = &rec
			data, _ := json.Marshal(rec)
			return data, nil
		case r.now().Sub(rec.At) < r.opt.claimTTL:
			claimErr = fmt.Errorf("%w (claimed %s)", ErrInProgress, rec.At.Format(time.RFC3339))
			return nil, claimErr
		}
		takenOver = rec.At
		return exchanging, nil
	})
	switch {
	case err == nil && replayed:
		return 0, nil, true, nil
	case err == nil:
		if !takenOver.IsZero() {
			r.log.Warn().Time("claimed_at", takenOver).Msg("taking over a timed-out auth code exchange claim")
		}
		return rev, kept, false, nil
	case claimErr != nil && err == claimErr:
		return 0, nil, false, err
	case errors.Is(err, broker.ErrCASGaveUp):
		return 0, nil, false, fmt.Errorf("%w: auth code claim: %w", ErrConflict, err)
	}
	return 0, nil, false, fmt.Errorf("corps: claim auth code: %w", err)
}

// applyGrant writes g into the entry of (a.App, g.CorpID).
func (r *Registry) applyGrant(ctx context.Context, a Authorization, g Grant) (Outcome, error) {
	at := a.EventTime.UTC() // zero stays zero
	stale := false
	c, err := r.cas(ctx, a.App, g.CorpID, func(cur Corp) (Corp, bool, error) {
		stale = false
		if !at.IsZero() && cur.EventAt.After(at) {
			r.log.Info().Str("app", a.App).Str("corp", g.CorpID).Str("cause", string(a.Cause)).
				Time("event_at", at).Time("entry_event_at", cur.EventAt).Msg("grant older than the entry; not applied")
			stale = true
			return cur, false, nil
		}
		now := r.now()
		next := cur
		next.App, next.CorpID, next.CorpName, next.State = a.App, g.CorpID, g.CorpName, Active
		next.LastChange, next.ChangedAt = a.Cause, now
		if !at.IsZero() {
			next.EventAt = at
		}
		switch {
		case a.Cause == CauseCreateAuth:
			next.Source, next.AuthorizedAt = SourceCreateAuth, now
		case cur.Revision == 0 || cur.State == Cancelled:
			// A reset for a corp this registry does not serve: WeCom says
			// the corp is authorized, so serve it from now.
			next.Source, next.AuthorizedAt = SourceReset, now
		default:
			next.Source = SourceReset
		}
		var err error
		if next.Code, err = r.keys.seal(a.App, g.CorpID, g.PermanentCode.Reveal()); err != nil {
			return Corp{}, false, err
		}
		return next, true, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Corp: c, Stale: stale}, nil
}
