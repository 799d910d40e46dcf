package wecom

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
)

// TicketStore keeps the current suite_ticket of each suite in TicketBucket,
// for every replica, and the previous good one beside it. WeCom pushes a
// ticket every 10 minutes, each valid for 30, and get_suite_token wants the
// newest.
//
// "Newest" is decided by when we received a ticket (our clock), not by the
// TimeStamp in the callback body: nothing vouches for that stamp, and one
// stamped in the future (clock skew, a simulator run fast then slow, a
// forged record) would otherwise win over every genuine ticket that follows
// it. The body's stamp only breaks ties, and is clamped so that it is never
// ahead of our clock by more than ticketSkew. When WeCom rejects the current
// ticket (40085), Reject drops it and the previous one, if any, takes its
// place; without one, the suite waits for WeCom's next push.
type TicketStore struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewTicketStore returns a store on kv (normally Stores.Tickets is used).
func NewTicketStore(kv jetstream.KeyValue) *TicketStore {
	return &TicketStore{kv: kv, now: time.Now}
}

// ticketSkew is how far ahead of our clock a received or issued time may
// be before it is clamped: enough for replicas' clocks to disagree a
// little, far less than a ticket's 10-minute push period.
const ticketSkew = 2 * time.Minute

// ticketEntry is one ticket as stored. Times are Unix seconds.
type ticketEntry struct {
	Ticket string `json:"ticket"`
	// IssuedAt is the callback body's TimeStamp, clamped.
	IssuedAt int64 `json:"issued_at"`
	// ReceivedAt is when the callback was stored (our clock), clamped;
	// zero in values written before it existed, where IssuedAt stands in.
	ReceivedAt int64 `json:"received_at,omitempty"`
}

func (e ticketEntry) received() int64 {
	if e.ReceivedAt == 0 {
		return e.IssuedAt
	}
	return e.ReceivedAt
}

// newer orders tickets by received time, then issued time.
func (e ticketEntry) newer(than ticketEntry) bool {
	if e.received() != than.received() {
		return e.received() > than.received()
	}
	return e.IssuedAt > than.IssuedAt
}

// storedTicket is the value of a suite's key. Its JSON keeps the fields of
// the first version (ticket, issued_at) at the top, so values written
// before still read as the current ticket.
type storedTicket struct {
	ticketEntry
	// Previous is the ticket the current one replaced, kept until WeCom
	// rejects the current one.
	Previous *ticketEntry `json:"previous,omitempty"`
	// RejectedAt (Unix seconds) and Rejections record 40085 answers.
	RejectedAt int64 `json:"rejected_at,omitempty"`
	Rejections int   `json:"rejections,omitempty"`
	// RejectedHash is a digest of the last rejected ticket, so a
	// redelivered callback carrying it is not stored again. Not the ticket:
	// status output reads this value.
	RejectedHash string `json:"rejected_hash,omitempty"`
}

// digest identifies a secret without revealing it.
func digest(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:16])
}

// TicketStatus describes a suite's stored tickets without revealing them,
// for status output.
type TicketStatus struct {
	// Present: a ticket is stored that get_suite_token can use. False
	// before the first push, and after a rejection with no previous ticket
	// to fall back to, until the next push.
	Present bool
	// ReceivedAt is when the current ticket was received (our clock; its
	// age is how long since WeCom's last push that we kept); IssuedAt is
	// the callback's TimeStamp, clamped. Zero when not Present.
	ReceivedAt, IssuedAt time.Time
	// HasPrevious: a previous good ticket is kept to fall back to.
	HasPrevious bool
	// RejectedAt is the time of the last 40085 answer, zero if none;
	// Rejections counts them since the bucket was created.
	RejectedAt time.Time
	Rejections int
}

// casTries bounds the compare-and-set loops; each conflict means another
// replica stored a ticket at the same moment.
const casTries = 5

// update applies change to suiteID's value under compare-and-set
// (broker.UpdateKey). change gets the current value (zero and found=false
// if none) and returns the new one, or false to leave the key alone.
func (s *TicketStore) update(ctx context.Context, suiteID, op string, change func(cur storedTicket, found bool) (storedTicket, bool)) error {
	_, err := broker.UpdateKey(ctx, s.kv, kvKey(suiteID), casTries, func(e jetstream.KeyValueEntry) ([]byte, error) {
		var cur storedTicket
		// An unreadable value is replaced as if absent.
		found := e != nil && json.Unmarshal(e.Value(), &cur) == nil
		next, ok := change(cur, found)
		if !ok {
			return nil, nil
		}
		data, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("encode suite_ticket: %w", err)
		}
		return data, nil
	})
	if err != nil {
		return fmt.Errorf("wecom: %s suite_ticket: %w", op, err)
	}
	return nil
}

