// Package health reads, from NATS, the facts that say whether a deployment
// is doing its work, and judges them: per (app, corp) how fetches are going
// and whether a hit token is at hand, per suite how old its ticket is, and
// for the whole deployment the intake backlog, the age of the oldest
// unhandled callback, the dead letters and the storage used. Every fact is
// read from the shared JetStream, so any replica, or `receiver status` on an
// operator's machine, sees the same.
//
// It records nothing itself: the fetcher writes per-corp health (package
// fetch), intake and the dead-letter writer own their streams; cmd wires
// Watch into the service for metrics and Read into the status command.
package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// DeadLetterStream holds callbacks and hits given up on, under the subjects
// <prefix>.dlq.callback.> and <prefix>.dlq.hit.>.
const DeadLetterStream = deadletter.StreamName

// Dead-letter kinds: the kind label of the dead_letters gauge.
const (
	KindCallback = wecomhit.DeadLetterCallback
	KindHit      = wecomhit.DeadLetterHit
)

// App is what Read needs of a configured app.
type App struct {
	Name string
	// SuiteID is the archive suite whose ticket the app needs; empty for
	// apps that need none.
	SuiteID string
	Corps   []string
}

// Target says what to read: the apps, the intake consumers (durable
// names) and the subject prefix.
type Target struct {
	Apps          []App
	Durables      []string
	SubjectPrefix string
	// StoreLimit is the JetStream store's byte limit when the account
	// reports none (an embedded server's nats.max_store_bytes: its
	// account's limits are dynamic, and the server's limit is what
	// applies); 0 when unknown.
	StoreLimit int64
	// Corps, when set, is asked at each Read which corps an app serves
	// (corps.Directory.Corps: corps come and go at run time); Apps' Corps
	// then only pre-create metric series.
	Corps func(app string) []string
}

// Report is every fact Read found. It is also the JSON of `receiver status
// -o json`: fields, not prose.
type Report struct {
	CheckedAt   time.Time   `json:"checked_at"`
	Verdict     Verdict     `json:"verdict"`
	Intake      Intake      `json:"intake"`
	DeadLetters DeadLetters `json:"dead_letters"`
	Storage     Storage     `json:"storage"`
	Suites      []Suite     `json:"suites"`
	Corps       []Corp      `json:"corps"`
}

// Intake is the backlog of stored callbacks.
type Intake struct {
	// Waiting have not been delivered to a handler yet; Handling have been
	// and are not acked yet (being handled, or waiting for a redelivery).
	Waiting  uint64 `json:"waiting"`
	Handling uint64 `json:"handling"`
	// OldestUnhandled is when the oldest callback not yet handled was
	// stored; nil when every callback is handled.
	OldestUnhandled           *time.Time `json:"oldest_unhandled,omitempty"`
	OldestUnhandledAgeSeconds float64    `json:"oldest_unhandled_age_seconds"`
	// MissingConsumers names the intake consumers (durables) that do not
	// exist although WECOM_CALLBACKS does: the callbacks they would take
	// are stored and answered success, and nothing handles them, nor
	// counts them in Waiting. Absent when none is missing, and when there
	// is no stream either (nothing has run yet).
	MissingConsumers []string `json:"missing_consumers,omitempty"`
}

// DeadLetters counts the records given up on, by kind.
type DeadLetters struct {
	Callback uint64 `json:"callback"`
	Hit      uint64 `json:"hit"`
}

// Storage is the JetStream store use.
type Storage struct {
	// UsedBytes is the account's file storage in use; LimitBytes its limit,
	// 0 when the server sets none for the account.
	UsedBytes  uint64 `json:"used_bytes"`
	LimitBytes int64  `json:"limit_bytes"`
	// UsedRatio is the fullest of the account and our streams with a byte
	// limit, 0..1; 0 when nothing has a limit.
	UsedRatio float64         `json:"used_ratio"`
	Streams   []StreamStorage `json:"streams"`
}

// StreamStorage is one stream's use. MaxBytes is 0 when unlimited.
type StreamStorage struct {
	Stream   string `json:"stream"`
	Bytes    uint64 `json:"bytes"`
	Messages uint64 `json:"messages"`
	MaxBytes int64  `json:"max_bytes"`
}

// Suite is a suite's ticket, never the ticket itself.
type Suite struct {
	App     string `json:"app"`
	SuiteID string `json:"suite_id"`
	// ReceivedAt is when the current ticket was received (our clock); nil
	// when none is usable: none pushed yet, or the last was rejected with
	// none to fall back to.
	ReceivedAt *time.Time `json:"ticket_received_at,omitempty"`
	AgeSeconds *float64   `json:"ticket_age_seconds,omitempty"`
	// HasPrevious: an older good ticket is kept to fall back to if WeCom
	// rejects the current one.
	HasPrevious bool `json:"has_previous"`
	// Rejections counts WeCom's 40085 answers (a ticket it refused, which
	// was dropped); LastRejected is the last of them.
	Rejections   int        `json:"rejections"`
	LastRejected *time.Time `json:"last_rejected,omitempty"`
}

