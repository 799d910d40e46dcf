// Package deadletter keeps the records the receiver gave up on: hit
// messages that could not become events and stored callbacks that could not
// be handled. It owns the WECOM_DEAD_LETTERS stream, its subjects
// (<prefix>.dlq.hit.<corp_id> and <prefix>.dlq.callback.<app>.<kind>) and
// the wecom.dlq.v2 record (wecomhit.DeadLetter), and reads them back for
// operators.
//
// It does not decide what is a dead letter (publish and intake do) nor
// replay a callback into the intake stream (cmd wires that, with intake);
// the NATS connection comes from broker.
package deadletter

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
)

// StreamName is the stream holding dead letters.
const StreamName = "WECOM_DEAD_LETTERS"

// HeaderSchema carries the record's schema name, as on hit events.
const HeaderSchema = "Wecom-Schema"

// Defaults for options not given, or given as zero.
const (
	DefaultReplicas = 1
	// DefaultMaxAge keeps a dead letter for two weeks: long enough to come
	// back from a holiday and still replay what a misconfiguration caught.
	DefaultMaxAge = 14 * 24 * time.Hour
	// DefaultDuplicateWindow covers a record written again because its
	// writer failed after the write (a consumer redelivery, a re-fetched
	// page).
	DefaultDuplicateWindow = time.Hour
	// writeTimeout bounds Write when ctx has no deadline.
	writeTimeout = 5 * time.Second
)

var (
	// ErrInvalidOption: New found a bad prefix or option.
	ErrInvalidOption = errors.New("deadletter: invalid option")
	// ErrInvalidRecord: Write was given a dead letter it cannot file.
	ErrInvalidRecord = errors.New("deadletter: invalid record")
	// ErrNotFound: no dead letter at that sequence.
	ErrNotFound = errors.New("deadletter: not found")
)

// JetStream is the part of a JetStream context a Stream uses: it publishes
// dead letters and manages (and reads) their stream. A jetstream.JetStream
// is one.
type JetStream interface {
	jetstream.Publisher
	jetstream.StreamManager
}

// Stream writes and reads dead letters under one subject prefix. It is safe
// for concurrent use.
type Stream struct {
	js     JetStream
	prefix string
	opts   options
}

// New returns a Stream under prefix (e.g. "wecom") on js. It does no I/O;
// a writer calls Setup first, a reader (an operator command) need not.
//
// Options and their defaults: WithReplicas (DefaultReplicas), WithMaxAge
// (DefaultMaxAge), WithDuplicateWindow (DefaultDuplicateWindow, at most the
// max age), WithMaxBytes (0: no cap). A bad prefix or option gives an error
// wrapping ErrInvalidOption that names it.
func New(js JetStream, prefix string, opts ...Option) (*Stream, error) {
	o := options{replicas: DefaultReplicas, maxAge: DefaultMaxAge, duplicateWindow: DefaultDuplicateWindow}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if prefix == "" || strings.ContainsAny(prefix, "*> \t\r\n") || strings.HasPrefix(prefix, ".") || strings.HasSuffix(prefix, ".") {
		return nil, fmt.Errorf("%w: subject prefix %q", ErrInvalidOption, prefix)
	}
	if o.duplicateWindow > o.maxAge {
		return nil, fmt.Errorf("%w: WithDuplicateWindow(%s): longer than the max age %s", ErrInvalidOption, o.duplicateWindow, o.maxAge)
	}
	return &Stream{js: js, prefix: prefix, opts: o}, nil
}

// HitSubject is where hit dead letters of a corp go:
// <prefix>.dlq.hit.<corp_id>, the id sanitized with Token.
func HitSubject(prefix, corpID string) string {
	return prefix + ".dlq.hit." + Token(corpID)
}

// CallbackSubject is where callback dead letters of an app and kind go:
// <prefix>.dlq.callback.<app>.<kind>, both sanitized with Token.
func CallbackSubject(prefix, app string, kind wecomhit.Kind) string {
	return prefix + ".dlq.callback." + Token(app) + "." + Token(string(kind))
}

