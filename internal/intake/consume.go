package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
)

// Handler acts on one stored callback. Returning nil acks the record. An
// error wrapping ErrPermanent (see Reject) has it written to the dead-letter
// stream at once, with its reason, and terminated. Any other error has it
// delivered again after a back-off, to this replica or another, until
// ConsumerOptions.MaxDeliver deliveries have failed: then it is a dead
// letter with reason max_deliveries. Handle may take long: the record is
// kept alive meanwhile.
type Handler interface {
	Handle(ctx context.Context, cb *wecomhit.Callback) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, cb *wecomhit.Callback) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, cb *wecomhit.Callback) error { return f(ctx, cb) }

// DeadLetterWriter keeps the records the consumer gives up on:
// *deadletter.Stream.
type DeadLetterWriter interface {
	// Write stores dl under an id that makes a second write of the same
	// dead letter a duplicate.
	Write(ctx context.Context, dl *wecomhit.DeadLetter, id string) error
	// Replayed removes dead letter seq, whose record (callbackID) was
	// replayed (Restore) and has now ended again: handled, or dead anew
	// under a new sequence. A dead letter that is gone, or holds another
	// callback, is left alone and is not an error.
	Replayed(ctx context.Context, seq uint64, callbackID string) error
}

// ErrPermanent marks a handler error that retrying cannot fix: the record
// becomes a dead letter at once, with reason wecomhit.ReasonPermanent
// unless Reject gave another.
var ErrPermanent = errors.New("intake: permanent failure")

// Reject returns an error that makes the record a dead letter at once with
// reason (one of the wecomhit.Reason constants). It wraps ErrPermanent and
// err, whose text becomes the dead letter's error and so must hold no
// secret.
func Reject(reason string, err error) error { return &rejectError{reason: reason, err: err} }

type rejectError struct {
	reason string
	err    error
}

func (e *rejectError) Error() string   { return e.reason + ": " + e.err.Error() }
func (e *rejectError) Unwrap() []error { return []error{ErrPermanent, e.err} }

// Defaults for ConsumerOptions left zero.
const (
	DefaultDurable     = "receiver"
	DefaultAckWait     = 30 * time.Second
	DefaultMaxInFlight = 64
	// DefaultMaxDeliver with DefaultBackoff gives a failing callback about
	// ten minutes of retries: as long as the hit token it carries lives.
	// After that a retry could only fetch without a token, which the
	// periodic poll does anyway.
	DefaultMaxDeliver = 10
)

// DefaultBackoff is the delay before each redelivery after a failure; the
// last repeats.
var DefaultBackoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute}

const (
	// pullWait is how long one pull request waits for records. Short, so
	// slots that free up meanwhile are offered to the server soon.
	pullWait = 5 * time.Second
	// serverExtraDeliveries: the server's MaxDeliver exceeds ours by this
	// many, so that a record whose dead letter could not be written on its
	// last delivery comes back for another try rather than being dropped.
	serverExtraDeliveries = 5
	// deadLetterTimeout bounds a dead-letter write, also during shutdown.
	deadLetterTimeout = 5 * time.Second
)

// errNoDeadLetters: without a place for dead letters, the consumer could
// only drop what it gives up on, or retry it forever.
var errNoDeadLetters = fmt.Errorf("%w: ConsumerOptions.DeadLetters is required", ErrInvalidOption)

// ConsumerOptions tunes Consume. Zero values take the defaults.
type ConsumerOptions struct {
	// Durable is the consumer's name, shared by every replica so each record
	// goes to one of them. Default DefaultDurable.
	Durable string
	// Kinds are the callback kinds this consumer takes; empty takes all.
	// Separate consumers for separate kinds keep one kind's failures from
	// taking the slots another needs.
	Kinds []wecomhit.Kind
	// LatestOnly makes a consumer that does not exist yet start from the
	// newest record of each subject (of each app and kind) rather than the
	// oldest: for suite tickets, where only the newest counts. An existing
	// consumer keeps its position.
	LatestOnly bool
	// AckWait is how long a delivered record may go without an ack or a
	// heartbeat before it is delivered again. Default DefaultAckWait.
	AckWait time.Duration
	// MaxInFlight bounds the records being handled at once by this replica;
	// no record is taken from the server before a slot is free for it.
	// Default DefaultMaxInFlight.
	MaxInFlight int
	// MaxDeliver is how many deliveries may fail before the record becomes
	// a dead letter. Default DefaultMaxDeliver.
	MaxDeliver int
	// Backoff lists the delays before each redelivery after a failure; the
	// last repeats. Default DefaultBackoff.
	Backoff []time.Duration
	// DeadLetters stores what the consumer gives up on. Required.
	DeadLetters DeadLetterWriter
}

