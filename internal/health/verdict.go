package health

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit/internal/intake"
)

// Verdict statuses.
const (
	// StatusOK: nothing needs a person.
	StatusOK = "OK"
	// StatusDegraded: part of the work fails (a corp, a suite) or records
	// were given up on; the rest goes on.
	StatusDegraded = "DEGRADED"
	// StatusStalled: the deployment as a whole is not getting its work
	// done: callbacks wait unhandled (or have no consumer to handle
	// them), or the store is full.
	StatusStalled = "STALLED"
)

// Reason codes: why a verdict is not OK.
const (
	ReasonIntakeStalled = "intake_stalled" // oldest unhandled callback too old
	// ReasonIntakeUnbound: an intake consumer does not exist although
	// WECOM_CALLBACKS does; its callbacks are stored, answered success
	// and handled by no one, and intake_stalled cannot see them.
	ReasonIntakeUnbound = "intake_unbound"
	ReasonStorageFull   = "storage_full"   // a stream or the account is full
	ReasonStorageHigh   = "storage_high"   // above Thresholds.MaxStorageRatio
	ReasonCorpFailing   = "corp_failing"   // consecutive fetch failures
	ReasonTicketMissing = "ticket_missing" // a suite app has no ticket
	// ReasonTicketRejected: WeCom refused the suite's ticket (40085), it
	// was dropped, and no other is left until WeCom's next push.
	ReasonTicketRejected = "ticket_rejected"
	ReasonTicketOld      = "ticket_old"   // the newest ticket is too old
	ReasonDeadLetters    = "dead_letters" // records were given up on
)

// Thresholds decide when a fact needs a person.
type Thresholds struct {
	// MaxCallbackAge: an unhandled callback older than this stalls the
	// verdict. Default 1m.
	MaxCallbackAge time.Duration
	// MaxFailures: this many consecutive failed fetches of a corp
	// degrade it. Default 3.
	MaxFailures int
	// MaxTicketAge: a suite whose newest ticket is older degrades (WeCom
	// pushes one every 10 minutes, each valid for 30). Default 40m.
	MaxTicketAge time.Duration
	// MaxStorageRatio: storage use above this degrades. Default 0.9.
	MaxStorageRatio float64
	// CallbackRoom is the room a callback of the largest size takes in
	// WECOM_CALLBACKS (intake.RecordLimit of the body limit). With less
	// left in that stream or the store (the function CallbackRoom), every
	// replica's /readyz fails and callbacks are refused: storage_full,
	// whatever the ratio. 0: only the ratio counts.
	CallbackRoom int64
}

// DefaultThresholds are the thresholds status uses unless told otherwise.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxCallbackAge: time.Minute, MaxFailures: 3, MaxTicketAge: 40 * time.Minute, MaxStorageRatio: 0.9}
}

// storageFull is the use at which a store counts as full: a stream that
// refuses new messages has room left smaller than one record.
const storageFull = 0.99

// Verdict is the judgement of a Report.
type Verdict struct {
	Status  string   `json:"status"`
	Reasons []Reason `json:"reasons"`
}

// Reason is one fact that needs a person; the fields that apply are set.
type Reason struct {
	Code string `json:"code"`
	// Stalls is true for the reasons that make the verdict STALLED.
	Stalls  bool   `json:"stalls"`
	App     string `json:"app,omitempty"`
	CorpID  string `json:"corp_id,omitempty"`
	SuiteID string `json:"suite_id,omitempty"`
	Stream  string `json:"stream,omitempty"`
	// Consumer is the intake consumer (durable) of intake_unbound.
	Consumer string `json:"consumer,omitempty"`
	// Value is the measured quantity (seconds, a count or a ratio) and
	// Limit the threshold it crossed.
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	// API and Errcode are a failing corp's last error.
	API     string `json:"api,omitempty"`
	Errcode int    `json:"errcode,omitempty"`
}

