package fetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// Existing lists the Nats-Msg-Ids (<corp_id>:<msgid>:<rule_id>) of a corp's
// events stored since a time: *publish.Publisher.
type Existing interface {
	Existing(ctx context.Context, corpID string, since time.Time) (map[string]bool, error)
}

// Progress reports a backfill's advance after each page.
type Progress struct {
	Pages     int
	Messages  int
	Published int
	Skipped   int   // events the stream already held
	LastSent  int64 // send time (unix s) of the newest message read
	Done      bool
}

// Backfill re-reads an (app, corp)'s hits from since, with begin_time and
// then cursors of its own: the fetch cursor is neither read nor moved. It
// publishes, with source "backfill", only the events the stream does not
// already hold, so it is safe to run at any time, also beside running
// receivers. Calls stay within the token-less budget.
func (f *Fetcher) Backfill(ctx context.Context, app, corp string, since time.Time, seen Existing, progress func(Progress)) (p Progress, err error) {
	a, ok := f.apps[app]
	if !ok {
		return Progress{}, fmt.Errorf("fetch: no app %q", app)
	}
	if corp == "" {
		return Progress{}, fmt.Errorf("fetch: backfill of app %s needs a corp", app)
	}
	if _, err := f.opts.corps.Resolve(app, corp); err != nil {
		return Progress{}, fmt.Errorf("fetch: %w", err)
	}
	// Events are published after their message was sent, so every event of
	// a message sent since `since` was stored after it.
	defer func() {
		if err != nil {
			f.opts.metrics.failed(app, corp)
		}
	}()
	have, err := seen.Existing(ctx, corp, since)
	if err != nil {
		return Progress{}, err
	}
	lim := newLimiter(f.opts.tokenlessPerMinute, time.Minute, f.opts.now)
	var cursor string
	for {
		if err := lim.wait(ctx); err != nil {
			return p, fmt.Errorf("fetch: backfill: %w", err)
		}
		req := wecom.HitMsgListRequest{Cursor: cursor, Limit: f.opts.pageSize, NeedDetail: true}
		if cursor == "" {
			req.BeginTime = since.Unix()
		}
		fetched := f.opts.now()
		page, err := a.API.GetHitMsgList(ctx, corp, req)
		if err != nil {
			return p, fmt.Errorf("fetch: backfill page %d: %w", p.Pages+1, err)
		}
		p.Pages++
		p.Messages += len(page.MsgList)
		for _, m := range page.MsgList {
			if m.Detail != nil {
				p.LastSent = max(p.LastSent, m.Detail.SendTime)
			}
		}
		// Whole messages go to the publisher, so every event still lists
		// all the rules its message hit; the events already stored are
		// left out by id.
		res, err := f.pub.Publish(ctx, &wecomhit.HitPage{App: app, CorpID: corp, Source: wecomhit.SourceBackfill,
			FetchedAt: fetched, Messages: page.MsgList, Skip: have})
		if err != nil {
			return p, fmt.Errorf("fetch: backfill publish: %w", err)
		}
		f.opts.metrics.page(app, corp, wecomhit.SourceBackfill, f.opts.now().Sub(fetched))
		p.Published += res.Published
		p.Skipped += res.Skipped + res.Duplicates
		if !page.HasMore {
			p.Done = true
			if progress != nil {
				progress(p)
			}
			return p, nil
		}
		if page.NextCursor == "" || page.NextCursor == cursor {
			return p, errors.New("fetch: backfill: WeCom says has_more without a new cursor")
		}
		cursor = page.NextCursor
		if progress != nil {
			progress(p)
		}
	}
}
