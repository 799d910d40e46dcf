// Package publish turns fetched hit messages into wecom.hit.v1 events and
// writes them to the WECOM_HITS JetStream stream, one per (message, rule),
// each with routing headers and its CloudEvents attributes, returning only
// once JetStream has acknowledged every one: a page's events go as
// fast-ingest batches where the stream takes them (fastbatch.go), else one
// by one, each acked. A record that cannot be
// normalized without breaking the contract (docs/events.md) is written, with
// its reason, to the dead-letter stream that package deadletter owns. Corp
// lifecycle events go to WECOM_CORP_EVENTS (corp.go).
//
// It does not fetch, keep cursors or decide when to publish; the fetch stage
// calls it page by page and advances its cursor only after a page is acked.
package publish

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/deadletter"
)

// StreamName is the stream holding hit events, and nothing else: dead
// letters are in deadletter.StreamName, corp lifecycle events in
// CorpStreamName.
const StreamName = "WECOM_HITS"

// Header names set on every event besides Nats-Msg-Id and Content-Type, so
// consumers can route without parsing the payload. Values are exact: ids as
// WeCom sent them, not percent-encoded.
const (
	HeaderCorpID = "Wecom-Corp-Id"
	HeaderMsgID  = "Wecom-Msg-Id"
	HeaderRuleID = "Wecom-Rule-Id"
	HeaderSchema = "Wecom-Schema"
	// HeaderSource is the event's source: what started the fetch.
	HeaderSource = "Wecom-Source"
	// HeaderUsedHitToken is "true" or "false": the event's used_hit_token.
	HeaderUsedHitToken = "Wecom-Used-Hit-Token"
)

// CloudEvents 1.0 attributes in binary content mode, as the CloudEvents NATS
// protocol binding names their headers: "ce-" and the attribute, lowercase.
// NATS header names are case-sensitive in nats.go and the CloudEvents Go SDK
// matches these exactly. datacontenttype goes in ce-datacontenttype as the
// binding says, not in a second, lowercase content-type beside our
// Content-Type, which one header map could hold only as two entries. Values
// are percent-encoded where the binding requires it.
const (
	HeaderCESpecVersion     = "ce-specversion"
	HeaderCEID              = "ce-id"
	HeaderCESource          = "ce-source"
	HeaderCEType            = "ce-type"
	HeaderCETime            = "ce-time"
	HeaderCESubject         = "ce-subject"
	HeaderCEDataSchema      = "ce-dataschema"
	HeaderCEDataContentType = "ce-datacontenttype"
)

// CloudEvents attribute values shared by every hit event.
const (
	// CESpecVersion is the CloudEvents version the headers follow.
	CESpecVersion = "1.0"
	// HitDataSchema is the $id of docs/hit-event.schema.json.
	HitDataSchema = "https://github.com/wecomhit/wecomhit/docs/hit-event.schema.json"
	// ContentTypeJSON is every event's Content-Type and datacontenttype.
	ContentTypeJSON = "application/json"
)

// Defaults for options not given, or given as zero.
const (
	DefaultReplicas        = 1
	DefaultMaxAge          = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 20 * time.Minute
	// DefaultWindow bounds the publishes awaiting an ack at once: enough to
	// keep a page in flight, below nats.go's async limit.
	DefaultWindow = 512
	// DefaultPageTimeout bounds the wait for a page's acks when the caller
	// gives no deadline: a lost ack (a stream leader change) must fail the
	// page, to be fetched again, rather than hold its fetch forever.
	DefaultPageTimeout = time.Minute
)

// ErrInvalidOption: an option has a bad value.
var ErrInvalidOption = errors.New("publish: invalid option")

// JetStream is the part of a JetStream context a Publisher uses: it
// publishes events and manages its streams. A jetstream.JetStream is one.
type JetStream interface {
	jetstream.Publisher
	jetstream.StreamManager
}

