package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// tailCommand prints hit events as they are stored: the contract, live.
type tailCommand struct {
	env env
}

func (c *tailCommand) Run(ctx context.Context, args []string) error {
	fs := c.env.flagSet("tail", "tail -config FILE [-since TIME] [-subject S] [-o json] [-n N]",
		"Prints hit events as they are stored: one line each (table), or each\n"+
			"event's JSON on a line (-o json). New events only, unless -since.")
	path := configFlag(fs, c.env)
	creds := credsFlag(fs)
	subject := fs.String("subject", "", "subject `filter` (default <prefix>.hit.>; e.g. wecom.hit.wwCorp.> for one corp)")
	since := fs.String("since", "", "start at `TIME` (RFC 3339, or a duration ago such as 1h or 2d) instead of new events only")
	var out cli.Output
	cli.OutputVar(fs, &out)
	limit := fs.Int("n", 0, "stop after `N` events (0: run until interrupted)")
	if err := parseFlags(fs, args, path); err != nil {
		return err
	}
	cfg, err := c.env.loadConfig(*path)
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
			return fmt.Errorf("%w: -since: %w", errUsage, err)
		}
		occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	b, err := dialNATS(ctx, cfg, "wecom-receiver-tail", c.env.cmdLog(), withCreds(*creds))
	if err != nil {
		return err
	}
	defer closeBroker(b)
	stream, err := b.JetStream().Stream(ctx, publish.StreamName)
	if err != nil {
		return fmt.Errorf("stream %s (is the receiver running?): %w", publish.StreamName, err)
	}
	cons, err := stream.OrderedConsumer(ctx, occ)
	if err != nil {
		return fmt.Errorf("tail %s: %w", filter, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("tail %s: %w", filter, err)
	}
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	if out == cli.Table {
		_, _ = fmt.Fprintf(c.env.stderr, "tailing %s; Ctrl-C to stop\n", filter)
	}
	for n := 0; *limit == 0 || n < *limit; n++ {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("tail: %w", err)
		}
		if out == cli.JSON {
			_, _ = fmt.Fprintf(c.env.stdout, "%s\n", msg.Data())
			continue
		}
		var ev wecomhit.HitEvent
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			_, _ = fmt.Fprintf(c.env.stdout, "(not a hit event on %s: %v)\n", msg.Subject(), err)
			continue
		}
		_, _ = fmt.Fprintln(c.env.stdout, formatHit(&ev, time.Local))
	}
	it.Stop()
	return nil
}
