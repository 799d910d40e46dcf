package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
)

// Handler acts on one stored callback. Returning nil acks the record; an
// error wrapping ErrPermanent terminates it (it is never delivered again);
// any other error has it delivered again after a back-off, to this replica
// or another. Handle may take long: the record is kept alive meanwhile.
type Handler interface {
	Handle(ctx context.Context, cb *wecomhit.Callback) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, cb *wecomhit.Callback) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, cb *wecomhit.Callback) error { return f(ctx, cb) }

// pullBuffer caps the records fetched ahead of the handlers.
const pullBuffer = 8

// ErrPermanent marks a handler error that retrying cannot fix.
var ErrPermanent = errors.New("intake: permanent failure")

// ConsumerOptions tunes Consume. Zero values take the defaults.
type ConsumerOptions struct {
	// Durable is the consumer's name, shared by every replica so each record
	// goes to one of them. Default "receiver".
	Durable string
	// AckWait is how long a delivered record may go without an ack or a
	// heartbeat before it is delivered again. Default 30s.
	AckWait time.Duration
	// MaxInFlight bounds the records being handled at once by this replica.
	// Default 64.
	MaxInFlight int
	// Backoff lists the delays before each redelivery after a failure; the
	// last repeats. Default 1s, 5s, 15s, 30s, 60s.
	Backoff []time.Duration
}

func (o *ConsumerOptions) defaults() {
	if o.Durable == "" {
		o.Durable = "receiver"
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
	}
	if len(o.Backoff) == 0 {
		o.Backoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute}
	}
}

// Consume delivers stored callbacks to h until ctx is cancelled, then stops
// pulling, waits for the handlers it started (their ctx is cancelled too; a
// record they do not finish is delivered again later) and returns nil. It
// creates or updates the durable consumer first; that error is returned.
func (s *Store) Consume(ctx context.Context, h Handler, log zerolog.Logger, opts ConsumerOptions) error {
	opts.defaults()
	log = log.With().Str("component", "intake").Str("consumer", opts.Durable).Logger()
	cons, err := s.js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       opts.Durable,
		Description:   "hands stored WeCom callbacks to the fetcher",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxAckPending: opts.MaxInFlight * 4,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: s.subjectPrefix + ">",
	})
	if err != nil {
		return fmt.Errorf("intake: consumer %s: %w", opts.Durable, err)
	}
	// A small pull buffer: a record waiting in it gets no heartbeat, so it
	// must not wait long for a free handler.
	iter, err := cons.Messages(jetstream.PullMaxMessages(min(opts.MaxInFlight, pullBuffer)))
	if err != nil {
		return fmt.Errorf("intake: consume %s: %w", opts.Durable, err)
	}
	// Messages blocks in Next; stopping the iterator is what unblocks it.
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		iter.Stop()
	}()
	defer close(stopped)

	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, opts.MaxInFlight)
	)
	defer wg.Wait()
	for {
		// Take a handler slot before the next record, so a record is only
		// taken off the buffer when it can be handled (and heartbeated) now.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		msg, err := iter.Next()
		if err != nil {
			<-sem
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			log.Warn().Err(err).Msg("pull failed; retrying")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.handle(ctx, msg, h, log, opts)
		}()
	}
}

// handle runs h on one message, keeping it alive with heartbeats, and acks,
// naks with back-off, or terminates it.
func (s *Store) handle(ctx context.Context, msg jetstream.Msg, h Handler, log zerolog.Logger, opts ConsumerOptions) {
	var cb wecomhit.Callback
	if err := json.Unmarshal(msg.Data(), &cb); err != nil {
		log.Error().Str("subject", msg.Subject()).Msg("callback record is not JSON; terminated")
		_ = msg.Term()
		s.opts.Metrics.countHandled(wecomhit.KindUnknown, ResultTerminate)
		return
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(opts.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	err := h.Handle(ctx, &cb)
	close(done)

	ev := log.With().Str("app", cb.App).Str("kind", string(cb.Kind)).Str("callback_id", cb.ID).Logger()
	switch {
	case err == nil:
		if aerr := msg.Ack(); aerr != nil {
			ev.Warn().Err(aerr).Msg("ack failed; the callback will be handled again")
		}
		s.opts.Metrics.countHandled(cb.Kind, ResultAck)
	case errors.Is(err, ErrPermanent):
		ev.Error().Err(err).Msg("callback failed for good; terminated")
		_ = msg.Term()
		s.opts.Metrics.countHandled(cb.Kind, ResultTerminate)
	default:
		delay := opts.Backoff[len(opts.Backoff)-1]
		if md, merr := msg.Metadata(); merr == nil && int(md.NumDelivered) <= len(opts.Backoff) {
			delay = opts.Backoff[md.NumDelivered-1]
		}
		if ctx.Err() != nil {
			delay = 0 // shutting down: let another replica take it now
		}
		ev.Warn().Err(err).Dur("retry_in", delay).Msg("callback not handled; will retry")
		_ = msg.NakWithDelay(delay)
		s.opts.Metrics.countHandled(cb.Kind, ResultRetry)
	}
}

// Backlog is how many stored callbacks the shared consumer has not handed
// out yet, and how many are being handled (delivered, not yet acked).
type Backlog struct {
	Pending  uint64
	Handling int
}

// ReadBacklog reads the consumer's backlog from the server, for status
// reports. A consumer that does not exist yet reads as empty.
func ReadBacklog(ctx context.Context, js jetstream.JetStream, durable string) (Backlog, error) {
	if durable == "" {
		durable = "receiver"
	}
	c, err := js.Consumer(ctx, StreamName, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return Backlog{}, nil
	}
	if err != nil {
		return Backlog{}, fmt.Errorf("intake: consumer %s: %w", durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return Backlog{}, fmt.Errorf("intake: consumer %s: %w", durable, err)
	}
	return Backlog{Pending: info.NumPending, Handling: info.NumAckPending}, nil
}