// Publisher publishes pages of hit messages. Safe for concurrent use.
type Publisher struct {
	js     JetStream
	prefix string
	opts   options
	log    zerolog.Logger
	// nc is js's connection, for fast batches (fastbatch.go); nil when js
	// does not give it.
	nc *nats.Conn
	// fast: Setup found WECOM_HITS taking fast batches, and
	// WithFastBatches left them on.
	fast atomic.Bool
	// batchFailing: the last fast batch failed; its failures are logged
	// when this changes, not every page a full stream fails again.
	batchFailing atomic.Bool
}

// New returns a Publisher writing under prefix (e.g. "wecom") on js. It
// does no I/O; call Setup.
//
// Options and their defaults: WithRuleNames (none: events carry empty rule
// names), WithReplicas (DefaultReplicas), WithMaxAge (DefaultMaxAge),
// WithDuplicateWindow (DefaultDuplicateWindow, at most the max age),
// WithWindow (DefaultWindow), WithPageTimeout (DefaultPageTimeout),
// WithMaxBytes and WithMaxMsgSize (0: no cap), WithDiscardOld (off),
// WithCorpMaxAge (DefaultCorpMaxAge), WithCorpMaxBytes
// (DefaultCorpMaxBytes), WithDeadLetters (a deadletter.Stream on the same
// js and prefix, with its defaults), WithMetrics (none) and WithLogger
// (zerolog.Nop). A bad option gives an error wrapping ErrInvalidOption
// that names it.
func New(js JetStream, prefix string, opts ...Option) (*Publisher, error) {
	o := options{
		replicas: DefaultReplicas, maxAge: DefaultMaxAge, duplicateWindow: DefaultDuplicateWindow,
		window: DefaultWindow, pageTimeout: DefaultPageTimeout,
		corpMaxAge: DefaultCorpMaxAge, corpMaxBytes: DefaultCorpMaxBytes,
		log: zerolog.Nop(),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.duplicateWindow > o.maxAge {
		return nil, fmt.Errorf("%w: WithDuplicateWindow(%s): longer than the max age %s", ErrInvalidOption, o.duplicateWindow, o.maxAge)
	}
	if o.deadLetters == nil {
		dl, err := deadletter.New(js, prefix)
		if err != nil {
			return nil, fmt.Errorf("publish: dead letters: %w", err)
		}
		o.deadLetters = dl
	}
	p := &Publisher{js: js, prefix: prefix, opts: o,
		log: o.log.With().Str("component", "publish").Logger()}
	if c, ok := js.(interface{ Conn() *nats.Conn }); ok {
		p.nc = c.Conn()
	}
	return p, nil
}

// HitSubject is the subject of an event: <prefix>.hit.<corp_id>.<rule_id>,
// ids sanitized with Token.
func HitSubject(prefix, corpID, ruleID string) string {
	return prefix + ".hit." + Token(corpID) + "." + Token(ruleID)
}

// Setup creates or updates the stream, then sets up the dead-letter stream
// (WithDeadLetters); replicas running it at once is safe
// (broker.EnsureStream, which retries transient errors until ctx ends). A
// WECOM_HITS set up by an earlier version also took <prefix>.dlq.> and
// <prefix>.corp.>; the update drops those subjects first, so the
// dead-letter stream and WECOM_CORP_EVENTS (SetupCorp) can take them
// (what was stored on them stays in WECOM_HITS until it ages out).
func (p *Publisher) Setup(ctx context.Context) error {
	// Refusing new events is the default: a page that cannot be stored
	// fails, and its fetch retries it later from an unmoved cursor, so
	// nothing unread is dropped.
	discard := jetstream.DiscardNew
	if p.opts.discardOld {
		discard = jetstream.DiscardOld
	}
	_, batched, err := broker.EnsureBatchedStream(ctx, p.js, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "WeCom keyword hits: one wecom.hit.v1 event per (message, rule)",
		Subjects:    []string{p.prefix + ".hit.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     discard,
		MaxAge:      p.opts.maxAge,
		MaxBytes:    cmp.Or(p.opts.maxBytes, -1),
		MaxMsgSize:  cmp.Or(p.opts.maxMsgSize, -1),
		Duplicates:  p.opts.duplicateWindow,
		Replicas:    p.opts.replicas,
		// Fast batches (fastbatch.go). The setting makes the stream
		// require nats-server 2.14 of every server that runs it: before
		// 2.12 a server drops it (and the events go one by one), 2.12 and
		// 2.13 refuse it (strict mode) and the stream is set up without
		// it (broker.EnsureBatchedStream). In a cluster being upgraded,
		// WithFastBatches(false) (nats.hit_batching) keeps the stream off
		// API level 4, which older nodes would run offline.
		AllowBatchPublish: !p.opts.noFastBatches,
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	// batched is false when noFastBatches is set: Setup asked for a
	// stream without allow_batched.
	fast := p.nc != nil && batched
	if !p.opts.noFastBatches && !fast && !p.fast.Load() {
		p.log.Info().Str("stream", StreamName).
			Msg("stream does not take fast batches (nats-server before 2.14?): events are published one by one, each acked")
	}
	p.fast.Store(fast)
	// After WECOM_HITS, which may have held the subjects until just now.
	if err := p.opts.deadLetters.Setup(ctx); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// Ready reports whether the stream exists.
func (p *Publisher) Ready(ctx context.Context) error {
	if _, err := p.js.Stream(ctx, StreamName); err != nil {
		return fmt.Errorf("publish: stream %s: %w", StreamName, err)
	}
	return nil
}

// Result counts what a page became (wecomhit.PageResult).
type Result = wecomhit.PageResult

// Publish publishes every event of a fetched page but those whose
// Nats-Msg-Id is in page.Skip, and waits until JetStream has acked all of
// them, or returns an error: then some events may be stored and some not,
// and the caller must publish the page again (de-duplication makes that
// safe) before moving its cursor.
func (p *Publisher) Publish(ctx context.Context, page *wecomhit.HitPage) (Result, error) {
	return p.page(ctx, Origin{App: page.App, CorpID: page.CorpID, Source: page.Source,
		UsedHitToken: page.UsedHitToken, FetchedAt: page.FetchedAt}, page.Messages, page.Skip)
}

func (p *Publisher) page(ctx context.Context, o Origin, msgs []wecomhit.HitMessage, skip map[string]bool) (Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.pageTimeout)
		defer cancel()
	}
	w := &window{p: p, pending: make([]inflight, 0, min(p.opts.window, 4*len(msgs)+1)), batching: p.fast.Load()}
	start := time.Now()
	defer func() {
		p.opts.metrics.observe(o, w.res)
		if w.fb != nil { // the page failed in mid-batch
			w.fb.close()
		}
	}()
	p.resolveNames(ctx, o.CorpID, msgs)
	for i := range msgs {
		if err := ctx.Err(); err != nil {
			return w.res, fmt.Errorf("publish: %w", err)
		}
		if err := w.message(ctx, o, &msgs[i], skip); err != nil {
			return w.res, err
		}
	}
	if err := w.sendBatch(ctx); err != nil {
		return w.res, err
	}
	if err := w.flush(ctx); err != nil {
		return w.res, err
	}
	if w.sent {
		p.opts.metrics.observePublish(time.Since(start))
	}
	return w.res, nil
}

// inflight is one asynchronous publish of a page waiting for its ack.
type inflight struct {
	f      jetstream.PubAckFuture
	id     string
	stream string
	dlq    bool
}

// window is one page's publishes in flight, at most opts.window of them,
// and the counts of those acknowledged so far.
type window struct {
	p       *Publisher
	pending []inflight // a queue, oldest first
	res     Result
	sent    bool
	scratch []byte // eventMsg's encoding buffer, reused across the page
	// batching: events go as fast batches (batchEvent), up to opts.window
	// of them each; off after a batch of the page failed, so that the rest
	// of the page goes event by event. fb is the open batch, batch its
	// events, for publishing again if it fails.
	batching bool
	fb       *fastBatch
	batch    []*wecomhit.HitEvent
	reuse    *reusedMsg
}

// message publishes one hit message's events (one per rule it hit, less
// those in skip), or its dead letter when it cannot be normalized.
func (w *window) message(ctx context.Context, o Origin, msg *wecomhit.HitMessage, skip map[string]bool) error {
	p := w.p
	events, err := Normalize(o, msg, p.opts.names)
	if err != nil {
		m, id, derr := p.deadLetter(o, msg, err)
		if derr != nil {
			return derr
		}
		if err := w.send(ctx, m, id, true); err != nil {
			return err
		}
		p.log.Warn().Str("app", o.App).Str("corp_id", o.CorpID).Str("reason", normalizeReason(err)).Str("error", err.Error()).Msg("hit record dead-lettered")
		return nil
	}
	for j := range events {
		if skip[MsgID(events[j].CorpID, events[j].MsgID, events[j].RuleID)] {
			w.res.Skipped++
			continue
		}
		if w.batching {
			if err := w.batchEvent(ctx, &events[j]); err != nil {
				return err
			}
			continue
		}
		if err := w.sendEvent(ctx, &events[j]); err != nil {
			return err
		}
	}
	return nil
}

// sendEvent publishes e on its own, acked by itself (send).
func (w *window) sendEvent(ctx context.Context, e *wecomhit.HitEvent) error {
	m, scratch, err := w.p.eventMsg(e, w.scratch)
	if err != nil {
		return err
	}
	w.scratch = scratch
	return w.send(ctx, m, m.Header.Get(jetstream.MsgIDHeader), false)
}

// batchEvent adds e to the page's fast batch, starting one if needed.
// Each event goes out when the next one comes, the newest held back: the
// last goes with the commit (sendBatch), at the page's end or once the
// batch holds a window of events. A message is built in w.reuse just
// before it is sent and then forgotten (the connection copies it); the
// batch keeps its events, to build their messages again should it fail.
func (w *window) batchEvent(ctx context.Context, e *wecomhit.HitEvent) error {
	w.batch = append(w.batch, e)
	if len(w.batch) > 1 {
		if w.fb == nil {
			fb, err := newFastBatch(w.p.nc, StreamName, w.p.opts.window, w.p.opts.window)
			if err != nil {
				return w.unbatch(ctx, err)
			}
			w.fb = fb
		}
		m, err := w.reusedMsg(w.batch[len(w.batch)-2])
		if err != nil {
			return err
		}
		if err := w.fb.add(ctx, m); err != nil {
			return w.unbatch(ctx, err)
		}
	}
	if len(w.batch) >= w.p.opts.window {
		return w.sendBatch(ctx)
	}
	return nil
}

// sendBatch ends the page's fast batch with its held event and counts its
// events once the server has stored every one. A batch of one event is
// published like any other (send). A batch the server stored none of
// counts as duplicates; one it stored part of counts as published whole:
// the server skips duplicates without saying which.
func (w *window) sendBatch(ctx context.Context) error {
	switch len(w.batch) {
	case 0:
		return nil
	case 1:
		e := w.batch[0]
		w.batch = w.batch[:0]
		return w.sendEvent(ctx, e)
	}
	m, err := w.reusedMsg(w.batch[len(w.batch)-1])
	if err != nil {
		return err
	}
	allDup, err := w.fb.commit(ctx, m)
	if err != nil {
		return w.unbatch(ctx, err)
	}
	if allDup {
		w.res.Duplicates += len(w.batch)
	} else {
		w.res.Published += len(w.batch)
	}
	w.sent = true
	w.fb.close()
	w.fb, w.batch = nil, w.batch[:0]
	if w.p.batchFailing.Swap(false) {
		w.p.log.Info().Msg("fast batches stored again")
	}
	return nil
}

// unbatch ends a fast batch that failed with cause: its events so far are
// published one by one (send), the events' Nats-Msg-Ids making a repeat of
// what the batch stored a duplicate, and so is the rest of the page.
func (w *window) unbatch(ctx context.Context, cause error) error {
	ev := w.p.log.Debug()
	if !w.p.batchFailing.Swap(true) {
		ev = w.p.log.Warn()
	}
	ev.Err(cause).Int("events", len(w.batch)).Msg("fast batch failed: publishing its events one by one")
	if broker.FastBatchDisabled(cause) && w.p.fast.Swap(false) {
		// The stream lost allow_batched (an operator, or a receiver with
		// nats.hit_batching off): stop trying until the next Setup, rather
		// than fail a batch on every page.
		w.p.log.Warn().Str("stream", StreamName).
			Msg("stream no longer takes fast batches: events are published one by one, each acked")
	}
	if w.fb != nil {
		w.fb.close()
	}
	batch := w.batch
	w.fb, w.batch, w.batching = nil, nil, false
	for _, e := range batch {
		if err := w.sendEvent(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// send publishes m asynchronously. A full window first waits for its
// oldest ack only, so the window stays full rather than draining to empty
// before the next publish goes out.
func (w *window) send(ctx context.Context, m *nats.Msg, id string, dlq bool) error {
	if len(w.pending) >= w.p.opts.window {
		if err := w.awaitOldest(ctx); err != nil {
			return err
		}
	}
	stream := StreamName
	if dlq {
		stream = deadletter.StreamName
	}
	f, err := w.p.publishAsync(m, id, stream)
	if err != nil {
		return fmt.Errorf("publish: %s: %w", m.Subject, err)
	}
	w.pending = append(w.pending, inflight{f: f, id: id, stream: stream, dlq: dlq})
	w.sent = true
	return nil
}

// awaitOldest waits for the oldest publish in flight and counts it.
func (w *window) awaitOldest(ctx context.Context) error {
	in := w.pending[0]
	w.pending = w.pending[1:]
	ack, err := w.p.await(ctx, in.f, in.id, in.stream)
	if err != nil {
		return err
	}
	switch {
	case in.dlq:
		w.res.DeadLettered++
	case ack.Duplicate:
		w.res.Duplicates++
	default:
		w.res.Published++
	}
	return nil
}

// flush waits for every publish still in flight.
func (w *window) flush(ctx context.Context) error {
	for len(w.pending) > 0 {
		if err := w.awaitOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Retry pacing for a stream that does not answer (a leader election).
const (
	retryFirstBackoff = 50 * time.Millisecond
	retryMaxBackoff   = 500 * time.Millisecond
)

// publishAsync sends m without nats.go's fixed retries on no responders:
// await retries, for as long as the page's deadline allows.
func (p *Publisher) publishAsync(m *nats.Msg, id, stream string) (jetstream.PubAckFuture, error) {
	return p.js.PublishMsgAsync(m, jetstream.WithMsgID(id), jetstream.WithExpectStream(stream),
		jetstream.WithRetryAttempts(0))
}

// await waits for f's ack. While the stream has no one to answer (no
// responders during an election, a cluster temporarily unavailable:
// broker.Transient) it sends the message again with short back-off until
// ctx ends; the same Nats-Msg-Id makes a repeat that lands twice one event.
// A lost ack (nats.go's async ack timeout) is not retried here: it fails
// the page, which is fetched again, so the fetch does not sit on its lease.
func (p *Publisher) await(ctx context.Context, f jetstream.PubAckFuture, id, stream string) (*jetstream.PubAck, error) {
	subject := f.Msg().Subject
	backoff := retryFirstBackoff
	for {
		select {
		case ack := <-f.Ok():
			return ack, nil
		case err := <-f.Err():
			if !broker.Transient(err) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
				return nil, fmt.Errorf("publish: ack for %s: %w", subject, err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("publish: ack for %s: %w (last error: %w)", subject, ctx.Err(), err)
			case <-t.C:
			}
			backoff = min(2*backoff, retryMaxBackoff)
			if f, err = p.publishAsync(f.Msg(), id, stream); err != nil {
				return nil, fmt.Errorf("publish: %s: %w", subject, err)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("publish: waiting for acks: %w", ctx.Err())
		}
	}
}

// resolveNames lets a RuleNameResolver fetch the page's missing rule names
// before its events are built.
func (p *Publisher) resolveNames(ctx context.Context, corpID string, msgs []wecomhit.HitMessage) {
	r, ok := p.opts.names.(RuleNameResolver)
	if !ok {
		return
	}
	seen := map[string]bool{}
	var ids []string
	for i := range msgs {
		for _, h := range msgs[i].HitRules {
			if h.RuleID != "" && !seen[h.RuleID] {
				seen[h.RuleID] = true
				ids = append(ids, h.RuleID)
			}
		}
	}
	if len(ids) > 0 {
		r.Resolve(ctx, corpID, ids)
	}
}

// eventHeaders is how many headers eventMsg sets; jetstream adds
// Nats-Expected-Stream.
const eventHeaders = 16

// eventHeaderNames are the names of eventValues' headers, in its order.
func eventHeaderNames() [eventHeaders]string {
	return [eventHeaders]string{
		jetstream.MsgIDHeader, "Content-Type", HeaderSchema, HeaderCorpID, HeaderMsgID, HeaderRuleID,
		HeaderSource, HeaderUsedHitToken,
		HeaderCESpecVersion, HeaderCEID, HeaderCESource, HeaderCEType,
		HeaderCETime, HeaderCESubject, HeaderCEDataSchema, HeaderCEDataContentType,
	}
}

// eventValues sets vals to e's header values: the routing headers and the
// CloudEvents attributes, named by eventHeaderNames.
func eventValues(e *wecomhit.HitEvent, vals *[eventHeaders]string) {
	id := MsgID(e.CorpID, e.MsgID, e.RuleID)
	*vals = [eventHeaders]string{
		id, ContentTypeJSON, wecomhit.HitSchema, e.CorpID, e.MsgID, e.RuleID,
		e.Source, strconv.FormatBool(e.UsedHitToken),
		CESpecVersion, ceValue(id), ceValue(CESource(e.CorpID)), wecomhit.HitSchema,
		ceTime(e), ceValue(e.RuleID), HitDataSchema, ContentTypeJSON,
	}
}

// eventMsg builds an event's message: the JSON payload, the routing headers
// and the CloudEvents attributes, for publishing one by one. It runs once
// per event, so the headers share one backing array rather than allocating
// a slice each, and the JSON is encoded in scratch, which it returns for
// the next event.
func (p *Publisher) eventMsg(e *wecomhit.HitEvent, scratch []byte) (*nats.Msg, []byte, error) {
	buf, err := appendEvent(scratch[:0], e)
	if err != nil {
		return nil, scratch, fmt.Errorf("publish: encode event: %w", err)
	}
	// The message keeps its data until acked (a retry sends it again), so
	// it gets a copy of its own, of the exact size; scratch is reused.
	data := append([]byte(nil), buf...)
	vals := new([eventHeaders]string)
	eventValues(e, vals)
	names := eventHeaderNames()
	h := make(nats.Header, eventHeaders+1)
	for i, name := range names {
		h[name] = vals[i : i+1 : i+1]
	}
	return &nats.Msg{Subject: HitSubject(p.prefix, e.CorpID, e.RuleID), Header: h, Data: data}, buf, nil
}

// reusedMsg is one message a page's fast batches build every event in
// turn: its header map's values are slices of vals, so setting vals sets
// the headers, and the connection copies the message when it is sent.
// The map is the largest allocation of an event built anew (eventMsg).
type reusedMsg struct {
	msg    nats.Msg
	vals   [eventHeaders]string
	stream [1]string
}

// reusedMsg builds e's message in w.reuse, with the headers and bytes
// eventMsg gives it and Nats-Expected-Stream as jetstream adds it.
func (w *window) reusedMsg(e *wecomhit.HitEvent) (*nats.Msg, error) {
	buf, err := appendEvent(w.scratch[:0], e)
	if err != nil {
		return nil, fmt.Errorf("publish: encode event: %w", err)
	}
	w.scratch = buf
	r := w.reuse
	if r == nil {
		r = &reusedMsg{stream: [1]string{StreamName}}
		h := make(nats.Header, eventHeaders+1)
		for i, name := range eventHeaderNames() {
			h[name] = r.vals[i : i+1 : i+1]
		}
		h[jetstream.ExpectedStreamHeader] = r.stream[:]
		r.msg.Header = h
		w.reuse = r
	}
	eventValues(e, &r.vals)
	r.msg.Subject = HitSubject(w.p.prefix, e.CorpID, e.RuleID)
	r.msg.Data = buf
	return &r.msg, nil
}

// CESource is the CloudEvents source of a corp's events:
// urn:wecomhit:corp:<corp_id>. It names the corp and not the app, so that
// source and id identify one hit whichever app fetched it, as the id
// (Nats-Msg-Id) does.
func CESource(corpID string) string {
	return "urn:wecomhit:corp:" + url.PathEscape(corpID)
}

// ceTime is an event's CloudEvents time: when the message was sent, or when
// it was fetched if WeCom gave no send time.
func ceTime(e *wecomhit.HitEvent) string {
	if e.Message != nil && e.Message.SendTime > 0 {
		return time.Unix(e.Message.SendTime, 0).UTC().Format(time.RFC3339)
	}
	return e.FetchedAt.UTC().Format(time.RFC3339Nano)
}

// ceValue percent-encodes s as the CloudEvents NATS binding requires of
// header values: space, '"', '%', control characters and every byte outside
// printable ASCII (so a UTF-8 character becomes one %XX per byte). Plain
// values, the usual case, are returned without allocating.
func ceValue(s string) string {
	i := 0
	for i < len(s) && !ceEscape(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, i, len(s)+16)
	copy(b, s[:i])
	for ; i < len(s); i++ {
		if c := s[i]; ceEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func ceEscape(c byte) bool { return c <= ' ' || c == '"' || c == '%' || c >= 0x7f }

// deadLetter builds the dead-letter message for a record. Its Msg-Id is
// derived from the record's content, so a re-fetched bad record is stored
// once.
func (p *Publisher) deadLetter(o Origin, rec *wecomhit.HitMessage, cause error) (*nats.Msg, string, error) {
	recData, err := json.Marshal(rec)
	if err != nil {
		return nil, "", fmt.Errorf("publish: encode dead letter: %w", err)
	}
	id := "dlq:" + contentID(o.CorpID, recData)
	m, err := p.opts.deadLetters.Msg(&wecomhit.DeadLetter{
		Kind: wecomhit.DeadLetterHit, Reason: normalizeReason(cause), Error: cause.Error(),
		App: o.App, CorpID: o.CorpID, Source: o.Source, DeadAt: o.FetchedAt, Record: recData,
	}, id)
	if err != nil {
		return nil, "", fmt.Errorf("publish: %w", err)
	}
	return m, id, nil
}

// Existing returns the Nats-Msg-Ids of the events of corpID stored since
// since, reading headers only. Backfill uses it to skip what the stream
// already holds, beyond the de-duplication window.
func (p *Publisher) Existing(ctx context.Context, corpID string, since time.Time) (map[string]bool, error) {
	s, err := p.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("publish: stream %s: %w", StreamName, err)
	}
	filter := p.prefix + ".hit." + Token(corpID) + ".>"
	start := since
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
		HeadersOnly:    true,
	})
	if err != nil {
		return nil, fmt.Errorf("publish: scan %s: %w", filter, err)
	}
	ids := map[string]bool{}
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return nil, fmt.Errorf("publish: scan %s: %w", filter, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ids[m.Headers().Get(jetstream.MsgIDHeader)] = true
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("publish: scan %s: %w", filter, err)
		}
		if n == 0 {
			return ids, nil
		}
	}
}
