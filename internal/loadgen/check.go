package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/intake"
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

// NextSeq is the sequence the stream's next message will get: take it
// before a run and pass it to Verify.
func NextSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("check: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("check: stream %s: %w", stream, err)
	}
	return info.State.LastSeq + 1, nil
}

// Verify reads the stream's messages from sequence from on (their record
// id is intake.RecordID's: the receiver's own header, or a Nats-Msg-Id)
// and compares them with res. It returns
// ErrLost, wrapped, if any callback answered 200 is missing.
//
// It reads message by message (STREAM.MSG.GET, several in flight) rather
// than through a consumer: the receiver's operator role may read the
// callback stream but not create consumers on it.
func Verify(ctx context.Context, js jetstream.JetStream, stream string, from uint64, res *Result) (*Check, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("check: stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("check: stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	from = max(from, info.State.FirstSeq)
	const readers = 32
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		stored  = map[string]struct{}{}
		firstEr error
		seqs    = make(chan uint64)
		wg      sync.WaitGroup
	)
	for range readers {
		wg.Go(func() {
			for seq := range seqs {
				msg, err := s.GetMsg(ctx, seq)
				if errors.Is(err, jetstream.ErrMsgNotFound) {
					continue // removed meanwhile by the stream's limits
				}
				mu.Lock()
				if err != nil {
					if firstEr == nil {
						firstEr = fmt.Errorf("check: read %s #%d: %w", stream, seq, err)
					}
					cancel()
				} else if id := intake.RecordID(msg.Header); hasKey(res.All, id) {
					stored[id] = struct{}{}
				}
				mu.Unlock()
			}
		})
	}
feed:
	for seq := from; seq <= last && last > 0; seq++ {
		select {
		case seqs <- seq:
		case <-ctx.Done():
			break feed
		}
	}
	close(seqs)
	wg.Wait()
	if firstEr != nil {
		return nil, firstEr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
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

func hasKey(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}
