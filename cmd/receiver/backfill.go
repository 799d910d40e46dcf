package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/publish"
	"github.com/wecomhit/wecomhit/internal/rulecache"
)

// backfillCommand re-reads an (app, corp)'s hits from a point in time and
// publishes what the stream lacks. It connects to the NATS of a running
// receiver (nats.url, or the embedded server's nats.listen), never to an
// embedded store directly, which the running receiver owns.
type backfillCommand struct {
	env env
}

func (c *backfillCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(c.env.stderr)
	path := configFlag(fs, c.env)
	creds := credsFlag(fs)
	app := fs.String("app", "", "app `name` (apps[].name)")
	corp := fs.String("corp", "", "corp `id`; may be left out when the app has one corp")
	sinceArg := fs.String("since", "", "start `time`: RFC 3339 (2026-11-20T08:00:00+08:00) or a duration ago (6h); WeCom keeps 5 days")
	if err := parseFlags(fs, args, path); err != nil {
		return err
	}
	now := time.Now()
	since, err := parseSince(*sinceArg, now)
	if err != nil {
		return fmt.Errorf("%w: -since: %w", errUsage, err)
	}
	cfg, err := c.env.loadConfig(*path)
	if err != nil {
		return err
	}
	a, ok := cfg.App(*app)
	if !ok {
		return fmt.Errorf("%w: -app %q is not configured (have %v)", errUsage, *app, cfg.AppNames())
	}
	corps := appCorps(*a)
	if *corp == "" && len(corps) == 1 {
		*corp = corps[0]
	}
	log := zerolog.New(c.env.stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	b, err := dialNATS(ctx, cfg, "wecom-receiver-backfill", log, withCreds(*creds))
	if err != nil {
		return err
	}
	defer closeBroker(b)
	js := b.JetStream()
	client, err := newClient(ctx, a, js, log)
	if err != nil {
		return err
	}
	// Events carry rule names as the service's do: each page waits briefly
	// for the names it lacks (rulecache.Resolve).
	getters := map[string]rulecache.Getter{}
	for _, id := range corps {
		getters[id] = ruleNamer{client}
	}
	names := rulecache.New(getters, log)
	defer names.Close()
	pub := publish.New(js, cfg.NATS.SubjectPrefix, names, log, publish.Options{
		Replicas: cfg.NATS.Replicas, MaxAge: cfg.Fetch.HitsMaxAge, DuplicateWindow: cfg.Fetch.HitsDuplicateWindow,
	})
	if err := pub.Ready(ctx); err != nil {
		return fmt.Errorf("is the receiver running? %w", err)
	}
	f, err := fetch.New(js, []fetch.App{{Name: a.Name, API: client, Corps: corps}}, pub, log, fetch.Options{
		PageSize: cfg.Fetch.PageSize, TokenlessPerMinute: cfg.Fetch.TokenlessPerMinute, Replicas: cfg.NATS.Replicas,
	})
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(c.env.stdout, "backfill %s/%s since %s\n", a.Name, *corp, since.Format(time.RFC3339))
	p, err := f.Backfill(ctx, a.Name, *corp, since, pub, func(p fetch.Progress) {
		_, _ = fmt.Fprintf(c.env.stdout, "page %d: %d messages read, %d events published, %d already stored%s\n",
			p.Pages, p.Messages, p.Published, p.Skipped, sentSuffix(p.LastSent))
	})
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(c.env.stdout, "done: %d pages, %d messages, %d events published, %d already stored, in %s\n",
		p.Pages, p.Messages, p.Published, p.Skipped, time.Since(now).Round(time.Millisecond))
	return nil
}

func sentSuffix(unix int64) string {
	if unix == 0 {
		return ""
	}
	return ", up to " + time.Unix(unix, 0).UTC().Format(time.RFC3339)
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("required")
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("duration must be positive")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 or a duration such as 6h")
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("in the future")
	}
	return t, nil
}
