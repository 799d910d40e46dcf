package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/app"
)

// tailCommand prints hit events as they are stored: the contract, live.
type tailCommand struct {
	env Env
}

func (c *tailCommand) Run(ctx context.Context, args []string) error {
	fs := c.env.FlagSet("tail", "tail -config FILE [-since TIME] [-subject S] [-o json] [-n N]",
		"Prints hit events as they are stored: one line each (table), or each\n"+
			"event's JSON on a line (-o json). New events only, unless -since.")
	path := ConfigFlag(fs, c.env)
	creds := credsFlag(fs)
	subject := fs.String("subject", "", "subject `filter` (default <prefix>.hit.>; e.g. wecom.hit.wwCorp.> for one corp)")
	since := fs.String("since", "", "start at `TIME` (RFC 3339, or a duration ago such as 1h or 2d) instead of new events only")
	var out Output
	OutputVar(fs, &out)
	limit := fs.Int("n", 0, "stop after `N` events (0: run until interrupted)")
	if err := ParseConfigFlags(fs, args, path); err != nil {
		return err
	}
	cfg, err := c.env.LoadConfig(*path)
	if err != nil {
		return err
	}
	filter := *subject
	if filter == "" {
		filter = cfg.NATS.SubjectPrefix + ".hit.>"
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return fmt.Errorf("%w: -since: %w", ErrUsage, err)
		}
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	b, err := app.Dial(ctx, cfg, "wecom-receiver-tail", *creds, c.env.Log())
	if err != nil {
		return err
	}
	defer app.CloseBroker(b)
	hits, err := ReadHits(ctx, b.JetStream(), occ)
	if err != nil {
		return err
	}
	defer hits.Stop()
	if out == Table {
		_, _ = fmt.Fprintf(c.env.Stderr, "tailing %s; Ctrl-C to stop\n", filter)
	}
	_, err = hits.Print(ctx, c.env.Stdout, out, time.Local, *limit)
	return err
}
