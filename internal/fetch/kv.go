package fetch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
)

// key is the KV key of an (app, corp). KV keys allow [-/_=.a-zA-Z0-9];
// anything else in a corp id is escaped, reversibly, as =XX.
func key(app, corp string) string {
	return escapeKey(app) + "." + escapeKey(corp)
}

func escapeKey(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	if b.Len() == 0 {
		return "="
	}
	return b.String()
}

// ErrCursorMoved: the cursor changed under a fetch, which holding the lease
// should make impossible; the fetch stops rather than move it back.
var ErrCursorMoved = errors.New("fetch: cursor moved by someone else")

// loadCursor reads an (app, corp)'s cursor and its revision (0: none yet).
func (f *Fetcher) loadCursor(ctx context.Context, app, corp string) (wecomhit.Cursor, uint64, error) {
	cur := wecomhit.Cursor{App: app, CorpID: corp}
	e, err := f.cursors.Get(ctx, key(app, corp))
	if kvNotFound(err) {
		return cur, 0, nil
	}
	if err != nil {
		return cur, 0, fmt.Errorf("fetch: read cursor: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &cur); err != nil {
		return cur, 0, fmt.Errorf("fetch: decode cursor: %w", err)
	}
	return cur, e.Revision(), nil
}

// storeCursor writes cur if the stored revision is still rev.
func (f *Fetcher) storeCursor(ctx context.Context, cur wecomhit.Cursor, rev uint64) (uint64, error) {
	data, err := json.Marshal(cur)
	if err != nil {
		return rev, fmt.Errorf("fetch: encode cursor: %w", err)
	}
	k := key(cur.App, cur.CorpID)
	var next uint64
	if rev == 0 {
		next, err = f.cursors.Create(ctx, k, data)
	} else {
		next, err = f.cursors.Update(ctx, k, data, rev)
	}
	if err != nil {
		if broker.CASConflict(err) {
			return rev, fmt.Errorf("%w: %w", ErrCursorMoved, err)
		}
		return rev, fmt.Errorf("fetch: write cursor: %w", err)
	}
	return next, nil
}

// Cursor returns the stored cursor of an (app, corp), for status and tests.
func (f *Fetcher) Cursor(ctx context.Context, app, corp string) (wecomhit.Cursor, error) {
	cur, _, err := f.loadCursor(ctx, app, corp)
	return cur, err
}

// hitToken is the newest token or notify id of an (app, corp).
type hitToken struct {
	Token    string `json:"token,omitempty"`
	NotifyID string `json:"notify_id,omitempty"`
	// Issued is WeCom's time for the callback (its TimeStamp or CreateTime),
	// else when we received it: the newest issue wins, so a late or
	// replayed callback cannot displace a fresher token.
	Issued    time.Time `json:"issued"`
	ExpiresAt time.Time `json:"expires_at"`
}

// putToken records a callback's token as the newest of (app, corp), unless
// a newer one is stored already (callbacks can be handled out of order).
func (f *Fetcher) putToken(ctx context.Context, app, corp string, cb *wecomhit.Callback) error {
	issued := cb.ReceivedAt
	if cb.EventTime > 0 {
		issued = time.Unix(cb.EventTime, 0)
	}
	if issued.IsZero() {
		issued = f.opts.now()
	}
	t := hitToken{Token: cb.Token, NotifyID: cb.NotifyID, Issued: issued, ExpiresAt: issued.Add(hitTokenTTL - hitTokenMargin)}
	if !t.ExpiresAt.After(f.opts.now()) {
		return nil // already too old to be of use
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("fetch: encode token: %w", err)
	}
	_, err = broker.UpdateKey(ctx, f.tokens, key(app, corp), casTriesToken, func(e jetstream.KeyValueEntry) ([]byte, error) {
		var old hitToken
		// A newer token, or this one (a burst of callbacks, or a replay,
		// carrying one token): nothing to write, and no CAS to lose.
		if e != nil && json.Unmarshal(e.Value(), &old) == nil &&
			(old.Issued.After(t.Issued) || old.Token == t.Token && old.NotifyID == t.NotifyID) {
			return nil, nil
		}
		return data, nil
	})
	if err != nil {
		return fmt.Errorf("fetch: store token: %w", err)
	}
	return nil
}

// casTriesToken bounds putToken's compare-and-set: callbacks of one corp
// racing to store their tokens.
const casTriesToken = 5

// currentToken returns the newest unexpired token, or none.
func (f *Fetcher) currentToken(ctx context.Context, k string) hitToken {
	e, err := f.tokens.Get(ctx, k)
	if err != nil {
		return hitToken{}
	}
	var t hitToken
	if json.Unmarshal(e.Value(), &t) != nil || !t.ExpiresAt.After(f.opts.now()) {
		return hitToken{}
	}
	return t
}

// dropToken forgets a token WeCom no longer honours, unless a newer one
// has replaced it meanwhile.
func (f *Fetcher) dropToken(ctx context.Context, k string, dead hitToken) {
	e, err := f.tokens.Get(ctx, k)
	if err != nil {
		return
	}
	var t hitToken
	if json.Unmarshal(e.Value(), &t) != nil || t.Token != dead.Token || t.NotifyID != dead.NotifyID {
		return
	}
	_ = f.tokens.Delete(ctx, k, jetstream.LastRevision(e.Revision()))
}

// lease is this replica's claim on an (app, corp).
type lease struct {
	kv    jetstream.KeyValue
	key   string
	owner []byte
	rev   uint64
	ttl   time.Duration
}

// acquire claims the lease of k, or returns errLeaseBusy at once if
// another replica holds it: a callback's fetch comes back for it later
// (start), without holding a worker.
func (f *Fetcher) acquire(ctx context.Context, k string) (*lease, error) {
	l := &lease{kv: f.leases, key: k, owner: []byte(f.id), ttl: f.opts.leaseTTL}
	rev, err := f.leases.Create(ctx, k, l.owner)
	if err == nil {
		l.rev = rev
		return l, nil
	}
	if broker.CASConflict(err) {
		return nil, errLeaseBusy
	}
	return nil, fmt.Errorf("fetch: lease: %w", err)
}

// leaseHeld reports whether a replica holds k's lease; an error reads as
// not held (the fetch then tries to take it, which tells for sure).
func (f *Fetcher) leaseHeld(ctx context.Context, k string) bool {
	_, err := f.leases.Get(ctx, k)
	return err == nil
}

// acquireMaxDelay caps the wait between tries for a taken lease: a
// waiting replica takes a lapsed lease (a dead holder's) soon after it
// lapses, for the cost of two creates a second while another replica
// fetches.
const acquireMaxDelay = 500 * time.Millisecond

// errLeaseLost: renewal failed; another replica may be fetching now.
var errLeaseLost = errors.New("fetch: lease lost")

// renewRetry is the wait between renewal attempts after one failed.
const renewRetry = 250 * time.Millisecond

// keep renews the lease every fifth of its TTL until ctx ends. A renewal
// that fails for a reason that passes (a JetStream election, a slow
// server) is retried every renewRetry; once the lease has gone so long
// unrenewed that it may expire before the next attempt lands (with a fifth
// of the TTL to spare), or another replica holds it, keep cancels the
// fetch, which then stops before moving the cursor.
func (l *lease) keep(ctx context.Context, cancel context.CancelCauseFunc) {
	every := l.ttl / 5
	renewed := time.Now() // acquire wrote it just before
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		giveUp := renewed.Add(l.ttl - every)
		actx, acancel := context.WithDeadline(ctx, giveUp)
		err := l.renew(actx)
		acancel()
		switch {
		case err == nil:
			renewed = time.Now()
			t.Reset(every)
			continue
		case ctx.Err() != nil:
			return
		case broker.CASConflict(err) || !time.Now().Add(renewRetry).Before(giveUp):
			cancel(fmt.Errorf("%w: %w", errLeaseLost, err))
			return
		}
		t.Reset(renewRetry)
	}
}

// renew writes the lease again. A conflict may be a renewal of ours that
// landed although its answer was lost: if the key still holds our owner,
// it is ours, at its current revision.
func (l *lease) renew(ctx context.Context) error {
	rev, err := l.kv.Update(ctx, l.key, l.owner, l.rev)
	if err == nil {
		l.rev = rev
		return nil
	}
	if !broker.CASConflict(err) {
		return err
	}
	e, gerr := l.kv.Get(ctx, l.key)
	if gerr != nil || !bytes.Equal(e.Value(), l.owner) {
		return err
	}
	if rev, err = l.kv.Update(ctx, l.key, l.owner, e.Revision()); err != nil {
		return err
	}
	l.rev = rev
	return nil
}

// release frees the lease if it is still ours.
func (l *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
}
