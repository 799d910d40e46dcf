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
)

// Corp lifecycle events (docs/corps.md) go to WECOM_HITS, on
// <prefix>.corp.<corp>.<type>, beside the hit events: a consumer that
// reads <prefix>.hit.> sees none of them, one that adds <prefix>.corp.>
// sees a corp's authorized event before its first hit and its cancelled
// event after its last, in one stream's order, with the consumer role it
// already has. A stream of their own would order them against nothing.

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
		jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("publish: corp event %s: %w", msg.Subject, err)
	}
	return nil
}

// PurgeCorp deletes every hit event of corpID from WECOM_HITS (a purge by
// subject <prefix>.hit.<corp>.>); lifecycle events stay. Deleting what is
// not there succeeds.
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
