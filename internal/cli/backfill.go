package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/rulecache"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// backfillCommand re-reads an (app, corp)'s hits from a point in time and
// publishes what the stream lacks. It connects to the NATS of a running
// receiver (nats.url, or the embedded server's nats.listen), never to an
// embedded store directly, which the running receiver owns.
type backfillCommand struct {
	env Env
}

func (c *backfillCommand) Run(ctx context.Context, args []string) error {
	fs := c.env.FlagSet("backfill", "backfill -config FILE [-app NAME] [-corp ID] -since TIME [-o json]",
		"Re-reads an app and corp's hits from TIME and publishes the events the\n"+
			"stream lacks; safe beside running receivers. Progress goes to stderr: a\n"+
			"bar with pages, events, rate and ETA on a terminal, a line per page\n"+
			"otherwise. The result, on stdout, is one line (or -o json: {\"app\",\n"+
			"\"corp\",\"since\",\"pages\",\"messages\",\"published\",\"skipped\",\"seconds\"}).")
	path := ConfigFlag(fs, c.env)
	creds := credsFlag(fs)
	appName := fs.String("app", "", "app `name` (apps[].name); may be left out when the configuration has one app")
	corp := fs.String("corp", "", "corp `id`; may be left out when the app has one corp")
	sinceArg := fs.String("since", "", "start `time`: RFC 3339 (2026-11-20T08:00:00+08:00) or a duration ago (6h, 2d); WeCom keeps 5 days")
	var out Output
	OutputVar(fs, &out)
	if err := ParseConfigFlags(fs, args, path); err != nil {
		return err
	}
	now := time.Now()
	since, err := parseSince(*sinceArg, now)
	if err != nil {
		return fmt.Errorf("%w: -since: %w", ErrUsage, err)
	}
	cfg, err := c.env.LoadConfig(*path)
	if err != nil {
		return err
	}
	a, err := pickApp(cfg, *appName)
	if err != nil {
		return err
	}
	log := c.env.Log()
	b, err := app.Dial(ctx, cfg, "wecom-receiver-backfill", *creds, log)
	if err != nil {
		return err
	}
	defer app.CloseBroker(b)
	js := b.JetStream()
	view, err := app.OpenCorpView(ctx, cfg, js, false, log, nil)
	if err != nil {
		return fmt.Errorf("is the receiver running? %w", err)
	}
	defer view.Close()
	if *corp, err = pickCorp(view.Dir, a.Name, *corp); err != nil {
		return err
	}
	client, err := app.NewClient(ctx, a, js, view, log)
	if err != nil {
		return err
	}
	f, pub, closeNames, err := backfillStages(ctx, cfg, js, a.Name, client, view, log)
	if err != nil {
		return err
	}
	defer closeNames()
	_, _ = fmt.Fprintf(c.env.Stderr, "backfill %s/%s since %s\n", a.Name, *corp, since.Format(time.RFC3339))
	show := newBackfillProgress(c.env.Stderr, since, now)
	p, err := f.Backfill(ctx, a.Name, *corp, since, pub, show.page)
	show.done()
	if err != nil {
		return err
	}
	return c.print(backfillResult{
		App: a.Name, Corp: *corp, Since: since, Pages: p.Pages, Messages: p.Messages,
		Published: p.Published, Skipped: p.Skipped, Seconds: time.Since(now).Seconds(),
	}, out)
}

// backfillStages builds what a backfill runs on: a publisher whose events
// carry rule names as the service's do (each page waits briefly for the
// names it lacks, rulecache.Resolve), checked against the running
// receiver's streams, and a fetcher for app's corps. closeNames stops the
// rule cache.
func backfillStages(ctx context.Context, cfg *config.Config, js jetstream.JetStream, appName string,
	client *wecom.Client, view *app.CorpView, log zerolog.Logger) (_ *fetch.Fetcher, _ *publish.Publisher, closeNames func(), err error) {
	names, err := rulecache.NewFunc(func(string) rulecache.Getter { return app.RuleNamer{Client: client} }, rulecache.WithLogger(log))
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if err != nil {
			names.Close()
		}
	}()
	pub, err := publish.New(js, cfg.NATS.SubjectPrefix, append(app.PublishOptions(cfg),
		publish.WithRuleNames(names), publish.WithLogger(log))...)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := pub.Ready(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("is the receiver running? %w", err)
	}
	fo := append(app.FetchOptions(cfg), fetch.WithLogger(log), fetch.WithCorps(view.Dir))
	f, err := fetch.New(js, []fetch.App{{Name: appName, API: client}}, pub, fo...)
	if err != nil {
		return nil, nil, nil, err
	}
	return f, pub, names.Close, nil
}