func (o *ConsumerOptions) defaults() {
	if o.Durable == "" {
		o.Durable = DefaultDurable
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = DefaultMaxDeliver
	}
	if len(o.Backoff) == 0 {
		o.Backoff = DefaultBackoff
	}
}

// consumerConfig is the durable consumer for opts. Existing consumers of the
// same name are updated to it (an older "receiver" took every kind with
// FilterSubject <prefix>.callback.>; it keeps its position).
func (s *Store) consumerConfig(opts ConsumerOptions) (jetstream.ConsumerConfig, error) {
	filters := []string{s.subjectPrefix + ">"}
	if len(opts.Kinds) > 0 {
		filters = filters[:0]
		for _, k := range opts.Kinds {
			if !isToken(string(k)) {
				return jetstream.ConsumerConfig{}, fmt.Errorf("%w: kind %q", ErrInvalidOption, k)
			}
			filters = append(filters, s.subjectPrefix+"*."+string(k))
		}
	}
	deliver := jetstream.DeliverAllPolicy
	if opts.LatestOnly {
		deliver = jetstream.DeliverLastPerSubjectPolicy
	}
	return jetstream.ConsumerConfig{
		Durable:        opts.Durable,
		Description:    "hands stored WeCom callbacks to the receiver: " + strings.Join(filters, " "),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        opts.AckWait,
		MaxDeliver:     opts.MaxDeliver + serverExtraDeliveries,
		MaxAckPending:  opts.MaxInFlight * 4,
		DeliverPolicy:  deliver,
		FilterSubjects: filters,
	}, nil
}

// setupConsumer creates the consumer or updates it. Where it starts
// (DeliverPolicy and its start sequence) cannot change on an existing
// consumer; an existing one keeps what it has, such as the start sequence
// of one Consume created again (resumeConfig).
func (s *Store) setupConsumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if c, err := s.js.Consumer(ctx, StreamName, cfg.Durable); err == nil {
		have := c.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq = have.DeliverPolicy, have.OptStartSeq
	}
	return s.js.CreateOrUpdateConsumer(ctx, StreamName, cfg)
}

// defaultFloorEvery is how often Consume reads its consumer's ack floor
// (askConsumer): one request per consumer that often, and what a consumer
// created again may deliver a second time is at most that much of its
// handling.
const defaultFloorEvery = 30 * time.Second

// ackMark is where a bound consumer had got to when Consume last asked:
// its ack floor, every record up to which is handled, and when that
// consumer was created, which tells a stream deleted and created again
// since (its sequences start over) from the one the floor counts in.
type ackMark struct {
	floor   uint64
	created time.Time
}

// askConsumer asks the server, within 2 s, where cons has got to: ok when
// it has acked anything, gone when it, or its stream, no longer exists.
// Any other failure (NATS slow or away) is neither: the caller keeps its
// last mark and pulls again.
func askConsumer(ctx context.Context, cons jetstream.Consumer) (m ackMark, ok, gone bool) {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		return ackMark{}, false, errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
	}
	if info.AckFloor.Stream == 0 {
		return ackMark{}, false, false
	}
	return ackMark{floor: info.AckFloor.Stream, created: info.Created}, true, false
}

// resumeConfig is cfg for creating again a consumer that went missing
// while bound at mark: it starts just after mark's ack floor, so that what
// was handled before is not delivered again. The records handled since
// the mark was read (at most floorEvery's worth) come again, which
// handlers take idempotently. It is cfg unchanged (start as a new
// consumer) without a mark, for a LatestOnly consumer (the newest of each
// subject is already the right start), and when the stream is not the one
// the mark counts in: created after the old consumer, or holding fewer
// records than its floor, since starting there would skip records never
// handled.
func (s *Store) resumeConfig(ctx context.Context, cfg jetstream.ConsumerConfig, mark ackMark) jetstream.ConsumerConfig {
	if mark.floor == 0 || cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		return cfg
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stream, err := s.js.Stream(ictx, StreamName)
	if err != nil {
		return cfg
	}
	info := stream.CachedInfo()
	// Created catches a stream deleted and made again by this service;
	// LastSeq one whose creation time says nothing of its sequences (a
	// stream restored from an older backup, or made by hand with an old
	// time), which the creation time alone would let through.
	if info.Created.After(mark.created) || info.State.LastSeq < mark.floor {
		return cfg
	}
	cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, mark.floor+1
	return cfg
}

