package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Retry pacing for a stream that does not answer. A leader election
// leaves the stream without a leader for seconds; nats.go's own retries
// (2 x 250ms) give up long before a caller's deadline.
const (
	publishFirstBackoff = 25 * time.Millisecond
	publishMaxBackoff   = 250 * time.Millisecond
	// publishMinAttempt is the least time one attempt waits for its ack
	// before it is sent again (the last attempt gets whatever is left).
	publishMinAttempt = 750 * time.Millisecond
)

// noRetries turns nats.go's own retries off. Built once: PublishRetry is
// on the callback's hot path. A PublishOpt only sets the options it is
// applied to, so sharing it is safe.
var noRetries = jetstream.WithRetryAttempts(0)

// PublishRetry publishes msg with opts and waits for its ack until ctx
// ends, trying again while the stream cannot answer:
//   - no one answers at once (no responders, a cluster temporarily
//     unavailable: Transient): after a short back-off;
//   - no answer comes within half the time left (at least 750ms): at once.
//     During a partition the servers still route the message to a leader
//     that was cut off, and its answer never comes; the retry reaches the
//     newly elected leader.
//
// nats.go's own retries are off (they stop after a fixed count, not at the
// caller's deadline). Every attempt sends the same message, so with a
// Nats-Msg-Id (jetstream.WithMsgID, or the header) a record that reaches
// the stream twice is stored once (the second ack says Duplicate). Other
// errors are returned at once. When ctx ends, the error is ctx's, with the
// last real error if there was one.
func PublishRetry(ctx context.Context, js jetstream.Publisher, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return publishRetry(ctx, js, msg, true, opts)
}

// PublishAwait is PublishRetry for a message without a Nats-Msg-Id on an
// in-process server: it tries again while the stream cannot answer
// (Transient), but an attempt waits for its answer until ctx ends rather
// than send the message again. A second copy would be a second record,
// and an in-process server has no partition a copy could route around:
// an answer that is late is still coming. Give ctx a deadline: without
// one, nats.go waits its default 5 s, and PublishAwait returns that
// timeout rather than send again.
func PublishAwait(ctx context.Context, js jetstream.Publisher, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return publishRetry(ctx, js, msg, false, opts)
}

// publishRetry is PublishRetry, and with resend false PublishAwait.
func publishRetry(ctx context.Context, js jetstream.Publisher, msg *nats.Msg, resend bool, opts []jetstream.PublishOpt) (*jetstream.PubAck, error) {
	// A copy rather than an append to opts, which would let the caller's
	// variadic slice escape too: one allocation per publish, not two.
	all := make([]jetstream.PublishOpt, len(opts)+1)
	copy(all, opts)
	all[len(opts)] = noRetries
	backoff := publishFirstBackoff
	var last error // the last error that was not an attempt's timeout
	for {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if resend {
			actx, cancel = attemptContext(ctx)
		}
		ack, err := js.PublishMsg(actx, msg, all...)
		cancel()
		switch {
		case err == nil:
			return ack, nil
		case ctx.Err() != nil:
			if last != nil {
				return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
			}
			return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
		case errors.Is(err, context.DeadlineExceeded) && !resend:
			// ctx has no deadline, and nats.go gave the publish its
			// default wait: sending again could store a second copy.
			return nil, err
		case errors.Is(err, context.DeadlineExceeded):
			continue // the attempt's own timeout: no answer, ask again
		case !Transient(err):
			return nil, err
		}
		last = err
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
		case <-t.C:
		}
		backoff = min(2*backoff, publishMaxBackoff)
	}
}

// attemptContext bounds one publish attempt: half the time ctx has left,
// but at least publishMinAttempt, and never past ctx's deadline.
func attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, max(time.Until(dl)/2, publishMinAttempt))
}
