package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/broker"
)

// Corp lifecycle events (docs/corps.md) go to a stream of their own,
// WECOM_CORP_EVENTS, on <prefix>.corp.<corp>.<type>: a consumer of
// WECOM_HITS without a subject filter then sees hit events only (issue 13),
// and a cancellation is kept long after the hits it concerns have aged
// out, so that a service that was down for days still learns it must
// delete its copies. The cost: no order between a corp's lifecycle events
// and its hit events (docs/corps.md says what a consumer does about it).

// CorpStreamName is the stream holding corp lifecycle events.
const CorpStreamName = "WECOM_CORP_EVENTS"

// Defaults for the corp event stream's Options left zero.
const (
	// DefaultCorpMaxAge keeps a lifecycle event for 30 days: long beyond
	// the hit events' age, so a consumer back from an outage still reads
	// the cancellation that tells it to delete a corp's copies.
	DefaultCorpMaxAge = 30 * 24 * time.Hour
	// DefaultCorpMaxBytes caps the stream at 8 MiB: an event takes about
	// 500 bytes, so some 16,000 events fit in the 30 days.
	DefaultCorpMaxBytes = 8 << 20
	// DefaultCorpDuplicateWindow de-duplicates the copies of one event
	// that every replica publishes, and one published again when its
	// callback is handled again hours later.
	DefaultCorpDuplicateWindow = 24 * time.Hour
)

// SetupCorp creates or updates WECOM_CORP_EVENTS, for PublishCorp. Call it
// after Setup, which takes <prefix>.corp.> from a WECOM_HITS of an earlier
// version (two streams may not share a subject), and only when corp events
// are published (the corp registry is on): the server reserves the
// stream's MaxBytes in its store whether anything is written or not.
func (p *Publisher) SetupCorp(ctx context.Context) error {
	_, err := broker.EnsureStream(ctx, p.js, jetstream.StreamConfig{
		Name:        CorpStreamName,
		Description: "Corp lifecycle events (wecom.corp.v1): a corp authorized or cancelled",
		Subjects:    []string{p.prefix + ".corp.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// A full stream refuses the event rather than drop an old
		// cancellation: a cancel_auth fails and is delivered again,
		// `corps remove` fails and can be run again; an announcement by
		// a registry watch is logged as failed.
		Discard:    jetstream.DiscardNew,
		MaxAge:     p.opts.corpMaxAge,
		MaxBytes:   p.opts.corpMaxBytes,
		Duplicates: DefaultCorpDuplicateWindow,
		Replicas:   p.opts.replicas,
	})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// CorpSubject is the subject of a corp lifecycle event.
func CorpSubject(prefix, corpID, typ string) string {
	return prefix + ".corp." + Token(corpID) + "." + typ
}

// CorpEventID is a lifecycle event's Nats-Msg-Id: a replica that publishes
// the same event again (a redelivered callback) is de-duplicated.
func CorpEventID(ev *wecomhit.CorpLifecycleEvent, at time.Time) string {
	return "corp:" + ev.App + ":" + ev.CorpID + ":" + ev.Type + ":" + strconv.FormatInt(at.Unix(), 10)
}

// PublishCorp publishes ev, stamped with PublishedAt now, and waits for
// its ack. at is the time its id is derived from: the callback's event
// time, or the registry entry's last change.
func (p *Publisher) PublishCorp(ctx context.Context, ev wecomhit.CorpLifecycleEvent, at time.Time) error {
	if ev.CorpID == "" || ev.App == "" || (ev.Type != wecomhit.CorpAuthorized && ev.Type != wecomhit.CorpCancelled) {
		return fmt.Errorf("%w: corp event needs app, corp and type", ErrInvalidOption)
	}
	ev.Schema = wecomhit.CorpEventSchema
	ev.PublishedAt = time.Now().UTC()
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish: corp event: %w", err)
	}
	msg := &nats.Msg{
		Subject: CorpSubject(p.prefix, ev.CorpID, ev.Type),
		Header: nats.Header{
			"Content-Type": []string{ContentTypeJSON},
			HeaderSchema:   []string{wecomhit.CorpEventSchema},
			HeaderCorpID:   []string{ev.CorpID},
		},
		Data: data,
	}
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(CorpEventID(&ev, at)),
		jetstream.WithExpectStream(CorpStreamName)); err != nil {
		return fmt.Errorf("publish: corp event %s: %w", msg.Subject, err)
	}
	return nil
}

// PurgeCorp deletes every hit event of corpID from WECOM_HITS (a purge by
// subject <prefix>.hit.<corp>.>); lifecycle events, in their own stream,
// stay (PurgeCorpAuthorized deletes those that name the corp). Deleting
// what is not there succeeds.
func (p *Publisher) PurgeCorp(ctx context.Context, corpID string) error {
	if corpID == "" {
		return errors.New("publish: purge: empty corp id")
	}
	s, err := p.js.Stream(ctx, StreamName)
	if err != nil {
		return fmt.Errorf("publish: stream %s: %w", StreamName, err)
	}
	filter := p.prefix + ".hit." + Token(corpID) + ".>"
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(filter)); err != nil {
		return fmt.Errorf("publish: purge %s: %w", filter, err)
	}
	return nil
}

// PurgeCorpAuthorized deletes from WECOM_CORP_EVENTS the authorized events
// of corpID older than its newest cancelled event (a purge by subject
// <prefix>.corp.<corp>.authorized, up to that event's sequence): they
// carry the corp's name, which the cancellation deletes. Call it after
// publishing the cancelled event, which stays, so that a consumer reading
// the stream later still learns of the cancellation. The sequence bound
// spares an authorized event of the corp authorized again after it, which
// a replica erasing late would otherwise delete; with no cancelled event
// there is nothing to purge. Deleting what is not there succeeds.
func (p *Publisher) PurgeCorpAuthorized(ctx context.Context, corpID string) error {
	if corpID == "" {
		return errors.New("publish: purge: empty corp id")
	}
	s, err := p.js.Stream(ctx, CorpStreamName)
	if err != nil {
		return fmt.Errorf("publish: stream %s: %w", CorpStreamName, err)
	}
	last, err := s.GetLastMsgForSubject(ctx, CorpSubject(p.prefix, corpID, wecomhit.CorpCancelled))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("publish: cancelled event of %s: %w", Token(corpID), err)
	}
	filter := CorpSubject(p.prefix, corpID, wecomhit.CorpAuthorized)
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(filter), jetstream.WithPurgeSequence(last.Sequence)); err != nil {
		return fmt.Errorf("publish: purge %s: %w", filter, err)
	}
	return nil
}
