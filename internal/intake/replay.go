package intake

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
)

// HeaderReplayOf marks a record Restore stored again: it holds the sequence
// of the dead letter it came from, which the consumer removes
// (DeadLetterWriter.Replayed) once the record has ended again.
const HeaderReplayOf = "Wecom-Replay-Of"

// Restore stores a callback record again, byte for byte as it was stored
// before (a dead letter keeps it so), under msgID rather than the callback's
// ID: within the duplicate window the original ID would be acked as a
// duplicate and never handled. A caller that gives the same msgID for the
// same replay (the dead letter's sequence, say) makes a repeated replay one
// record. deadLetterSeq, when not 0, is the dead letter the record comes
// from: the consumer removes it once the record is handled or dead again,
// so the replay needs no right to delete dead letters itself. Errors wrap
// ErrInvalidRecord for a record that is not a callback Store would file, and
// otherwise the client's or server's error.
func (s *Store) Restore(ctx context.Context, record []byte, msgID string, deadLetterSeq uint64) error {
	var cb wecomhit.Callback
	if err := json.Unmarshal(record, &cb); err != nil {
		return fmt.Errorf("intake: restore callback: %w: not a callback record", ErrInvalidRecord)
	}
	if err := checkRecord(&cb); err != nil {
		return fmt.Errorf("intake: restore callback: %w", err)
	}
	if msgID == "" || !isHeaderValue(msgID) {
		return fmt.Errorf("intake: restore callback: %w: message id empty or with control characters", ErrInvalidRecord)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, storeTimeout)
		defer cancel()
	}
	// A Nats-Msg-Id whichever way the Store keeps callback ids: replays of
	// one dead letter by any process then meet in the server's map
	// (dedup.go), and they are few.
	msg := &nats.Msg{Subject: s.subject(&cb), Header: s.header(jetstream.MsgIDHeader, []string{msgID}), Data: record}
	if deadLetterSeq > 0 {
		msg.Header.Set(HeaderReplayOf, strconv.FormatUint(deadLetterSeq, 10))
	}
	// Through the same retrying publish as Store, so a replay rides out a
	// leader election too.
	if _, err := broker.PublishRetry(ctx, s.js, msg); err != nil {
		return fmt.Errorf("intake: restore callback: %w", err)
	}
	return nil
}