// Put stores ticket for suiteID unless the stored one is newer.
// receivedAt is when the callback carrying it was stored (our clock: the
// callback record's ReceivedAt), so a redelivered older callback does not
// replace a newer ticket; issuedAt is the body's TimeStamp, which only
// breaks ties. Either may be zero (taken as now and as receivedAt); both
// are clamped to at most ticketSkew ahead of our clock. The ticket it
// replaces is kept as the previous one. A ticket WeCom has rejected
// (Reject) is not stored again from a callback received before the
// rejection.
func (s *TicketStore) Put(ctx context.Context, suiteID, ticket string, receivedAt, issuedAt time.Time) error {
	if suiteID == "" || ticket == "" {
		return &ValidationError{Field: "suite_ticket", Rule: "suite id and ticket required"}
	}
	now := s.clock()
	limit := now.Add(ticketSkew).Unix()
	if receivedAt.IsZero() {
		receivedAt = now
	}
	if issuedAt.IsZero() {
		issuedAt = receivedAt
	}
	in := ticketEntry{Ticket: ticket, ReceivedAt: min(receivedAt.Unix(), limit), IssuedAt: min(issuedAt.Unix(), limit)}
	return s.update(ctx, suiteID, "store", func(cur storedTicket, found bool) (storedTicket, bool) {
		if !found {
			return storedTicket{ticketEntry: in}, true
		}
		if cur.RejectedHash == digest(ticket) && in.ReceivedAt <= cur.RejectedAt {
			// A redelivery of the callback that brought the rejected
			// ticket. The same value pushed again after the rejection
			// (WeCom's console can re-push) is taken at its word.
			return cur, false
		}
		switch {
		case cur.Ticket == "":
			// Waiting for a push after a rejection.
			cur.ticketEntry = in
		case cur.Ticket == ticket:
			// A redelivery; keep the earliest receipt.
			return cur, false
		case !cur.newer(in):
			// Newer, or as new: the later write wins a tie.
			prev := cur.ticketEntry
			cur.ticketEntry, cur.Previous = in, &prev
		case cur.Previous == nil || (cur.Previous.Ticket != ticket && in.newer(*cur.Previous)):
			// Older than the current one but newer than the previous:
			// the better fallback.
			cur.Previous = &in
		default:
			return cur, false
		}
		return cur, true
	})
}

// HandleCallback stores the ticket a stored suite_ticket callback carries:
// received when the callback was stored, issued at the body's TimeStamp
// (zero if absent). A callback of another kind, or one without a suite id
// or a ticket, is an ErrValidation and stores nothing: retrying it cannot
// help, so the caller may drop it.
func (s *TicketStore) HandleCallback(ctx context.Context, cb *wecomhit.Callback) error {
	if cb.Kind != wecomhit.KindSuiteTicket {
		return &ValidationError{Field: "InfoType", Rule: "must be suite_ticket"}
	}
	var issued time.Time
	if cb.EventTime > 0 {
		issued = time.Unix(cb.EventTime, 0)
	}
	return s.Put(ctx, cb.SuiteID, cb.SuiteTicket, cb.ReceivedAt, issued)
}

// Get returns the current ticket of suiteID, or ErrNoSuiteTicket.
func (s *TicketStore) Get(ctx context.Context, suiteID string) (string, error) {
	t, err := s.read(ctx, suiteID)
	if err != nil {
		return "", err
	}
	if t.Ticket == "" {
		if t.Rejections > 0 {
			return "", fmt.Errorf("%w: the last one was rejected (40085); waiting for WeCom's next push", ErrNoSuiteTicket)
		}
		return "", ErrNoSuiteTicket
	}
	return t.Ticket, nil
}

func (s *TicketStore) read(ctx context.Context, suiteID string) (storedTicket, error) {
	var t storedTicket
	e, err := s.kv.Get(ctx, kvKey(suiteID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("wecom: read suite_ticket: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return t, errors.New("wecom: stored suite_ticket unreadable")
	}
	return t, nil
}

// Reject records that WeCom answered 40085 to ticket and drops it: the
// previous ticket, if any, becomes current, and fellBack says so; otherwise
// Get fails with ErrNoSuiteTicket until the next Put. A ticket that is no
// longer current (another replica rejected it first) is dropped wherever
// it still is.
func (s *TicketStore) Reject(ctx context.Context, suiteID, ticket string) (fellBack bool, err error) {
	now := s.clock().Unix()
	err = s.update(ctx, suiteID, "drop", func(cur storedTicket, found bool) (storedTicket, bool) {
		fellBack = false
		if !found {
			return cur, false
		}
		switch {
		case cur.Ticket == ticket:
			cur.ticketEntry = ticketEntry{}
			if cur.Previous != nil {
				cur.ticketEntry, cur.Previous = *cur.Previous, nil
				fellBack = true
			}
		case cur.Previous != nil && cur.Previous.Ticket == ticket:
			cur.Previous = nil
			fellBack = cur.Ticket != ""
		default:
			// Already dropped by another replica.
			fellBack = cur.Ticket != ""
			return cur, false
		}
		cur.RejectedAt, cur.RejectedHash = now, digest(ticket)
		cur.Rejections++
		return cur, true
	})
	return fellBack, err
}

// Status describes suiteID's tickets; all zero if none was ever stored.
func (s *TicketStore) Status(ctx context.Context, suiteID string) (TicketStatus, error) {
	t, err := s.read(ctx, suiteID)
	if err != nil {
		return TicketStatus{}, err
	}
	st := TicketStatus{
		Present:     t.Ticket != "",
		HasPrevious: t.Previous != nil,
		Rejections:  t.Rejections,
	}
	if st.Present {
		st.ReceivedAt, st.IssuedAt = time.Unix(t.received(), 0), time.Unix(t.IssuedAt, 0)
	}
	if t.RejectedAt != 0 {
		st.RejectedAt = time.Unix(t.RejectedAt, 0)
	}
	return st, nil
}

func (s *TicketStore) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}
