package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
)

// Entry is one stored dead letter and where it is.
type Entry struct {
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Stored  time.Time `json:"stored"`
	wecomhit.DeadLetter
}

// Filter selects dead letters; empty fields match everything.
type Filter struct {
	Kind   string // wecomhit.DeadLetterHit or DeadLetterCallback
	App    string
	CorpID string
	Reason string
	// Limit stops after this many matches; 0 means no limit.
	Limit int
}

func (f Filter) match(dl *wecomhit.DeadLetter) bool {
	return (f.Kind == "" || dl.Kind == f.Kind) && (f.App == "" || dl.App == f.App) &&
		(f.CorpID == "" || dl.CorpID == f.CorpID) && (f.Reason == "" || dl.Reason == f.Reason)
}

// subjects narrows the read to the subjects f can match.
func (s *Stream) subjects(f Filter) []string {
	switch f.Kind {
	case wecomhit.DeadLetterHit:
		if f.CorpID != "" {
			return []string{HitSubject(s.prefix, f.CorpID)}
		}
		return []string{s.prefix + ".dlq.hit.>"}
	case wecomhit.DeadLetterCallback:
		if f.App != "" {
			return []string{s.prefix + ".dlq.callback." + Token(f.App) + ".>"}
		}
		return []string{s.prefix + ".dlq.callback.>"}
	}
	return []string{s.prefix + ".dlq.>"}
}

// List returns the dead letters f selects, oldest first. A stream that does
// not exist yet has none. A stored message that is not a dead letter (not
// JSON) is returned with only Seq, Subject and Stored set, when f has no
// field set, so that nothing in the stream is hidden from an operator.
func (s *Stream) List(ctx context.Context, f Filter) ([]Entry, error) {
	st, err := s.js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("deadletter: stream %s: %w", StreamName, err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: s.subjects(f)})
	if err != nil {
		return nil, fmt.Errorf("deadletter: read %s: %w", StreamName, err)
	}
	var out []Entry
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("deadletter: read %s: %w", StreamName, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("deadletter: read %s: %w", StreamName, err)
			}
			e := Entry{Seq: md.Sequence.Stream, Subject: m.Subject(), Stored: md.Timestamp.UTC()}
			if err := json.Unmarshal(m.Data(), &e.DeadLetter); err != nil {
				if f != (Filter{Limit: f.Limit}) {
					continue
				}
			} else if !f.match(&e.DeadLetter) {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) == f.Limit {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("deadletter: read %s: %w", StreamName, err)
		}
		if n == 0 {
			return out, nil
		}
	}
}

// Get returns the dead letter at seq. Errors wrap ErrNotFound when there is
// none (never stored, deleted, or aged out).
func (s *Stream) Get(ctx context.Context, seq uint64) (Entry, error) {
	st, err := s.js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return Entry{}, fmt.Errorf("deadletter: %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("deadletter: stream %s: %w", StreamName, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, fmt.Errorf("deadletter: %d: %w", seq, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("deadletter: get %d: %w", seq, err)
	}
	e := Entry{Seq: m.Sequence, Subject: m.Subject, Stored: m.Time.UTC()}
	if err := json.Unmarshal(m.Data, &e.DeadLetter); err != nil {
		return e, fmt.Errorf("deadletter: %d is not a dead letter: %w", seq, err)
	}
	return e, nil
}

// Delete removes the dead letter at seq. Errors wrap ErrNotFound when it is
// gone already, so a second replay can tell it has nothing to do.
func (s *Stream) Delete(ctx context.Context, seq uint64) error {
	st, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("deadletter: stream %s: %w", StreamName, err)
	}
	if err := st.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return fmt.Errorf("deadletter: delete %d: %w", seq, ErrNotFound)
		}
		return fmt.Errorf("deadletter: delete %d: %w", seq, err)
	}
	return nil
}

// Count returns how many dead letters the stream holds on the subjects of
// kind ("" for both), for status reports; a missing stream holds none.
func (s *Stream) Count(ctx context.Context, kind string) (uint64, error) {
	st, err := s.js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("deadletter: stream %s: %w", StreamName, err)
	}
	filter := s.subjects(Filter{Kind: kind})[0]
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, fmt.Errorf("deadletter: stream %s: %w", StreamName, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

// Replayed deletes dead letter seq if it is the callback dead letter of
// callbackID: the receiver calls it once a replay of that record has ended
// again. A dead letter that is gone, or holds something else, is left
// alone (nil): the request came in a record header, which is not proof.
func (s *Stream) Replayed(ctx context.Context, seq uint64, callbackID string) error {
	e, err := s.Get(ctx, seq)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil && e.Seq == 0 {
		return err
	}
	var rec struct {
		ID string `json:"id"`
	}
	if e.Kind != wecomhit.DeadLetterCallback || json.Unmarshal(e.Record, &rec) != nil || rec.ID != callbackID {
		return nil
	}
	if err := s.Delete(ctx, seq); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}
