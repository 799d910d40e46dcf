package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// dlqCommand lists and replays dead letters (docs/dead-letters.md) through
// a running receiver's NATS.
type dlqCommand struct {
	env Env
}

const dlqUsage = `Usage: receiver dlq COMMAND [flags]

List and replay dead letters: records the receiver gave up on, kept in the
WECOM_DEAD_LETTERS stream (see docs/dead-letters.md). Works through a
running receiver's NATS (nats.url, or nats.listen of the embedded server).

Commands:
  list                   the dead letters the filters select, oldest first
  replay -seq N[,N...]   store these callback dead letters again for handling
  replay -all            the same, for every callback dead letter the filters select

Filters (list, and replay -all): -app NAME, -corp ID, -kind hit|callback,
-reason REASON (unknown_app, unknown_corp, max_deliveries, bad_record,
permanent, normalize:...). Every command takes -config FILE, -creds FILE and
-o table|json.

A replayed callback is stored in WECOM_CALLBACKS under a new message id; the
receiver removes its dead letter once it has handled it (or dead-lettered it
anew), so a later replay finds nothing to do, and one repeated before that
stores nothing twice. Hit dead letters are not callbacks and cannot be
replayed: fix what the reason names, then run "receiver backfill" for the
corp.

Exit status: 0 done, 1 connection error or a replay that failed, 2 usage error.
`

func (c *dlqCommand) Run(ctx context.Context, args []string) error {
	return runVerb(ctx, c.env, "dlq", dlqUsage, []verb{{"list", c.list}, {"replay", c.replay}}, args)
}

// dlqFlags are the flags every dlq command shares.
type dlqFlags struct {
	config, app, corp, kind, reason, creds *string
	out                                    Output
}

func (c *dlqCommand) flagSet(sub, help string) (*flag.FlagSet, *dlqFlags) {
	fs := c.env.FlagSet("dlq "+sub, "dlq "+sub+" [flags]", help)
	f := &dlqFlags{}
	f.config = ConfigFlag(fs, c.env)
	f.app = fs.String("app", "", "only dead letters of app `name`")
	f.corp = fs.String("corp", "", "only dead letters of corp `id`")
	f.kind = fs.String("kind", "", "only `kind` hit or callback")
	f.reason = fs.String("reason", "", "only dead letters with `reason` (e.g. unknown_corp)")
	OutputVar(fs, &f.out)
	f.creds = credsFlag(fs)
	return fs, f
}

// parse parses a dlq command's flags, and reads the filters.
func (f *dlqFlags) parse(fs *flag.FlagSet, args []string) (deadletter.Filter, error) {
	if err := parseNoArgs(fs, args); err != nil {
		return deadletter.Filter{}, err
	}
	switch *f.kind {
	case "", wecomhit.DeadLetterHit, wecomhit.DeadLetterCallback:
	default:
		return deadletter.Filter{}, fmt.Errorf("%w: -kind %q: want hit or callback", ErrUsage, *f.kind)
	}
	return deadletter.Filter{App: *f.app, CorpID: *f.corp, Kind: *f.kind, Reason: *f.reason}, nil
}

// open loads the configuration and connects to the receiver's NATS.
func (f *dlqFlags) open(ctx context.Context, e Env) (*config.Config, jetstream.JetStream, func(), error) {
	cfg, err := e.config(*f.config)
	if err != nil {
		return nil, nil, nil, err
	}
	log := e.Log()
	b, err := app.Dial(ctx, cfg, "wecom-receiver-dlq", *f.creds, log)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, b.JetStream(), func() { app.CloseBroker(b) }, nil
}

