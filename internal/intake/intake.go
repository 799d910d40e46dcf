// Package intake is the durable hand-over between the callback endpoint and
// the fetcher: it stores accepted callbacks in the WECOM_CALLBACKS JetStream
// stream, and hands them to a Handler through durable consumers that all
// receiver replicas share, acking each only once it has been handled. Every
// record ends: acked, retried with back-off up to a bound, or written to the
// dead-letter stream and terminated.
//
// It owns the stream's configuration, its subjects and its consumers, and
// with the embedded server the callback ids of its duplicate window
// (dedup.go). It does not verify, decrypt or classify callbacks (callback
// does), act on them (the handler wired in by cmd does) or keep dead
// letters (a DeadLetterWriter, package deadletter, does); the NATS
// connection comes from broker.
package intake

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
)

// StreamName is the stream holding accepted callbacks.
const StreamName = "WECOM_CALLBACKS"

// Defaults for options not given, or given as zero.
const (
	DefaultReplicas = 1
	// DefaultMaxAge keeps a callback for three days: room for a fetcher
	// outage over a weekend. Tokens inside expire after 10 minutes, but the
	// raw record stays useful for audit and replay.
	DefaultMaxAge = 72 * time.Hour
	// DefaultDuplicateWindow covers WeCom's retries of one callback (a few
	// within seconds) and our own retries after an unacked publish.
	DefaultDuplicateWindow = time.Hour
)

const (
	// storeTimeout bounds Store when ctx has no deadline. WeCom wants an
	// answer within seconds; past this the endpoint should fail and let
	// WeCom retry.
	storeTimeout = 3 * time.Second
	// readyTimeout bounds Ready when ctx has no deadline: a probe must not hang.
	readyTimeout = 2 * time.Second

	contentTypeHeader = "Content-Type"
	contentTypeJSON   = "application/json"
)

var (
	// ErrInvalidRecord: Store was given a callback it cannot file: no ID,
	// App or Kind, an App or Kind that is not a single subject token, or an
	// ID with control characters.
	ErrInvalidRecord = errors.New("intake: invalid record")
	// ErrInvalidOption: New found a bad prefix or option, or Consume a bad
	// ConsumerOptions value.
	ErrInvalidOption = errors.New("intake: invalid option")
	// ErrStoreFull: the stream or the JetStream store it lives on has no
	// room for the record. Nothing was stored; the caller should refuse
	// the callback so that WeCom retries it later. It has a StoreFull
	// method, so callers can recognise it without importing intake.
	ErrStoreFull error = storeFullError{}
)

type storeFullError struct{}

func (storeFullError) Error() string   { return "intake: store full" }
func (storeFullError) StoreFull() bool { return true }

// Subject is the subject a callback of app and kind is stored on:
// <prefix>.callback.<app>.<kind>.
func Subject(prefix, app string, kind wecomhit.Kind) string {
	// One allocation; this runs for every callback.
	return prefix + ".callback." + app + "." + string(kind)
}

// JetStream is the part of a JetStream context a Store uses: it publishes
// callbacks, manages its stream and its durable consumers. A
// jetstream.JetStream is one.
type JetStream interface {
	jetstream.Publisher
	jetstream.StreamManager
	jetstream.StreamConsumerManager
}

// Store files callbacks in the WECOM_CALLBACKS stream. It is safe for
// concurrent use.
type Store struct {
	js            JetStream
	prefix        string
	subjectPrefix string // prefix + ".callback.", so Store concatenates once
	opts          options

	// Built once rather than per call: Store is on the HTTP hot path.
	contentType  []string // never modified; shared by every message's header
	streamHeader []string // likewise, every message's Nats-Expected-Stream
	// outs holds *outgoing values for reuse: at thousands of callbacks a
	// second, what Store allocates per callback is what the collector
	// runs for (BENCHMARKS.md, "Store reuses its messages").
	outs sync.Pool

	// batch groups concurrent callbacks into fast batches (batch.go); nil
	// when batching is off.
	batch *batcher

	// idHeader is the header a record's id goes in: Nats-Msg-Id, for the
	// server to de-duplicate, or IDHeader with dedup set.
	idHeader string
	// dedup holds the ids stored within the duplicate window when the
	// Store keeps them itself (WithLocalDedup, dedup.go); nil otherwise.
	dedup *localDedup
}