// Corp is one (app, corp).
type Corp struct {
	App    string `json:"app"`
	CorpID string `json:"corp_id"`
	Cursor string `json:"cursor"`
	// CursorMoved is when a fetch last moved the cursor: after a page with
	// new hits. A fetch that finds nothing new leaves it as it was.
	CursorMoved *time.Time `json:"cursor_moved,omitempty"`
	// LastHit is the send time of the newest hit fetched, and LagSeconds
	// how long ago that was: on a quiet corp it grows although nothing is
	// wrong, so read it with the hit rate.
	LastHit    *time.Time `json:"last_hit,omitempty"`
	LagSeconds *float64   `json:"lag_seconds,omitempty"`
	Pages      int64      `json:"pages"`
	Events     int64      `json:"events"`
	// HitTokenExpires is when the newest hit token stops being used; nil
	// when there is none.
	HitTokenExpires *time.Time `json:"hit_token_expires,omitempty"`
	FetchingNow     bool       `json:"fetching_now"`
	// The fetch health (fetch.Health).
	ConsecutiveFailures int                `json:"consecutive_failures"`
	LastSuccess         *time.Time         `json:"last_success,omitempty"`
	LastError           *fetch.HealthError `json:"last_error,omitempty"`
}

// Read gathers every fact and judges them with th.
func Read(ctx context.Context, js jetstream.JetStream, tg Target, th Thresholds, now time.Time) (Report, error) {
	rep := Report{CheckedAt: now.UTC(), Suites: []Suite{}, Corps: []Corp{}}
	var err error
	if rep.Intake, err = ReadIntake(ctx, js, tg.Durables, now); err != nil {
		return rep, err
	}
	if rep.DeadLetters, err = ReadDeadLetters(ctx, js, tg.SubjectPrefix); err != nil {
		return rep, err
	}
	if rep.Storage, err = ReadStorage(ctx, js, tg.StoreLimit); err != nil {
		return rep, err
	}
	for _, a := range tg.Apps {
		if a.SuiteID != "" {
			s, err := ReadTicket(ctx, js, a.SuiteID, now)
			if err != nil {
				return rep, err
			}
			s.App = a.Name
			rep.Suites = append(rep.Suites, s)
		}
		corps := a.Corps
		if tg.Corps != nil {
			corps = tg.Corps(a.Name)
		}
		for _, corp := range corps {
			st, err := fetch.ReadState(ctx, js, a.Name, corp)
			if err != nil {
				return rep, err
			}
			rep.Corps = append(rep.Corps, corpOf(a.Name, corp, st, now))
		}
	}
	rep.Verdict = Judge(rep, th)
	return rep, nil
}

func corpOf(app, corp string, st fetch.State, now time.Time) Corp {
	c := Corp{App: app, CorpID: corp, Cursor: st.Cursor.Cursor, Pages: st.Cursor.Pages,
		Events: st.Cursor.Events, FetchingNow: st.Fetching,
		ConsecutiveFailures: st.Health.ConsecutiveFailures, LastError: st.Health.LastError}
	if t := st.Cursor.UpdatedAt; !t.IsZero() {
		c.CursorMoved = &t
	}
	if st.Cursor.LastHitTime > 0 {
		t := time.Unix(st.Cursor.LastHitTime, 0).UTC()
		lag := now.Sub(t).Seconds()
		c.LastHit, c.LagSeconds = &t, &lag
	}
	if t := st.HitTokenExpires; t.After(now) {
		c.HitTokenExpires = &t
	}
	if t := st.Health.LastSuccess; !t.IsZero() {
		c.LastSuccess = &t
	}
	return c
}

// ReadIntake reads the backlog of the intake consumers named (each
// durable's filter should be its own part of the stream, as their counts
// are summed) and the oldest callback one of them has not handled. A
// consumer that does not exist has no backlog to read and is listed in
// MissingConsumers; without the stream, nothing is (a deployment that
// never started).
func ReadIntake(ctx context.Context, js jetstream.JetStream, durables []string, now time.Time) (Intake, error) {
	var in Intake
	var stream jetstream.Stream
	for _, d := range durables {
		c, err := js.Consumer(ctx, intake.StreamName, d)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			// The server looks the stream up first: the stream is there.
			in.MissingConsumers = append(in.MissingConsumers, d)
			continue
		}
		if err != nil {
			return in, fmt.Errorf("health: consumer %s: %w", d, err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			return in, fmt.Errorf("health: consumer %s: %w", d, err)
		}
		in.Waiting += info.NumPending
		in.Handling += uint64(info.NumAckPending)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			continue
		}
		if stream == nil {
			if stream, err = js.Stream(ctx, intake.StreamName); err != nil {
				return in, fmt.Errorf("health: stream %s: %w", intake.StreamName, err)
			}
		}
		t, err := oldestUnacked(ctx, stream, info)
		if err != nil {
			return in, err
		}
		if !t.IsZero() && (in.OldestUnhandled == nil || t.Before(*in.OldestUnhandled)) {
			t = t.UTC()
			in.OldestUnhandled = &t
		}
	}
	if in.OldestUnhandled != nil {
		in.OldestUnhandledAgeSeconds = max(0, now.Sub(*in.OldestUnhandled).Seconds())
	}
	return in, nil
}

