package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// statusCommand reports, from NATS, where every (app, corp) stands: so it
// describes the whole deployment, whichever replica answers.
type statusCommand struct {
	env env
}

// corpStatus is one row of the report; also its JSON form.
type corpStatus struct {
	App    string `json:"app"`
	CorpID string `json:"corp_id"`
	Cursor string `json:"cursor"`
	// CursorMoved is when a fetch last moved the cursor: after a page with
	// new hits. A fetch that finds nothing new leaves it as it was.
	CursorMoved *time.Time `json:"cursor_moved,omitempty"`
	// LastHit is the send time of the newest hit fetched, and LagSeconds
	// how long ago that was: on a quiet corp it grows although nothing is
	// wrong, so read it with the hit rate.
	LastHit     *time.Time `json:"last_hit,omitempty"`
	LagSeconds  *float64   `json:"lag_seconds,omitempty"`
	Pages       int64      `json:"pages"`
	Events      int64      `json:"events"`
	HitToken    string     `json:"hit_token"` // "none" or "valid for 6m0s"
	FetchingNow bool       `json:"fetching_now"`
}

type statusReport struct {
	PendingCallbacks  uint64       `json:"pending_callbacks"`
	HandlingCallbacks int          `json:"handling_callbacks"`
	Corps             []corpStatus `json:"corps"`
}

func (c *statusCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(c.env.stderr)
	path := configFlag(fs, c.env)
	creds := credsFlag(fs)
	out := fs.String("o", "table", "output: table or json")
	if err := parseFlags(fs, args, path); err != nil {
		return err
	}
	if *out != "table" && *out != "json" {
		return fmt.Errorf("%w: -o must be table or json", errUsage)
	}
	cfg, err := c.env.loadConfig(*path)
	if err != nil {
		return err
	}
	b, err := dialNATS(ctx, cfg, "wecom-receiver-status", zerolog.New(c.env.stderr).Level(zerolog.WarnLevel), withCreds(*creds))
	if err != nil {
		return err
	}
	defer closeBroker(b)
	rep, err := readStatus(ctx, b.JetStream(), cfg.Apps, time.Now())
	if err != nil {
		return err
	}
	if *out == "json" {
		enc := json.NewEncoder(c.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	_, _ = fmt.Fprintf(c.env.stdout, "callbacks: %d waiting, %d being handled\n\n", rep.PendingCallbacks, rep.HandlingCallbacks)
	tw := tabwriter.NewWriter(c.env.stdout, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "APP\tCORP\tCURSOR MOVED\tLAST HIT\tLAG\tPAGES\tEVENTS\tHIT TOKEN\tFETCHING\tCURSOR")
	for _, s := range rep.Corps {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", s.App, s.CorpID,
			ago(s.CursorMoved), ago(s.LastHit), lag(s.LagSeconds), s.Pages, s.Events, s.HitToken, yesNo(s.FetchingNow), short(s.Cursor, 16))
	}
	return tw.Flush()
}

// readStatus gathers the report from NATS.
func readStatus(ctx context.Context, js jetstream.JetStream, apps []config.App, now time.Time) (statusReport, error) {
	var rep statusReport
	bl, err := intake.ReadBacklog(ctx, js, "")
	if err != nil {
		return rep, err
	}
	rep.PendingCallbacks, rep.HandlingCallbacks = bl.Pending, bl.Handling
	for _, a := range apps {
		for _, corp := range appCorps(a) {
			st, err := fetch.ReadState(ctx, js, a.Name, corp)
			if err != nil {
				return rep, err
			}
			cs := corpStatus{App: a.Name, CorpID: corp, Cursor: st.Cursor.Cursor, Pages: st.Cursor.Pages,
				Events: st.Cursor.Events, HitToken: "none", FetchingNow: st.Fetching}
			if t := st.Cursor.UpdatedAt; !t.IsZero() {
				cs.CursorMoved = &t
			}
			if st.Cursor.LastHitTime > 0 {
				t := time.Unix(st.Cursor.LastHitTime, 0).UTC()
				lagS := now.Sub(t).Seconds()
				cs.LastHit, cs.LagSeconds = &t, &lagS
			}
			if left := st.HitTokenExpires.Sub(now); left > 0 {
				cs.HitToken = "valid for " + left.Round(time.Second).String()
			}
			rep.Corps = append(rep.Corps, cs)
		}
	}
	return rep, nil
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return time.Since(*t).Round(time.Second).String() + " ago"
}

func lag(s *float64) string {
	if s == nil {
		return "-"
	}
	return (time.Duration(*s) * time.Second).Round(time.Second).String()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