// bindConsumer creates (or updates) the durable consumer, trying again
// until it succeeds or ctx ends. A replica whose consumer creation fails
// once (a timeout while a cluster elects, a stream being reloaded after a
// full disk) must not go on serving callbacks it never handles: it keeps
// trying, and says so in the log, first at once, then every fifth try,
// and in the gauge intake_consumer_bound (Consume).
//
// Errors that look permanent (the account's consumer limit, a permission
// the server refuses, a filter the stream will not take) are retried too,
// at most twice a minute: each is fixed in NATS, not here, and a replica
// that keeps trying picks the consumer up once an operator has, with no
// restart. Giving up instead would leave the process running, and
// answering success, with nothing left that tries.
//
// mark, when known, is where the consumer had got to before it went
// missing: one created again starts after it (resumeConfig).
func (s *Store) bindConsumer(ctx context.Context, cfg jetstream.ConsumerConfig, mark ackMark, log zerolog.Logger) (jetstream.Consumer, error) {
	backoff := bindFirstBackoff
	for attempt := 1; ; attempt++ {
		cons, err := s.setupConsumer(ctx, s.resumeConfig(ctx, cfg, mark))
		if err == nil {
			if attempt > 1 {
				log.Info().Int("attempts", attempt).Msg("intake consumer created")
			}
			return cons, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt == 1 || attempt%5 == 0 {
			log.Warn().Err(err).Int("attempt", attempt).Msg("intake consumer not created; retrying")
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, bindMaxBackoff)
	}
}

// The pace of bindConsumer's tries: quick at first, for a cluster that is
// still electing, then no more than twice a minute.
const (
	bindFirstBackoff = 500 * time.Millisecond
	bindMaxBackoff   = 30 * time.Second
)

// Consume delivers stored callbacks to h until ctx is cancelled, then stops
// pulling, waits for the handlers it started (their ctx is cancelled too; a
// record they do not finish is delivered again later) and returns nil. It
// creates or updates the durable consumer first, trying until it can
// (bindConsumer), and creates it again if it disappears meanwhile (deleted
// by an operator, or with its stream), starting after the last ack floor
// it read of it (resumeConfig); only an invalid ConsumerOptions is
// returned as an error.
//
// The gauge intake_consumer_bound{consumer} (Metrics) is 1 while it pulls
// and 0 otherwise. Being unbound does not fail the replica's readiness:
// the durable is shared, so another replica may be handling every record
// this one stores, and when none can (a cause in NATS that every replica
// meets), refusing callbacks would only have WeCom retry and then drop
// them, where a stored callback waits, answered, until the consumer is
// back. The gauge, and the status reason intake_unbound when the durable
// is missing altogether, are what say so.
func (s *Store) Consume(ctx context.Context, h Handler, opts ConsumerOptions) error {
	opts.defaults()
	if opts.DeadLetters == nil {
		return errNoDeadLetters
	}
	log := s.opts.log.With().Str("component", "intake").Str("consumer", opts.Durable).Logger()
	cfg, err := s.consumerConfig(opts)
	if err != nil {
		return fmt.Errorf("intake: consumer %s: %w", opts.Durable, err)
	}
	bound := func(b bool) { s.opts.metrics.setBound(opts.Durable, b) }
	bound(false)
	defer bound(false)
	cons, err := s.bindConsumer(ctx, cfg, ackMark{}, log)
	if err != nil {
		return nil // ctx ended before the consumer could be made
	}
	bound(true)
	// mark is where cons had got to when last asked (every floorEvery,
	// between pulls): a consumer created again starts there rather than
	// delivering again every record still stored.
	var (
		mark   ackMark
		markAt = time.Now()
	)

	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, opts.MaxInFlight)
	)
	defer wg.Wait()
	failures := 0
	for {
		// Take the free handler slots, at least one, and pull exactly that
		// many records. A record is never held in a client-side buffer
		// without a handler: such a record gets no heartbeat, and a full
		// buffer makes nats.go drop the server's status messages (slow
		// consumer), after which its pull accounting believes requests are
		// outstanding and it stops asking until its missing-heartbeat timer
		// fires, about 30 s later (issue 8, item 7). Fetch reads its whole
		// answer at once, so nothing is dropped.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	take:
		for n < opts.MaxInFlight {
			select {
			case sem <- struct{}{}:
				n++
			default:
				break take
			}
		}
		got, err := s.pull(ctx, cons, n, func(msg jetstream.Msg) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.handle(ctx, msg, h, log, opts)
			}()
		})
		for range n - got {
			<-sem
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			if failures == 1 || failures%60 == 0 {
				log.Warn().Err(err).Int("failures", failures).Msg("pull failed; retrying")
			}
			// Pulling from a consumer that no longer exists fails for
			// ever; only creating it again ends that. Asked every fifth
			// failure, not at each: while NATS is away, each ask costs a
			// request and up to its timeout before the next pull. A
			// consumer still there gives a fresher mark on the way.
			gone := false
			if failures%5 == 0 {
				var m ackMark
				var ok bool
				if m, ok, gone = askConsumer(ctx, cons); ok {
					mark, markAt = m, time.Now()
				}
			}
			if gone {
				bound(false)
				log.Warn().Msg("intake consumer is gone; creating it again")
				if cons, err = s.bindConsumer(ctx, cfg, mark, log); err != nil {
					return nil
				}
				bound(true)
				// Where it starts: after the ack floor (this replica's, or
				// another's that created it first), else as a new one.
				ev := log.Info()
				if c := cons.CachedInfo().Config; c.DeliverPolicy == jetstream.DeliverByStartSequencePolicy {
					ev = ev.Uint64("start_seq", c.OptStartSeq)
				} else {
					ev = ev.Str("deliver", c.DeliverPolicy.String())
				}
				ev.Msg("intake consumer created again")
				// mark stays: the new consumer starts after it, so it is
				// still true until the next read.
				failures = 0
				continue
			}
			select {
			case <-time.After(min(time.Duration(failures)*100*time.Millisecond, 5*time.Second)):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if failures > 0 {
			log.Info().Int("failures", failures).Msg("pulling again")
			failures = 0
		}
		if time.Since(markAt) >= s.opts.floorEvery {
			if m, ok, _ := askConsumer(ctx, cons); ok {
				mark = m
				log.Debug().Uint64("ack_floor", m.floor).Msg("intake consumer's ack floor read")
			}
			markAt = time.Now()
		}
	}
}