// Judge decides the verdict of rep.
func Judge(rep Report, th Thresholds) Verdict {
	v := Verdict{Status: StatusOK, Reasons: []Reason{}}
	add := func(r Reason) { v.Reasons = append(v.Reasons, r) }
	if age := rep.Intake.OldestUnhandledAgeSeconds; rep.Intake.OldestUnhandled != nil && age > th.MaxCallbackAge.Seconds() {
		add(Reason{Code: ReasonIntakeStalled, Stalls: true, Value: age, Limit: th.MaxCallbackAge.Seconds()})
	}
	for _, c := range rep.Intake.MissingConsumers {
		add(Reason{Code: ReasonIntakeUnbound, Stalls: true, Consumer: c})
	}
	if r := rep.Storage.UsedRatio; r >= storageFull {
		add(Reason{Code: ReasonStorageFull, Stalls: true, Value: r, Limit: storageFull, Stream: fullestStream(rep.Storage)})
	} else if stream, full := noCallbackRoom(rep.Storage, th.CallbackRoom); full {
		add(Reason{Code: ReasonStorageFull, Stalls: true, Value: r, Limit: storageFull, Stream: stream})
	} else if r > th.MaxStorageRatio {
		add(Reason{Code: ReasonStorageHigh, Value: r, Limit: th.MaxStorageRatio, Stream: fullestStream(rep.Storage)})
	}
	for _, c := range rep.Corps {
		if c.ConsecutiveFailures >= th.MaxFailures && c.ConsecutiveFailures > 0 {
			r := Reason{Code: ReasonCorpFailing, App: c.App, CorpID: c.CorpID,
				Value: float64(c.ConsecutiveFailures), Limit: float64(th.MaxFailures)}
			if e := c.LastError; e != nil {
				r.API, r.Errcode = e.API, e.Errcode
			}
			add(r)
		}
	}
	for _, s := range rep.Suites {
		switch {
		case s.AgeSeconds == nil && s.LastRejected != nil:
			add(Reason{Code: ReasonTicketRejected, App: s.App, SuiteID: s.SuiteID, Value: float64(s.Rejections)})
		case s.AgeSeconds == nil:
			add(Reason{Code: ReasonTicketMissing, App: s.App, SuiteID: s.SuiteID, Limit: th.MaxTicketAge.Seconds()})
		case *s.AgeSeconds > th.MaxTicketAge.Seconds():
			add(Reason{Code: ReasonTicketOld, App: s.App, SuiteID: s.SuiteID, Value: *s.AgeSeconds, Limit: th.MaxTicketAge.Seconds()})
		}
	}
	if n := rep.DeadLetters.Callback + rep.DeadLetters.Hit; n > 0 {
		add(Reason{Code: ReasonDeadLetters, Value: float64(n)})
	}
	sortReasons(v.Reasons)
	for _, r := range v.Reasons {
		if r.Stalls {
			v.Status = StatusStalled
			break
		}
		v.Status = StatusDegraded
	}
	return v
}

// ErrNoRoom: the store cannot take one more callback of the largest size.
var ErrNoRoom = errors.New("no room for a callback")

// CallbackRoom returns nil when WECOM_CALLBACKS and the store it lives on
// each have at least need bytes left in st, and otherwise an error wrapping
// ErrNoRoom that names which is full (nothing internal: fit for logs and
// the admin /readyz). /readyz and the verdict both judge by it, so a
// replica that refuses callbacks is never reported OK.
func CallbackRoom(st Storage, need int64) error {
	stream, full := noCallbackRoom(st, need)
	switch {
	case !full:
		return nil
	case stream == "":
		return fmt.Errorf("%w: jetstream store has %d of %d bytes left", ErrNoRoom, max(st.LimitBytes-int64(st.UsedBytes), 0), st.LimitBytes)
	}
	for _, s := range st.Streams {
		if s.Stream == stream {
			return fmt.Errorf("%w: stream %s has %d of %d bytes left", ErrNoRoom, stream, max(s.MaxBytes-int64(s.Bytes), 0), s.MaxBytes)
		}
	}
	return fmt.Errorf("%w: stream %s", ErrNoRoom, stream)
}

// noCallbackRoom reports whether WECOM_CALLBACKS, or the account, has less
// than room bytes left, and names the stream ("" for the account).
func noCallbackRoom(st Storage, room int64) (string, bool) {
	if room <= 0 {
		return "", false
	}
	if st.LimitBytes > 0 && st.LimitBytes-int64(st.UsedBytes) < room {
		return "", true
	}
	for _, s := range st.Streams {
		if s.Stream == intake.StreamName && s.MaxBytes > 0 && s.MaxBytes-int64(s.Bytes) < room {
			return s.Stream, true
		}
	}
	return "", false
}

