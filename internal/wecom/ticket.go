package wecom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TicketStore keeps the newest suite_ticket of each suite in TicketBucket,
// for every replica. WeCom pushes a ticket every 10 minutes, each valid for
// 30, and get_suite_token wants the newest.
type TicketStore struct {
	kv jetstream.KeyValue
}

// NewTicketStore returns a store on kv (normally Stores.Tickets is used).
func NewTicketStore(kv jetstream.KeyValue) *TicketStore { return &TicketStore{kv: kv} }

type storedTicket struct {
	Ticket   string `json:"ticket"`
	IssuedAt int64  `json:"issued_at"`
}

// casTries bounds Put's compare-and-set loop; each conflict means another
// replica stored a ticket at the same moment.
const casTries = 5

// Put stores ticket for suiteID unless the stored one is newer: issuedAt
// is the callback's TimeStamp, so a redelivered older callback that arrives
// late does not replace a newer ticket. Equal times overwrite.
func (s *TicketStore) Put(ctx context.Context, suiteID, ticket string, issuedAt time.Time) error {
	if suiteID == "" || ticket == "" {
		return &ValidationError{Field: "suite_ticket", Rule: "suite id and ticket required"}
	}
	key := kvKey(suiteID)
	data, err := json.Marshal(storedTicket{Ticket: ticket, IssuedAt: issuedAt.Unix()})
	if err != nil {
		return err
	}
	for range casTries {
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.kv.Create(ctx, key, data)
			if casConflict(err) {
				continue
			}
		case err != nil:
			return fmt.Errorf("wecom: read suite_ticket: %w", err)
		default:
			var cur storedTicket
			if json.Unmarshal(e.Value(), &cur) == nil && cur.IssuedAt > issuedAt.Unix() {
				return nil
			}
			_, err = s.kv.Update(ctx, key, data, e.Revision())
			if casConflict(err) {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("wecom: store suite_ticket: %w", err)
		}
		return nil
	}
	return fmt.Errorf("wecom: store suite_ticket: %d conflicting writes", casTries)
}

// Get returns the newest ticket of suiteID, or ErrNoSuiteTicket.
func (s *TicketStore) Get(ctx context.Context, suiteID string) (string, error) {
	e, err := s.kv.Get(ctx, kvKey(suiteID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", ErrNoSuiteTicket
	}
	if err != nil {
		return "", fmt.Errorf("wecom: read suite_ticket: %w", err)
	}
	var t storedTicket
	if err := json.Unmarshal(e.Value(), &t); err != nil || t.Ticket == "" {
		return "", fmt.Errorf("wecom: stored suite_ticket unreadable")
	}
	return t.Ticket, nil
}
