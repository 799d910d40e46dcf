package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeleteMatching deletes, with SecureDeleteMsg (the bytes are overwritten,
// not only unlinked), every message of s on subjects matching filter whose
// data match says yes to. It reads the messages that were in the stream
// when it began, with an ordered consumer, and returns how many it deleted.
//
// It is a scan: its cost is the bytes stored under filter. It is for rare
// deletions that no subject can express (a corp's records stored under
// subjects that name only the app and kind).
func DeleteMatching(ctx context.Context, s jetstream.Stream, filter string, match func(data []byte) bool) (int, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("broker: scan %s: %w", filter, err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	last := info.State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return 0, fmt.Errorf("broker: scan %s: %w", filter, err)
	}
	var seqs []uint64
scan:
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return 0, fmt.Errorf("broker: scan %s: %w", filter, err)
		}
		n := 0
		done := false
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > last {
				done = true
				continue
			}
			if match(m.Data()) {
				seqs = append(seqs, md.Sequence.Stream)
			}
			if md.NumPending == 0 || md.Sequence.Stream == last {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return 0, fmt.Errorf("broker: scan %s: %w", filter, err)
		}
		if n == 0 || done {
			break scan
		}
	}
	deleted := 0
	for _, seq := range seqs {
		err := s.SecureDeleteMsg(ctx, seq)
		if gone(err) {
			continue // aged out, or deleted meanwhile (by another replica)
		}
		if err != nil {
			return deleted, fmt.Errorf("broker: delete message %d: %w", seq, err)
		}
		deleted++
	}
	return deleted, nil
}

// JetStream error codes of a message that is not there (any more).
const (
	errCodeMsgNotFound      = 10037
	errCodeSequenceNotFound = 10043
)

// gone reports whether err says the message is not there.
func gone(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeMsgNotFound || apiErr.ErrorCode == errCodeSequenceNotFound)
}