// fullestStream names the stream with the highest use of its limit, or ""
// when the account is fuller than any.
func fullestStream(st Storage) string {
	best, name := 0.0, ""
	for _, s := range st.Streams {
		if s.MaxBytes > 0 {
			if r := float64(s.Bytes) / float64(s.MaxBytes); r > best {
				best, name = r, s.Stream
			}
		}
	}
	if st.LimitBytes > 0 && float64(st.UsedBytes)/float64(st.LimitBytes) >= best {
		return ""
	}
	return name
}

// Line is the verdict in one line for people, e.g. "DEGRADED: archive/ww1:
// get_suite_token errcode 40085, 5 failed fetches in a row".
func (v Verdict) Line() string {
	if len(v.Reasons) == 0 {
		return v.Status
	}
	parts := make([]string, len(v.Reasons))
	for i, r := range v.Reasons {
		parts[i] = r.Text()
	}
	return v.Status + ": " + strings.Join(parts, "; ")
}

// Text says one reason in words.
func (r Reason) Text() string {
	secs := func(s float64) string { return (time.Duration(s) * time.Second).String() }
	where := func() string {
		if r.Stream != "" {
			return "stream " + r.Stream
		}
		return "account"
	}
	switch r.Code {
	case ReasonIntakeStalled:
		return fmt.Sprintf("oldest unhandled callback waits %s (limit %s)", secs(r.Value), secs(r.Limit))
	case ReasonIntakeUnbound:
		return fmt.Sprintf("intake consumer %s does not exist: its callbacks are stored and not handled", r.Consumer)
	case ReasonStorageFull:
		if r.Value < r.Limit {
			return fmt.Sprintf("storage full (%s %.0f%%, no room for a callback of the largest size)", where(), 100*r.Value)
		}
		return fmt.Sprintf("storage full (%s %.0f%%)", where(), 100*r.Value)
	case ReasonStorageHigh:
		return fmt.Sprintf("storage %.0f%% used (%s, limit %.0f%%)", 100*r.Value, where(), 100*r.Limit)
	case ReasonCorpFailing:
		what := "fetch failing"
		if r.API != "" {
			what = r.API + " failing"
			if r.Errcode != 0 {
				what = fmt.Sprintf("%s errcode %d", r.API, r.Errcode)
			}
		}
		n := fmt.Sprintf("%.0f failed fetches", r.Value)
		if r.Value == 1 {
			n = "1 failed fetch"
		}
		return fmt.Sprintf("%s/%s: %s, %s in a row", r.App, r.CorpID, what, n)
	case ReasonTicketMissing:
		return fmt.Sprintf("suite %s (app %s) has no suite_ticket", r.SuiteID, r.App)
	case ReasonTicketRejected:
		return fmt.Sprintf("suite %s (app %s) has no usable suite_ticket: WeCom rejected the last (40085)", r.SuiteID, r.App)
	case ReasonTicketOld:
		return fmt.Sprintf("suite %s (app %s) ticket is %s old (limit %s)", r.SuiteID, r.App, secs(r.Value), secs(r.Limit))
	case ReasonDeadLetters:
		return fmt.Sprintf("%.0f dead letters", r.Value)
	}
	return r.Code
}

// Attention returns the corps of r a person should look at: those a reason
// of the verdict names, and those whose latest fetch failed although not
// yet often enough for the verdict. The rest are healthy; status lists
// only these when there are too many corps to read (README "When something
// goes wrong").
func (r Report) Attention() []Corp {
	type appCorp struct{ app, corp string }
	named := map[appCorp]bool{}
	for _, rs := range r.Verdict.Reasons {
		if rs.CorpID != "" {
			named[appCorp{rs.App, rs.CorpID}] = true
		}
	}
	var out []Corp
	for _, c := range r.Corps {
		if c.ConsecutiveFailures > 0 || named[appCorp{c.App, c.CorpID}] {
			out = append(out, c)
		}
	}
	return out
}