func (c *dlqCommand) list(ctx context.Context, args []string) error {
	fs, f := c.flagSet("list", "Lists dead letters, oldest first: SEQ, DEAD_AT (local time), KIND, APP,\n"+
		"CORP, CALLBACK (the callback's kind), REASON, TRIES (deliveries), ERROR.\n"+
		"-o json prints one object per line with the same facts; records are not\n"+
		"printed (a callback's holds its token).\n")
	filter, err := f.parse(fs, args)
	if err != nil {
		return err
	}
	cfg, js, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	lctx, cancel := context.WithTimeout(ctx, app.ListTimeout)
	defer cancel()
	dls, err := deadletter.New(js, cfg.NATS.SubjectPrefix)
	if err != nil {
		return err
	}
	entries, err := dls.List(lctx, filter)
	if err != nil {
		return err
	}
	if f.out == JSON {
		shown := make([]app.DLQEntry, len(entries))
		for i := range entries {
			shown[i] = app.NewDLQEntry(&entries[i])
		}
		return format.WriteJSONLines(c.env.Stdout, shown)
	}
	var tb format.Table
	tb.Add("SEQ", "DEAD_AT", "KIND", "APP", "CORP", "CALLBACK", "REASON", "TRIES", "ERROR")
	for _, e := range entries {
		tb.Add(strconv.FormatUint(e.Seq, 10), e.DeadAt.Local().Format(time.DateTime), e.Kind, e.App,
			e.CorpID, string(e.CallbackKind), e.Reason, strconv.Itoa(e.Deliveries), e.Error)
	}
	return tb.Write(c.env.Stdout)
}

func (c *dlqCommand) replay(ctx context.Context, args []string) error {
	fs, f := c.flagSet("replay", "Stores callback dead letters in WECOM_CALLBACKS again, under a new message\n"+
		"id; the receiver removes each dead letter once it has handled the record.\n"+
		"Give -seq (from list) or -all with filters. Prints one line per dead\n"+
		"letter: SEQ, RESULT (replayed, not_found, skipped, failed), DETAIL.\n")
	seqs := fs.String("seq", "", "comma-separated dead-letter `sequences` to replay")
	all := fs.Bool("all", false, "replay every callback dead letter the filters select")
	filter, err := f.parse(fs, args)
	if err != nil {
		return err
	}
	list, err := replaySelection(*all, *seqs, &filter)
	if err != nil {
		return err
	}
	cfg, js, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	p := cfg.NATS.SubjectPrefix
	in, err := intake.New(js, p)
	if err != nil {
		return err
	}
	dls, err := deadletter.New(js, p)
	if err != nil {
		return err
	}
	r := app.NewReplayer(in, dls)
	var results []app.ReplayResult
	if *all {
		results, err = r.ReplayMatching(ctx, filter)
	} else {
		results, err = r.ReplaySeqs(ctx, list)
	}
	if err != nil {
		return err
	}
	if err := c.printResults(results, f.out); err != nil {
		return err
	}
	failed := 0
	for _, res := range results {
		if res.Result == app.ReplayFailed {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d replays failed; their dead letters are kept", failed, len(results))
	}
	return nil
}

// replaySelection checks replay's -all and -seq against the filters: the
// sequences of -seq, or with -all the filter narrowed to callbacks.
func replaySelection(all bool, seqs string, filter *deadletter.Filter) ([]uint64, error) {
	var list []uint64
	switch {
	case all && seqs != "":
		return nil, fmt.Errorf("%w: give -seq or -all, not both", ErrUsage)
	case !all && seqs == "":
		return nil, fmt.Errorf("%w: give -seq N[,N...] or -all", ErrUsage)
	case all:
		if filter.Kind == wecomhit.DeadLetterHit {
			return nil, fmt.Errorf("%w: hit dead letters cannot be replayed: fix the cause, then run backfill for the corp", ErrUsage)
		}
		filter.Kind = wecomhit.DeadLetterCallback
	default:
		if *filter != (deadletter.Filter{}) {
			return nil, fmt.Errorf("%w: filters go with -all; -seq names the dead letters", ErrUsage)
		}
		for s := range strings.SplitSeq(seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("%w: -seq %q: want positive integers", ErrUsage, s)
			}
			list = append(list, n)
		}
	}
	return list, nil
}

// printResults prints replay's results: SEQ, RESULT, DETAIL.
func (c *dlqCommand) printResults(results []app.ReplayResult, out Output) error {
	if out == JSON {
		return format.WriteJSONLines(c.env.Stdout, results)
	}
	var tb format.Table
	tb.Add("SEQ", "RESULT", "DETAIL")
	for _, res := range results {
		tb.Add(strconv.FormatUint(res.Seq, 10), res.Result, res.Detail)
	}
	return tb.Write(c.env.Stdout)
}
