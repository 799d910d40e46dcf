package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Check is how the records a run left compare with its answers. A callback
// answered 200 and not stored is lost; one stored without a 200 (answered
// late, or with an error after the store) is not, since WeCom would retry
// it and the retry would be de-duplicated.
type Check struct {
	// Stored counts the run's callbacks found in the stream.
	Stored int
	// Missing are answered 200 but not stored: lost callbacks.
	Missing []string
	// Unconfirmed are stored but not answered 200.
	Unconfirmed int
}

// ErrLost: a callback answered 200 is not in the stream.
var ErrLost = errors.New("loadgen: callbacks answered 200 are not stored")

// Verify reads stream's messages stored since since (their Nats-Msg-Id is
// the record id) and compares them with res. It returns ErrLost, wrapped,
// if any callback answered 200 is missing.
func Verify(ctx context.Context, js jetstream.JetStream, stream string, since time.Time, res *Result) (*Check, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("check: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("check: stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	stored := map[string]struct{}{}
	if info.State.Msgs > 0 {
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
		})
		if err != nil {
			return nil, fmt.Errorf("check: read stream %s: %w", stream, err)
		}
	read:
		for {
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				return nil, fmt.Errorf("check: read stream %s: %w", stream, err)
			}
			n := 0
			for msg := range batch.Messages() {
				n++
				id := msg.Headers().Get(jetstream.MsgIDHeader)
				if _, ours := res.All[id]; ours {
					stored[id] = struct{}{}
				}
				meta, err := msg.Metadata()
				if err != nil {
					return nil, fmt.Errorf("check: read stream %s: %w", stream, err)
				}
				if meta.Sequence.Stream >= last {
					break read
				}
			}
			if err := batch.Error(); err != nil {
				return nil, fmt.Errorf("check: read stream %s: %w", stream, err)
			}
			if n == 0 {
				// Nothing since the start time, or the tail was removed
				// by the stream's limits meanwhile.
				break
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	c := &Check{Stored: len(stored)}
	for id := range res.OK {
		if _, ok := stored[id]; !ok {
			c.Missing = append(c.Missing, id)
		}
	}
	for id := range stored {
		if _, ok := res.OK[id]; !ok {
			c.Unconfirmed++
		}
	}
	if len(c.Missing) > 0 {
		return c, fmt.Errorf("%w: %d of %d", ErrLost, len(c.Missing), len(res.OK))
	}
	return c, nil
}