// Setup creates the stream, or updates it to the options; running it again
// with the same options changes nothing, and replicas running it at once is
// safe (broker.EnsureStream, which retries transient errors until ctx ends).
func (s *Stream) Setup(ctx context.Context) error {
	if _, err := broker.EnsureStream(ctx, s.js, s.streamConfig()); err != nil {
		return fmt.Errorf("deadletter: %w", err)
	}
	return nil
}

// streamConfig is the whole stream configuration, in one place so that
// limits (MaxBytes and the like) are added here only.
func (s *Stream) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Records the receiver gave up on (wecom.dlq.v2): hits that could not become events, callbacks that could not be handled",
		Subjects:    []string{s.prefix + ".dlq.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    cmp.Or(s.opts.maxBytes, -1),
		MaxAge:      s.opts.maxAge,
		Duplicates:  s.opts.duplicateWindow,
		Replicas:    s.opts.replicas,
	}
}

// Msg builds the message for dl: subject by kind, schema header and the
// Nats-Msg-Id id, which makes a rewrite of the same dead letter within the
// duplicate window a duplicate. It fills in Schema and a zero DeadAt. For
// callers that publish asynchronously (publish does, page by page);
// publish it with jetstream.WithExpectStream(StreamName).
func (s *Stream) Msg(dl *wecomhit.DeadLetter, id string) (*nats.Msg, error) {
	if err := check(dl, id); err != nil {
		return nil, fmt.Errorf("deadletter: %w", err)
	}
	dl.Schema = wecomhit.DeadLetterSchema
	if dl.DeadAt.IsZero() {
		dl.DeadAt = time.Now()
	}
	dl.DeadAt = dl.DeadAt.UTC()
	data, err := json.Marshal(dl)
	if err != nil {
		return nil, fmt.Errorf("deadletter: encode: %w", err)
	}
	subject := HitSubject(s.prefix, dl.CorpID)
	if dl.Kind == wecomhit.DeadLetterCallback {
		subject = CallbackSubject(s.prefix, dl.App, dl.CallbackKind)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set("Content-Type", "application/json")
	m.Header.Set(HeaderSchema, wecomhit.DeadLetterSchema)
	return m, nil
}

func check(dl *wecomhit.DeadLetter, id string) error {
	switch {
	case dl == nil:
		return fmt.Errorf("%w: nil dead letter", ErrInvalidRecord)
	case dl.Kind != wecomhit.DeadLetterHit && dl.Kind != wecomhit.DeadLetterCallback:
		return fmt.Errorf("%w: kind %q: want hit or callback", ErrInvalidRecord, dl.Kind)
	case dl.Reason == "":
		return fmt.Errorf("%w: empty reason", ErrInvalidRecord)
	case len(dl.Record) == 0 || !json.Valid(dl.Record):
		return fmt.Errorf("%w: record is not JSON", ErrInvalidRecord)
	case id == "" || strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%w: id empty or with control characters", ErrInvalidRecord)
	}
	return nil
}

// Write stores dl under id and returns once JetStream has acked it (a
// duplicate of one stored within the window counts as stored). While the
// stream cannot answer it tries again (broker.PublishRetry); without a
// deadline on ctx it gives up after 5s. Errors wrap ErrInvalidRecord or the
// client's or server's error; they never hold the record.
func (s *Stream) Write(ctx context.Context, dl *wecomhit.DeadLetter, id string) error {
	m, err := s.Msg(dl, id)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, writeTimeout)
		defer cancel()
	}
	// Retried while the stream cannot answer (a leader election), until
	// ctx ends; the Nats-Msg-Id makes a retry that reached the stream
	// twice one record.
	if _, err := broker.PublishRetry(ctx, s.js, m, jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("deadletter: write %s: %w", m.Subject, err)
	}
	return nil
}

// Token makes s safe as one subject token: '.', '*', '>' and white space
// or control characters become '_', and an empty s becomes "_". Distinct
// ids can map to one token; the payload keeps the exact ids.
func Token(s string) string {
	if s == "" {
		return "_"
	}
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if unsafeRune(r) {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f ||
		r == 0x85 || r == 0xa0 || r == 0x1680 || (r >= 0x2000 && r <= 0x200a) ||
		r == 0x2028 || r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000 || r == 0xfeff
}