// oldestUnacked returns when the consumer's oldest unacked record was
// stored: the first record of its filter after the ack floor, which is
// unacked by the floor's definition (every record up to it is acked). Zero
// when there is none (aged out meanwhile).
func oldestUnacked(ctx context.Context, s jetstream.Stream, info *jetstream.ConsumerInfo) (time.Time, error) {
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append(filters, info.Config.FilterSubject)
	}
	if len(filters) == 0 {
		filters = []string{""}
	}
	seq := info.AckFloor.Stream + 1
	var oldest time.Time
	for _, f := range filters {
		var opts []jetstream.GetMsgOpt
		if f != "" {
			opts = append(opts, jetstream.WithGetMsgSubject(f))
		}
		m, err := s.GetMsg(ctx, seq, opts...)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("health: oldest unhandled callback: %w", err)
		}
		if oldest.IsZero() || m.Time.Before(oldest) {
			oldest = m.Time
		}
	}
	return oldest, nil
}

// ReadDeadLetters counts the dead letters by kind; no dead-letter stream
// means none.
func ReadDeadLetters(ctx context.Context, js jetstream.JetStream, prefix string) (DeadLetters, error) {
	var (
		dl  DeadLetters
		err error
	)
	d, err := deadletter.New(js, prefix) // no I/O; reads only
	if err != nil {
		return dl, fmt.Errorf("health: %w", err)
	}
	if dl.Callback, err = d.Count(ctx, wecomhit.DeadLetterCallback); err != nil {
		return dl, fmt.Errorf("health: %w", err)
	}
	if dl.Hit, err = d.Count(ctx, wecomhit.DeadLetterHit); err != nil {
		return dl, fmt.Errorf("health: %w", err)
	}
	return dl, nil
}

// Streams whose storage is reported, in order.
var storageStreams = []string{intake.StreamName, publish.StreamName, publish.CorpStreamName, DeadLetterStream}

// ReadStorage reads the account's storage and that of our streams, as the
// server reports them. storeLimit stands for the account's limit when the
// server reports none (Target.StoreLimit); 0: none.
func ReadStorage(ctx context.Context, js jetstream.JetStream, storeLimit int64) (Storage, error) {
	st := Storage{Streams: []StreamStorage{}}
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		return st, fmt.Errorf("health: account info: %w", err)
	}
	st.UsedBytes = ai.Store
	if limit := cmp.Or(max(ai.Limits.MaxStore, 0), storeLimit); limit > 0 {
		st.LimitBytes = limit
		st.UsedRatio = float64(ai.Store) / float64(limit)
	}
	for _, name := range storageStreams {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("health: stream %s: %w", name, err)
		}
		info := s.CachedInfo()
		ss := StreamStorage{Stream: name, Bytes: info.State.Bytes, Messages: info.State.Msgs}
		if info.Config.MaxBytes > 0 {
			ss.MaxBytes = info.Config.MaxBytes
			st.UsedRatio = max(st.UsedRatio, float64(ss.Bytes)/float64(ss.MaxBytes))
		}
		st.Streams = append(st.Streams, ss)
	}
	st.UsedRatio = math.Min(st.UsedRatio, 1)
	return st, nil
}

// ReadTicket describes the suite's stored ticket, never the ticket itself.
// No bucket or no entry reads as no ticket.
func ReadTicket(ctx context.Context, js jetstream.JetStream, suiteID string, now time.Time) (Suite, error) {
	s := Suite{SuiteID: suiteID}
	kv, err := js.KeyValue(ctx, wecom.TicketBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("health: bucket %s: %w", wecom.TicketBucket, err)
	}
	st, err := wecom.NewTicketStore(kv).Status(ctx, suiteID)
	if err != nil {
		return s, fmt.Errorf("health: suite %s ticket: %w", suiteID, err)
	}
	s.HasPrevious, s.Rejections = st.HasPrevious, st.Rejections
	if !st.RejectedAt.IsZero() {
		t := st.RejectedAt.UTC()
		s.LastRejected = &t
	}
	if st.Present {
		t := st.ReceivedAt.UTC()
		age := max(0, now.Sub(t).Seconds())
		s.ReceivedAt, s.AgeSeconds = &t, &age
	}
	return s, nil
}

// sortReasons orders reasons by severity, then code, app and corp.
func sortReasons(rs []Reason) {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Stalls != rs[j].Stalls {
			return rs[i].Stalls
		}
		return rs[i].Code < rs[j].Code
	})
}