// conner is what batching needs of a JetStream beyond JetStream: its
// connection, to publish a batch's messages and subscribe to their
// answers. A jetstream.JetStream has it.
type conner interface{ Conn() *nats.Conn }

// New returns a Store that files callbacks under prefix (one or more subject
// tokens, e.g. "wecom") on js. It does no I/O; call Setup before Store.
//
// Options and their defaults: WithReplicas (DefaultReplicas), WithMaxAge
// (DefaultMaxAge), WithDuplicateWindow (DefaultDuplicateWindow, at most the
// max age), WithMaxBytes and WithMaxMsgSize (0: no cap), WithBatching
// (true), WithLocalDedup (false), WithMetrics (none) and WithLogger
// (zerolog.Nop). A bad prefix or
// option gives an error wrapping ErrInvalidOption that names it.
//
// Batching needs js's connection: a js without a Conn() *nats.Conn method
// (a jetstream.JetStream has one) stores every callback alone.
func New(js JetStream, prefix string, opts ...Option) (*Store, error) {
	o := options{
		replicas: DefaultReplicas, maxAge: DefaultMaxAge, duplicateWindow: DefaultDuplicateWindow,
		batching: true, log: zerolog.Nop(), floorEvery: defaultFloorEvery, loadBudget: defaultLoadBudget,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if o.duplicateWindow > o.maxAge {
		return nil, fmt.Errorf("%w: WithDuplicateWindow(%s): longer than the max age %s", ErrInvalidOption, o.duplicateWindow, o.maxAge)
	}
	s := &Store{
		js:            js,
		prefix:        prefix,
		subjectPrefix: prefix + ".callback.",
		opts:          o,
		contentType:   []string{contentTypeJSON},
		streamHeader:  []string{StreamName},
		idHeader:      jetstream.MsgIDHeader,
	}
	if o.localDedup {
		s.idHeader = IDHeader
		s.dedup = newLocalDedup(o.duplicateWindow, time.Now)
	}
	if c, ok := js.(conner); ok && o.batching && c.Conn() != nil {
		s.batch = newBatcher(c.Conn(), s.publish, o.log.With().Str("component", "intake").Logger(), o.metrics)
	}
	return s, nil
}

// Setup creates the stream, or updates it to the Store's options (say, more
// replicas or a new max age); running it again with the same options
// changes nothing, and replicas running it at once is safe
// (broker.EnsureStream, which retries transient errors until ctx ends).
// Errors wrap the server's error, naming the stream.
//
// With batching on (WithBatching), the stream allows fast batches
// (allow_batched), and Store uses them only once Setup has seen the
// stream's config come back with them allowed: a server before 2.12 drops
// the setting, and Store then stores every callback alone and logs that
// once; nats-server 2.12 and 2.13 refuse the setting, and the stream is
// set up without it (broker.EnsureBatchedStream), with the same outcome.
// With batching off, Setup turns allow_batched off.
func (s *Store) Setup(ctx context.Context) error {
	_, batched, err := broker.EnsureBatchedStream(ctx, s.js, s.streamConfig())
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if s.dedup != nil {
		s.setupIDs(ctx)
	}
	if s.batch != nil {
		s.batch.enable(batched)
	}
	return nil
}

// setupIDs loads the duplicate window's ids (loadIDs) and says how it
// went. A load that fails or runs out of time does not stop the receiver:
// that would refuse every callback, where an id not loaded costs at most
// a second record of a callback WeCom sends again.
func (s *Store) setupIDs(ctx context.Context) {
	start := time.Now()
	n, err := s.loadIDs(ctx)
	held := s.dedup.size()
	s.opts.metrics.setCallbackIDs(held)
	log := s.opts.log.With().Str("component", "intake").Int("records_read", n).Int("ids", held).
		Dur("took", time.Since(start)).Logger()
	if err != nil {
		log.Warn().Err(err).Msg("callback ids of the duplicate window not all loaded: a repeat of a callback stored before this start may be stored again")
		return
	}
	log.Info().Msg("callback ids of the duplicate window loaded")
}

func (s *Store) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Accepted WeCom callbacks, for the fetcher",
		Subjects:    []string{s.subjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// A full stream refuses new callbacks (503 store_full, and WeCom
		// retries) rather than drop stored ones: every stored record was
		// answered success and may not be handled yet. Handled records
		// leave before MaxAge once the stream fills (Compact).
		Discard:    jetstream.DiscardNew,
		MaxAge:     s.opts.maxAge,
		MaxBytes:   cmp.Or(s.opts.maxBytes, -1),
		MaxMsgSize: cmp.Or(s.opts.maxMsgSize, -1),
		Duplicates: s.opts.duplicateWindow,
		Replicas:   s.opts.replicas,
		// Allows Store's group commit (batch.go), only when this Store
		// batches: the setting makes the stream require JetStream API
		// level 4 (nats-server 2.14) of every server that runs it (an
		// older one runs its replica offline), so turning batching off is
		// how a cluster being upgraded to 2.14 keeps WECOM_CALLBACKS
		// running. A server that refuses the field (2.12, 2.13) gets the
		// stream without it (broker.EnsureBatchedStream).
		AllowBatchPublish: s.opts.batching,
	}
}

func checkPrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: empty subject prefix", ErrInvalidOption)
	}
	for tok := range strings.SplitSeq(prefix, ".") {
		if !isToken(tok) {
			return fmt.Errorf("%w: subject prefix %q: tokens must match [A-Za-z0-9_-]+", ErrInvalidOption, prefix)
		}
	}
	return nil
}

// Store files cb and returns once JetStream has acked it, so it is on disk
// (and on a quorum of replicas). A callback whose ID was stored within the
// duplicate window is acked without a second copy, and Store returns nil:
// WeCom's retries of one callback become one record. The server keeps the
// window's ids (Nats-Msg-Id), or with WithLocalDedup the Store does
// (dedup.go, which says where the two differ).
//
// A callback stored while no other is being stored goes alone, with a
// PubAck of its own. Callbacks arriving while one is on its way wait
// together and go as one fast batch, answered by one commit (batch.go;
// broker/fastbatch.go says why nil still means stored); a batch that fails
// in any way sends each of its callbacks alone, as if there were no
// batching.
//
// ctx carries the caller's deadline; without one Store gives up after 3s.
// While the stream cannot answer (no leader during an election, a leader
// cut off by a partition, a stream not created yet) Store tries again
// until the deadline (broker.PublishRetry).
// While NATS is unreachable the client buffers the message and Store waits
// for the deadline: a reconnect within it still succeeds. A message buffered
// by a Store that timed out may be sent after a reconnect; a retry with the
// same ID is then a duplicate, not a second record. (A Store that keeps its
// ids itself is for an in-process server, where nothing is buffered.)
//
// Errors wrap ErrInvalidRecord for a cb it cannot file, and otherwise the
// client's or server's error (context.DeadlineExceeded,
// jetstream.ErrNoStreamResponse, a *jetstream.APIError, ...). They never
// hold anything of cb but the fact that a field is bad.
func (s *Store) Store(ctx context.Context, cb *wecomhit.Callback) error {
	if err := checkRecord(cb); err != nil {
		return fmt.Errorf("intake: store callback: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, storeTimeout)
		defer cancel()
	}
	if s.dedup == nil {
		return s.store(ctx, cb)
	}
	return s.once(ctx, cb.ID, func() error { return s.store(ctx, cb) })
}

// once runs store unless the Store's own de-duplication (dedup.go) has id
// stored within the window, or gets it stored by a Store of the same id
// in progress, and returns nil then.
func (s *Store) once(ctx context.Context, id string, store func() error) error {
	k := keyOf(id)
	dup, err := s.dedup.begin(ctx, k)
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if dup {
		return nil
	}
	stored := false
	// Deferred, so that a panic in store (the edge recovers handler
	// panics) does not leave k claimed, and WeCom's retries waiting on it.
	defer func() { s.opts.metrics.setCallbackIDs(s.dedup.end(k, stored)) }()
	err = store()
	stored = err == nil
	return err
}

// store is Store once the callback is checked and, with local
// de-duplication, claimed.
func (s *Store) store(ctx context.Context, cb *wecomhit.Callback) error {
	out := s.getOutgoing()
	if err := s.encode(&out.buf, cb); err != nil {
		s.putOutgoing(out)
		return fmt.Errorf("intake: store callback: %w", err)
	}
	out.id[0] = cb.ID
	// Again each time, though the map is built with it: were anything to
	// Set the id header (a publish option), the map would hold a slice
	// of its own, and the next callback would go out under this one's id.
	out.header[s.idHeader] = out.id[:]
	out.msg = nats.Msg{
		Subject: s.subject(cb),
		Header:  out.header,
		Data:    out.buf.Bytes(),
	}
	if b := s.batch; b != nil && b.on.Load() {
		abandoned, err := b.store(ctx, &out.item)
		if !abandoned {
			s.putOutgoing(out)
		}
		// An abandoned out is left to the garbage collector: a batch may
		// still be writing its message to the connection, or send on its
		// done channel. Its message holds nothing of cb but copies (the
		// subject) and cb.ID's string, so cb is free for its caller as
		// Store returns, as callback.Sink requires.
		return err
	}
	err := s.publish(ctx, &out.msg)
	s.putOutgoing(out)
	return err
}

// outgoing is one callback on its way to the stream: its record, its
// message and its place in a batch's queue, reused from Store's pool.
// Store gives it back once nothing else can touch it: the client has
// written the message out (nats.go copies it into its write buffer) and
// no batch still holds the item.
type outgoing struct {
	buf    bytes.Buffer // the record, msg.Data
	msg    nats.Msg
	header nats.Header // msg.Header, built once: its id value is id
	id     [1]string   // the id header's value (Store.idHeader), set per callback
	item   item        // msg's entry in a batch's queue (item.msg is &msg)
}

func (s *Store) getOutgoing() *outgoing {
	if out, ok := s.outs.Get().(*outgoing); ok {
		return out
	}
	out := &outgoing{}
	out.header = s.header(s.idHeader, out.id[:])
	out.item = item{msg: &out.msg, done: make(chan turn, 1)}
	return out
}

// subject is cb's record's subject: <prefix>.callback.<app>.<kind>.
func (s *Store) subject(cb *wecomhit.Callback) string {
	return s.subjectPrefix + cb.App + "." + string(cb.Kind)
}

// header is a record's header with id under idName: Nats-Msg-Id, or
// IDHeader for a Store that keeps its ids itself (dedup.go). The id and
// Nats-Expected-Stream go as headers rather than publish options: a
// batch's messages go out as they are, and every attempt of the plain
// path carries them as well.
func (s *Store) header(idName string, id []string) nats.Header {
	return nats.Header{
		contentTypeHeader:              s.contentType,
		idName:                         id,
		jetstream.ExpectedStreamHeader: s.streamHeader,
	}
}

// putOutgoing returns out to the pool, holding nothing of its callback.
// A record far larger than usual is not kept: the pool would hold its
// memory for every later callback.
func (s *Store) putOutgoing(out *outgoing) {
	if out.buf.Cap() > maxPooledRecord {
		return
	}
	out.id[0] = ""
	out.msg = nats.Msg{}
	s.outs.Put(out)
}

// maxPooledRecord is the largest record buffer Store keeps for reuse.
const maxPooledRecord = 64 << 10

// publish is the plain path: msg alone, acked on its own, retried until
// ctx ends. It passes no publish options: those write msg.Header, which
// Store reuses (outgoing). The ack's Duplicate flag needs no check: a duplicate is
// stored already.
func (s *Store) publish(ctx context.Context, msg *nats.Msg) error {
	start := time.Now()
	// broker.PublishRetry tries again while the stream cannot answer, until
	// ctx ends; every attempt carries msg's Nats-Msg-Id. Without one (a
	// Store keeping its ids, dedup.go) it must not send a copy where an
	// answer is only slow: PublishAwait.
	publish := broker.PublishRetry
	if s.dedup != nil {
		publish = broker.PublishAwait
	}
	if _, err := publish(ctx, s.js, msg); err != nil {
		if isStoreFull(err) {
			return fmt.Errorf("intake: store callback: %w: %w", ErrStoreFull, err)
		}
		return fmt.Errorf("intake: store callback: %w", err)
	}
	s.opts.metrics.observePublish(time.Since(start))
	return nil
}

// encode writes cb as JSON into buf, replacing what it held:
// encoding/json's bytes with HTML escaping off (appendRecord). Not
// escaping HTML matters: raw is XML, and escaping its every '<' and '>' as
// \u003c/\u003e would make a record up to four times the size of what
// WeCom sent.
func (s *Store) encode(buf *bytes.Buffer, cb *wecomhit.Callback) error {
	buf.Reset()
	// Room for the record unless its strings need many escapes, so that
	// appendRecord writes into buf's own memory (AvailableBuffer), and
	// Write has nothing to copy.
	buf.Grow(recordSize(cb))
	b, err := appendRecord(buf.AvailableBuffer(), cb)
	if err != nil {
		// Its errors name the field and a value's range, not the content.
		return fmt.Errorf("encode: %w", err)
	}
	buf.Write(b)
	return nil
}

// RecordLimit is the largest record a callback body of at most maxBody
// bytes can become, for WithMaxMsgSize. The decrypted plaintext is at
// most 3/4 of the body (the body carries it in base64); JSON escaping at
// most sextuples it (a byte of invalid UTF-8 becomes the six characters
// \ufffd), and the fields parsed out of it are copies of parts of it. The
// rest is a few hundred bytes of field names, ids and times. A valid
// callback's record is about the size of its plaintext.
func RecordLimit(maxBody int64) int32 {
	return int32(min(9*maxBody+4096, 1<<30))
}

// isStoreFull reports whether err is the server refusing a message for
// lack of room: a stream at its MaxBytes (or another DiscardNew limit), or
// the server's store at its limit.
func isStoreFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeStreamStoreFailed, errCodeInsufficientResources, errCodeStorageResourcesExceeded:
		return true
	}
	return false
}

