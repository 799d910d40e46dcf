package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrStoreFull: a stream, or the store it lives on, has less room left than
// asked for.
var ErrStoreFull = errors.New("broker: store full")

// Use is how many bytes a store or stream holds, against its limit;
// Limit 0 means no limit known.
type Use struct {
	Used  uint64 `json:"used_bytes"`
	Limit int64  `json:"limit_bytes"`
}

// Free is the room left, or -1 without a limit.
func (u Use) Free() int64 {
	if u.Limit <= 0 {
		return -1
	}
	return max(u.Limit-int64(u.Used), 0)
}

// Usage is the JetStream storage used against its limits: the account's
// (for an embedded server, the server's store limit) and each stream's.
type Usage struct {
	Account Use            `json:"account"`
	Streams map[string]Use `json:"streams"`
	At      time.Time      `json:"at"`
}

// Usage asks the server for the account's and every stream's storage in
// use and its limits: one account info request and one stream list. For
// `receiver status`, metrics and readiness (through Room, which caches it).
func (b *Broker) Usage(ctx context.Context) (Usage, error) {
	ai, err := b.js.AccountInfo(ctx)
	if err != nil {
		return Usage{}, fmt.Errorf("broker: account info: %w", err)
	}
	u := Usage{
		Account: Use{Used: ai.Store, Limit: ai.Limits.MaxStore},
		Streams: map[string]Use{},
		At:      time.Now(),
	}
	if u.Account.Limit <= 0 && b.srv != nil {
		// The account's limit is dynamic (-1): the server's store limit is
		// the one that applies.
		if c := b.srv.JetStreamConfig(); c != nil {
			u.Account.Limit = c.MaxStore
		}
	}
	lister := b.js.ListStreams(ctx)
	for si := range lister.Info() {
		u.Streams[si.Config.Name] = Use{Used: si.State.Bytes, Limit: max(si.Config.MaxBytes, 0)}
	}
	if err := lister.Err(); err != nil {
		return Usage{}, fmt.Errorf("broker: list streams: %w", err)
	}
	return u, nil
}

// roomCacheTTL is how long Room trusts one Usage: readiness probes come
// every few seconds from every load balancer, and need not each cost two
// requests to the server.
const roomCacheTTL = 2 * time.Second

// roomCache holds the last Usage for Room.
type roomCache struct {
	mu    sync.Mutex
	usage Usage
	err   error
}

// Room returns nil when stream and the store it lives on each have at
// least need bytes left, and otherwise an error wrapping ErrStoreFull that
// names which is full (no internal error text: it is fit for logs, not for
// the public port). It reuses a Usage for up to two seconds. For /readyz:
// a replica that cannot store a callback is not ready.
func (b *Broker) Room(ctx context.Context, stream string, need int64) error {
	b.room.mu.Lock()
	defer b.room.mu.Unlock()
	if b.room.usage.At.IsZero() || time.Since(b.room.usage.At) > roomCacheTTL {
		u, err := b.Usage(ctx)
		if err != nil {
			u.At = time.Now() // keep the error for the TTL too
		}
		b.room.usage, b.room.err = u, err
	}
	if b.room.err != nil {
		return b.room.err
	}
	u := b.room.usage
	if f := u.Account.Free(); f >= 0 && f < need {
		return fmt.Errorf("%w: jetstream store has %d of %d bytes left", ErrStoreFull, f, u.Account.Limit)
	}
	if s, ok := u.Streams[stream]; ok {
		if f := s.Free(); f >= 0 && f < need {
			return fmt.Errorf("%w: stream %s has %d of %d bytes left", ErrStoreFull, stream, f, s.Limit)
		}
	}
	return nil
}
