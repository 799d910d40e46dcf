package intake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Compaction. WECOM_CALLBACKS keeps records by age (MaxAge) and refuses new
// ones when it holds MaxBytes (DiscardNew), so that nothing answered
// success is ever dropped unhandled. Handled records would otherwise stay
// until MaxAge, and a busy deployment would fill the stream with them and
// start refusing callbacks although every stored one has been handled.
// Compact removes them: once the stream is fuller than a threshold, it
// purges every record below the point that all intake consumers have
// handled. Records not yet handled by one of them are never touched.

// DefaultCompactAt is the fill ratio (of MaxBytes) above which Compact
// purges handled records. Below it, handled records stay for audit and
// replay until MaxAge.
const DefaultCompactAt = 0.5

// CompactEvery is how often RunCompactor looks at the stream.
const CompactEvery = 30 * time.Second

// ErrNoConsumer: Compact was asked to respect a consumer that does not
// exist, so what it has handled is unknown and nothing is purged.
var ErrNoConsumer = errors.New("intake: consumer not found")

// Compact purges the records that every consumer in durables has handled
// (acked or terminated) or will never be given (outside its filter), when
// the stream holds more than at (0..1) of its MaxBytes; it does nothing
// for a stream without MaxBytes. It returns how many records it purged.
//
// Each consumer's filter is compacted on its own, below the first record
// of that filter the consumer (and any other whose filter overlaps) has
// not handled; records that match no consumer's filter go below the lowest
// of them. So a record waiting for a retry holds back only the records of
// its own consumer stored after it, not other kinds'.
//
// durables names the intake consumers (one per kind or all in one); every
// other durable consumer found on the stream is respected as well, and a
// record that matches no durable's filter is purged as handled. A named
// durable that does not exist (not created yet) makes it purge nothing and
// return an error wrapping ErrNoConsumer. Ephemeral consumers (ordered
// readers such as `receiver tail`) hold nothing back.
// Replicas may run it at once: a purge below a floor that has moved on
// purges less, never a record still waiting.
func (s *Store) Compact(ctx context.Context, durables []string, at float64) (uint64, error) {
	if len(durables) == 0 {
		return 0, fmt.Errorf("%w: compact needs the intake consumers", ErrInvalidOption)
	}
	stream, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, fmt.Errorf("intake: compact: %w", err)
	}
	// The snapshot's last sequence bounds every purge: a record stored
	// after it was read may match a filter and is not looked at below.
	info := stream.CachedInfo()
	st := info.State
	if info.Config.MaxBytes <= 0 || float64(st.Bytes) <= at*float64(info.Config.MaxBytes) || st.Msgs == 0 {
		return 0, nil
	}
	infos := make([]*jetstream.ConsumerInfo, 0, len(durables))
	for _, d := range durables {
		c, err := stream.Consumer(ctx, d)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, fmt.Errorf("intake: compact: %w: %s", ErrNoConsumer, d)
		}
		if err != nil {
			return 0, fmt.Errorf("intake: compact: consumer %s: %w", d, err)
		}
		infos = append(infos, c.CachedInfo())
	}
	// Any other durable on the stream is respected too: a list that
	// misses one (a consumer renamed or added) must not cost its records.
	lister := stream.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable != "" && !slices.Contains(durables, ci.Name) {
			infos = append(infos, ci)
		}
	}
	if err := lister.Err(); err != nil {
		return 0, fmt.Errorf("intake: compact: list consumers: %w", err)
	}
	floors := make([]consumerFloor, 0, len(infos))
	lowest := st.LastSeq
	for _, ci := range infos {
		f, err := handledUpTo(ctx, stream, ci, st.LastSeq)
		if err != nil {
			return 0, err
		}
		floors = append(floors, f)
		lowest = min(lowest, f.upTo)
	}
	purge := func(opts ...jetstream.StreamPurgeOpt) error {
		if err := stream.Purge(ctx, opts...); err != nil {
			return fmt.Errorf("intake: compact: %w", err)
		}
		return nil
	}
	if lowest >= st.FirstSeq {
		if err := purge(jetstream.WithPurgeSequence(lowest + 1)); err != nil {
			return 0, err
		}
	}
	for _, c := range floors {
		for _, subj := range c.filters {
			upTo := c.upTo
			for _, o := range floors {
				if o.overlaps(subj) {
					upTo = min(upTo, o.upTo)
				}
			}
			if upTo <= lowest {
				continue // purged already
			}
			if err := purge(jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(upTo+1)); err != nil {
				return 0, err
			}
		}
	}
	after, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("intake: compact: %w", err)
	}
	return st.Msgs - min(st.Msgs, after.State.Msgs), nil
}

// consumerFloor is what handledUpTo found of one consumer: its filters and
// the highest sequence of them it needs no record up to.
type consumerFloor struct {
	filters []string
	upTo    uint64
}

// overlaps reports whether a subject could match subj and one of c's
// filters.
func (c consumerFloor) overlaps(subj string) bool {
	for _, f := range c.filters {
		if subjectsOverlap(f, subj) {
			return true
		}
	}
	return false
}

// subjectsOverlap reports whether some subject matches both filters ('*'
// one token, '>' the rest).
func subjectsOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(at) && i < len(bt); i++ {
		switch {
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
		default:
			return false
		}
	}
	return len(at) == len(bt)
}

// handledUpTo returns a consumer's filters and the highest sequence up to
// which it needs no record any more, at most last: the record before the
// first one of its filters after its ack floor (that one is unacked, or
// the floor would be past it), or last when there is none. Sequences
// between the floor and that record belong to other filters, which their
// own consumers guard.
func handledUpTo(ctx context.Context, stream jetstream.Stream, ci *jetstream.ConsumerInfo, last uint64) (consumerFloor, error) {
	filters := slices.Clone(ci.Config.FilterSubjects)
	if ci.Config.FilterSubject != "" {
		filters = append(filters, ci.Config.FilterSubject)
	}
	if len(filters) == 0 {
		// The whole stream; by subject, so a deleted sequence is skipped
		// rather than not found.
		filters = []string{">"}
	}
	upTo := last
	from := ci.AckFloor.Stream + 1
	for _, f := range filters {
		m, err := stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(f))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return consumerFloor{}, fmt.Errorf("intake: compact: consumer %s: first unhandled record: %w", ci.Name, err)
		}
		upTo = min(upTo, m.Sequence-1)
	}
	return consumerFloor{filters: filters, upTo: upTo}, nil
}

// RunCompactor runs Compact every CompactEvery until ctx ends, logging what
// it purged and, once per kind of failure, why it could not.
func (s *Store) RunCompactor(ctx context.Context, durables []string, at float64) {
	log := s.opts.log.With().Str("component", "intake-compactor").Logger()
	t := time.NewTicker(CompactEvery)
	defer t.Stop()
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := s.Compact(cctx, durables, at)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			if err.Error() != lastErr {
				log.Warn().Err(err).Msg("cannot purge handled callback records")
				lastErr = err.Error()
			}
		case n > 0:
			lastErr = ""
			log.Info().Uint64("records", n).Msg("purged handled callback records")
		default:
			lastErr = ""
		}
	}
}