// JetStream API error codes nats.go has no names for (nats-server's
// jetstream_errors_generated.go). The server answers 10077 only for a
// DiscardNew limit (bytes, messages, messages per subject or message
// size); a write that fails for another reason (an I/O error, a full
// disk) gets no answer at all, and Store times out.
const (
	errCodeInsufficientResources    jetstream.ErrorCode = 10023
	errCodeStorageResourcesExceeded jetstream.ErrorCode = 10047
	errCodeStreamStoreFailed        jetstream.ErrorCode = 10077
)

// checkRecord rejects what cannot be filed. Its errors name the field, not
// its value.
func checkRecord(cb *wecomhit.Callback) error {
	switch {
	case cb == nil:
		return fmt.Errorf("%w: nil callback", ErrInvalidRecord)
	case cb.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalidRecord)
	case !isHeaderValue(cb.ID):
		// It becomes the Nats-Msg-Id header: CR or LF would end the header.
		return fmt.Errorf("%w: id has control characters", ErrInvalidRecord)
	case cb.App == "":
		return fmt.Errorf("%w: empty app", ErrInvalidRecord)
	case !isToken(cb.App):
		return fmt.Errorf("%w: app is not a subject token ([A-Za-z0-9_-]+)", ErrInvalidRecord)
	case cb.Kind == "":
		return fmt.Errorf("%w: empty kind", ErrInvalidRecord)
	case !isToken(string(cb.Kind)):
		return fmt.Errorf("%w: kind is not a subject token ([A-Za-z0-9_-]+)", ErrInvalidRecord)
	}
	return nil
}

// isToken reports whether s is a non-empty [A-Za-z0-9_-]+: a subject token
// with no '.', wildcard or white space, and safe as a consumer filter.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// Ready returns nil when the stream exists, and otherwise the error of
// looking it up (jetstream.ErrStreamNotFound, a timeout, ...). It asks the
// server, so a reachable NATS without the stream is not ready. For
// /readyz; without a deadline on ctx it gives up after 2s.
func (s *Store) Ready(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	if _, err := s.js.Stream(ctx, StreamName); err != nil {
		return fmt.Errorf("intake: stream %s: %w", StreamName, err)
	}
	return nil
}