// pull asks for up to n records, waiting up to pullWait, and passes each to
// start as it arrives. It returns how many it passed.
func (s *Store) pull(ctx context.Context, cons jetstream.Consumer, n int, start func(jetstream.Msg)) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, pullWait)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		start(msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return got, err
	}
	return got, nil
}

// handle runs h on one message, keeping it alive with heartbeats, and acks,
// naks with back-off, or dead-letters and terminates it.
func (s *Store) handle(ctx context.Context, msg jetstream.Msg, h Handler, log zerolog.Logger, opts ConsumerOptions) {
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to ack or terminate.
		log.Error().Err(err).Msg("delivery without metadata; ignored")
		return
	}
	deliveries := int(md.NumDelivered)
	var cb wecomhit.Callback
	if err := json.Unmarshal(msg.Data(), &cb); err != nil || checkRecord(&cb) != nil {
		app, kind := s.subjectParts(msg.Subject())
		reason := "not JSON"
		if err == nil {
			reason = checkRecord(&cb).Error()
		}
		record, _ := json.Marshal(string(msg.Data()))
		s.bury(ctx, msg, log, nil, &wecomhit.DeadLetter{
			Kind: wecomhit.DeadLetterCallback, Reason: wecomhit.ReasonBadRecord,
			Error: "callback record cannot be read: " + reason, App: app, CallbackKind: kind,
			Deliveries: deliveries, Record: record,
		}, md.Sequence.Stream, opts)
		return
	}
	if deliveries > opts.MaxDeliver {
		// The last allowed delivery failed and so did writing its dead
		// letter; don't run the handler again, just try the write again.
		s.bury(ctx, msg, log, &cb, callbackLetter(&cb, msg, wecomhit.ReasonMaxDeliveries,
			fmt.Sprintf("handling failed on %d deliveries", opts.MaxDeliver), deliveries), md.Sequence.Stream, opts)
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
	err = h.Handle(ctx, &cb)
	close(done)

	ev := log.With().Str("app", cb.App).Str("kind", string(cb.Kind)).Str("callback_id", cb.ID).Logger()
	var rej *rejectError
	switch {
	case err == nil:
		if aerr := msg.Ack(); aerr != nil {
			ev.Warn().Err(aerr).Msg("ack failed; the callback will be handled again")
		}
		s.opts.metrics.countHandled(cb.Kind, ResultAck)
		s.replayed(ctx, msg, &cb, ev, opts)
	case errors.As(err, &rej):
		s.bury(ctx, msg, ev, &cb, callbackLetter(&cb, msg, rej.reason, rej.err.Error(), deliveries), md.Sequence.Stream, opts)
	case errors.Is(err, ErrPermanent):
		s.bury(ctx, msg, ev, &cb, callbackLetter(&cb, msg, wecomhit.ReasonPermanent, err.Error(), deliveries), md.Sequence.Stream, opts)
	case deliveries >= opts.MaxDeliver:
		// The last delivery, also when shutting down: a nak now would not be
		// delivered again.
		s.bury(ctx, msg, ev, &cb, callbackLetter(&cb, msg, wecomhit.ReasonMaxDeliveries, err.Error(), deliveries), md.Sequence.Stream, opts)
	default:
		delay := opts.Backoff[min(deliveries, len(opts.Backoff))-1]
		if ctx.Err() != nil {
			delay = 0 // shutting down: let another replica take it now
		}
		ev.Warn().Err(err).Dur("retry_in", delay).Int("delivery", deliveries).Msg("callback not handled; will retry")
		_ = msg.NakWithDelay(delay)
		s.opts.metrics.countHandled(cb.Kind, ResultRetry)
	}
}