// print prints the result: a line, or res as JSON.
func (c *backfillCommand) print(res backfillResult, out Output) error {
	if out == JSON {
		return format.NewJSONLines(c.env.Stdout).Write(res)
	}
	_, err := fmt.Fprintf(c.env.Stdout, "done: %d pages, %d messages, %d events published, %d already stored, in %s\n",
		res.Pages, res.Messages, res.Published, res.Skipped, (time.Duration(res.Seconds * float64(time.Second))).Round(time.Millisecond))
	return err
}

// backfillResult is backfill's -o json output.
type backfillResult struct {
	App       string    `json:"app"`
	Corp      string    `json:"corp"`
	Since     time.Time `json:"since"`
	Pages     int       `json:"pages"`
	Messages  int       `json:"messages"`
	Published int       `json:"published"`
	Skipped   int       `json:"skipped"`
	Seconds   float64   `json:"seconds"`
}

// backfillProgress shows a backfill's pages as they go: a bar on a
// terminal, a plain line per page otherwise (a log file, a pipe).
type backfillProgress struct {
	w       io.Writer
	bar     *progressbar.ProgressBar // nil: plain lines
	since   time.Time
	started time.Time
	clock   func() time.Time
}

func newBackfillProgress(w io.Writer, since, now time.Time) *backfillProgress {
	return newBackfillProgressTo(w, IsTerminal(w), since, now, time.Now)
}

// newBackfillProgressTo is newBackfillProgress with the choice of a bar
// and the clock given, for tests.
func newBackfillProgressTo(w io.Writer, bar bool, since, now time.Time, clock func() time.Time) *backfillProgress {
	p := &backfillProgress{w: w, since: since, started: clock(), clock: clock}
	if bar {
		// The bar measures the time span read so far, since → now: pages
		// carry the send time of their newest message, so that is what the
		// ETA can be reckoned from; the number of hits ahead is unknown.
		p.bar = progressbar.NewOptions64(max(int64(now.Sub(since)/time.Second), 1),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("backfill"),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return p
}

func (p *backfillProgress) page(pr fetch.Progress) {
	if p.bar == nil {
		_, _ = fmt.Fprintf(p.w, "page %d: %d messages read, %d events published, %d already stored%s\n",
			pr.Pages, pr.Messages, pr.Published, pr.Skipped, sentSuffix(pr.LastSent))
		return
	}
	rate := 0.0
	if el := p.clock().Sub(p.started).Seconds(); el > 0 {
		rate = float64(pr.Published+pr.Skipped) / el
	}
	p.bar.Describe(fmt.Sprintf("%d pages, %d events (%d new), %.0f events/s", pr.Pages, pr.Published+pr.Skipped, pr.Published, rate))
	if pr.LastSent > 0 {
		_ = p.bar.Set64(max(pr.LastSent-p.since.Unix(), 0))
	}
}

// done ends the bar's line, so what follows starts on its own.
func (p *backfillProgress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
		_, _ = fmt.Fprintln(p.w)
	}
}

func sentSuffix(unix int64) string {
	if unix == 0 {
		return ""
	}
	return ", up to " + time.Unix(unix, 0).UTC().Format(time.RFC3339)
}

// parseSince reads an RFC 3339 time or a duration before now (6h, 5d:
// ParseDuration).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("required")
	}
	if d, err := ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("duration must be positive")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 or a duration such as 6h or 5d")
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("in the future")
	}
	return t, nil
}