// callbackLetter is the dead letter of a stored callback: the record as
// stored, so it can be replayed.
func callbackLetter(cb *wecomhit.Callback, msg jetstream.Msg, reason, text string, deliveries int) *wecomhit.DeadLetter {
	return &wecomhit.DeadLetter{
		Kind: wecomhit.DeadLetterCallback, Reason: reason, Error: text,
		App: cb.App, CorpID: cb.CorpID, CallbackKind: cb.Kind,
		Deliveries: deliveries, Record: msg.Data(),
	}
}

// bury writes dl and then terminates msg. If the write fails the record is
// nak'd instead, so it comes back and nothing is lost. The write's id is the
// record's stream sequence: a record buried twice (the term was lost) is
// stored once, and a replayed record, stored anew, gets a dead letter of its
// own.
//
// cb is the decoded record, nil when it could not be decoded.
func (s *Store) bury(ctx context.Context, msg jetstream.Msg, log zerolog.Logger, cb *wecomhit.Callback, dl *wecomhit.DeadLetter, seq uint64, opts ConsumerOptions) {
	// Shutdown must not stop a write that decides the record's fate.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
	defer cancel()
	dl.DeadAt = time.Now()
	id := "callback:" + strconv.FormatUint(seq, 10)
	if err := opts.DeadLetters.Write(wctx, dl, id); err != nil {
		delay := opts.Backoff[0]
		log.Error().Err(err).Str("reason", dl.Reason).Msg("dead letter not written; the callback will come back")
		_ = msg.NakWithDelay(delay)
		s.opts.metrics.countHandled(dl.CallbackKind, ResultRetry)
		return
	}
	log.Warn().Str("reason", dl.Reason).Str("error", dl.Error).Int("deliveries", dl.Deliveries).
		Uint64("seq", seq).Msg("callback dead-lettered")
	if err := msg.TermWithReason(dl.Reason); err != nil {
		log.Warn().Err(err).Msg("terminate failed; the callback will be dead-lettered again (once)")
	}
	s.opts.metrics.countHandled(dl.CallbackKind, ResultTerminate)
	s.opts.metrics.countDeadLettered(dl.App, dl.CallbackKind, dl.Reason)
	if cb != nil {
		s.replayed(ctx, msg, cb, log, opts)
	}
}

// replayed removes the dead letter a replayed record came from, now that
// the record has ended again. A failure leaves the dead letter listed; a
// second replay of it stores nothing new within the duplicate window.
func (s *Store) replayed(ctx context.Context, msg jetstream.Msg, cb *wecomhit.Callback, log zerolog.Logger, opts ConsumerOptions) {
	v := msg.Headers().Get(HeaderReplayOf)
	if v == "" {
		return
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil || seq == 0 {
		log.Warn().Str("header", HeaderReplayOf).Msg("replayed record names no dead letter")
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadLetterTimeout)
	defer cancel()
	if err := opts.DeadLetters.Replayed(wctx, seq, cb.ID); err != nil {
		log.Warn().Err(err).Uint64("dead_letter", seq).Msg("replayed; its dead letter could not be removed")
	}
}

// subjectParts reads app and kind back from <prefix>.callback.<app>.<kind>.
func (s *Store) subjectParts(subject string) (string, wecomhit.Kind) {
	rest, ok := strings.CutPrefix(subject, s.subjectPrefix)
	if !ok {
		return "", wecomhit.KindUnknown
	}
	app, kind, _ := strings.Cut(rest, ".")
	return app, wecomhit.Kind(kind)
}
