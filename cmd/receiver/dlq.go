package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/intake"
)

// dlqCommand lists and replays dead letters (docs/dead-letters.md) through
// a running receiver's NATS.
type dlqCommand struct {
	env env
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
	out                                    outputFormat
}

func (c *dlqCommand) flagSet(sub, help string) (*flag.FlagSet, *dlqFlags) {
	fs := c.env.flagSet("dlq "+sub, "dlq "+sub+" [flags]", help)
	f := &dlqFlags{}
	f.config = configFlag(fs, c.env)
	f.app = fs.String("app", "", "only dead letters of app `name`")
	f.corp = fs.String("corp", "", "only dead letters of corp `id`")
	f.kind = fs.String("kind", "", "only `kind` hit or callback")
	f.reason = fs.String("reason", "", "only dead letters with `reason` (e.g. unknown_corp)")
	cli.OutputVar(fs, &f.out)
	f.creds = credsFlag(fs)
	return fs, f
}

func (f *dlqFlags) filter() (deadletter.Filter, error) {
	switch *f.kind {
	case "", wecomhit.DeadLetterHit, wecomhit.DeadLetterCallback:
	default:
		return deadletter.Filter{}, fmt.Errorf("%w: -kind %q: want hit or callback", errUsage, *f.kind)
	}
	return deadletter.Filter{App: *f.app, CorpID: *f.corp, Kind: *f.kind, Reason: *f.reason}, nil
}

// open loads the configuration and connects to the receiver's NATS.
func (f *dlqFlags) open(ctx context.Context, e env) (*config.Config, jetstream.JetStream, func(), error) {
	if *f.config == "" {
		return nil, nil, nil, fmt.Errorf("%w: -config FILE or RECEIVER_CONFIG is required", errUsage)
	}
	cfg, err := e.loadConfig(*f.config)
	if err != nil {
		return nil, nil, nil, err
	}
	log := e.cmdLog()
	b, err := dialNATS(ctx, cfg, "wecom-receiver-dlq", log, withCreds(*f.creds))
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, b.JetStream(), func() { closeBroker(b) }, nil
}

// dlqEntry is a dead letter as list shows it: everything but the record,
// which for a callback holds its token and decrypted body.
type dlqEntry struct {
	Seq          uint64        `json:"seq"`
	Subject      string        `json:"subject"`
	Kind         string        `json:"kind"`
	Reason       string        `json:"reason"`
	Error        string        `json:"error"`
	App          string        `json:"app"`
	CorpID       string        `json:"corp_id"`
	CallbackKind wecomhit.Kind `json:"callback_kind,omitempty"`
	Source       string        `json:"source,omitempty"`
	DeadAt       time.Time     `json:"dead_at"`
	Deliveries   int           `json:"deliveries"`
}

func newDLQEntry(e *deadletter.Entry) dlqEntry {
	return dlqEntry{
		Seq: e.Seq, Subject: e.Subject, Kind: e.Kind, Reason: e.Reason, Error: e.Error,
		App: e.App, CorpID: e.CorpID, CallbackKind: e.CallbackKind, Source: e.Source,
		DeadAt: e.DeadAt, Deliveries: e.Deliveries,
	}
}

func (c *dlqCommand) list(ctx context.Context, args []string) error {
	fs, f := c.flagSet("list", "Lists dead letters, oldest first: SEQ, DEAD_AT (local time), KIND, APP,\n"+
		"CORP, CALLBACK (the callback's kind), REASON, TRIES (deliveries), ERROR.\n"+
		"-o json prints one object per line with the same facts; records are not\n"+
		"printed (a callback's holds its token).\n")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	filter, err := f.filter()
	if err != nil {
		return err
	}
	cfg, js, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	entries, err := deadletter.New(js, cfg.NATS.SubjectPrefix, deadletter.Options{}).List(lctx, filter)
	if err != nil {
		return err
	}
	if f.out == outputJSON {
		out := newJSONLines(c.env.stdout)
		for i := range entries {
			if err := out.write(newDLQEntry(&entries[i])); err != nil {
				return err
			}
		}
		return nil
	}
	var tb table
	tb.add("SEQ", "DEAD_AT", "KIND", "APP", "CORP", "CALLBACK", "REASON", "TRIES", "ERROR")
	for _, e := range entries {
		tb.add(strconv.FormatUint(e.Seq, 10), e.DeadAt.Local().Format(time.DateTime), e.Kind, e.App,
			e.CorpID, string(e.CallbackKind), e.Reason, strconv.Itoa(e.Deliveries), e.Error)
	}
	return tb.write(c.env.stdout)
}

func (c *dlqCommand) replay(ctx context.Context, args []string) error {
	fs, f := c.flagSet("replay", "Stores callback dead letters in WECOM_CALLBACKS again, under a new message\n"+
		"id; the receiver removes each dead letter once it has handled the record.\n"+
		"Give -seq (from list) or -all with filters. Prints one line per dead\n"+
		"letter: SEQ, RESULT (replayed, not_found, skipped, failed), DETAIL.\n")
	seqs := fs.String("seq", "", "comma-separated dead-letter `sequences` to replay")
	all := fs.Bool("all", false, "replay every callback dead letter the filters select")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	filter, err := f.filter()
	if err != nil {
		return err
	}
	var list []uint64
	switch {
	case *all && *seqs != "":
		return fmt.Errorf("%w: give -seq or -all, not both", errUsage)
	case !*all && *seqs == "":
		return fmt.Errorf("%w: give -seq N[,N...] or -all", errUsage)
	case *all:
		if filter.Kind == wecomhit.DeadLetterHit {
			return fmt.Errorf("%w: hit dead letters cannot be replayed: fix the cause, then run backfill for the corp", errUsage)
		}
		filter.Kind = wecomhit.DeadLetterCallback
	case *seqs != "":
		if filter != (deadletter.Filter{}) {
			return fmt.Errorf("%w: filters go with -all; -seq names the dead letters", errUsage)
		}
		for s := range strings.SplitSeq(*seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil || n == 0 {
				return fmt.Errorf("%w: -seq %q: want positive integers", errUsage, s)
			}
			list = append(list, n)
		}
	}
	cfg, js, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	r := newReplayer(js, cfg.NATS.SubjectPrefix)
	var results []replayResult
	if *all {
		results, err = r.replayMatching(ctx, filter)
	} else {
		results, err = r.replaySeqs(ctx, list)
	}
	if err != nil {
		return err
	}
	if f.out == outputJSON {
		out := newJSONLines(c.env.stdout)
		for _, res := range results {
			if err := out.write(res); err != nil {
				return err
			}
		}
	} else {
		var tb table
		tb.add("SEQ", "RESULT", "DETAIL")
		for _, res := range results {
			tb.add(strconv.FormatUint(res.Seq, 10), res.Result, res.Detail)
		}
		if err := tb.write(c.env.stdout); err != nil {
			return err
		}
	}
	failed := 0
	for _, res := range results {
		if res.Result == replayFailed {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d replays failed; their dead letters are kept", failed, len(results))
	}
	return nil
}

// Results of replaying one dead letter.
const (
	replayReplayed = "replayed"  // stored for handling; the receiver removes the dead letter once it is handled
	replayNotFound = "not_found" // no dead letter at that sequence (replayed already, or aged out)
	replaySkipped  = "skipped"   // not a callback that can be replayed; kept
	replayFailed   = "failed"    // storing failed; kept, try again
)

// replayResult is what replaying one dead letter did.
type replayResult struct {
	Seq    uint64 `json:"seq"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// replayer stores callback dead letters again in WECOM_CALLBACKS; the
// dlq command and the admin API share it.
type replayer struct {
	intake *intake.Store
	dlq    *deadletter.Stream
}

func newReplayer(js jetstream.JetStream, prefix string) *replayer {
	return &replayer{
		intake: intake.New(js, prefix, intake.Options{}),
		dlq:    deadletter.New(js, prefix, deadletter.Options{}),
	}
}

func (r *replayer) replaySeqs(ctx context.Context, seqs []uint64) ([]replayResult, error) {
	out := make([]replayResult, 0, len(seqs))
	for _, seq := range seqs {
		gctx, cancel := context.WithTimeout(ctx, replayTimeout)
		e, err := r.dlq.Get(gctx, seq)
		cancel()
		switch {
		case errors.Is(err, deadletter.ErrNotFound):
			out = append(out, replayResult{Seq: seq, Result: replayNotFound})
			continue
		case err != nil && e.Seq == 0:
			return out, err
		}
		out = append(out, r.replay(ctx, &e))
	}
	return out, nil
}

func (r *replayer) replayMatching(ctx context.Context, f deadletter.Filter) ([]replayResult, error) {
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	entries, err := r.dlq.List(lctx, f)
	cancel()
	if err != nil {
		return nil, err
	}
	out := make([]replayResult, 0, len(entries))
	for i := range entries {
		out = append(out, r.replay(ctx, &entries[i]))
	}
	return out, nil
}

// replay stores one callback dead letter again. The message id, the
// callback's id and the dead letter's sequence, is new to the duplicate
// window, yet the same when a replay is repeated, so the repeat stores
// nothing twice. The receiver removes the dead letter once the replayed
// record has ended (handled, or dead anew under a new sequence): the
// operator's NATS role may not delete stored messages, and the dead letter
// stays listed until the replay has really been handled.
func (r *replayer) replay(ctx context.Context, e *deadletter.Entry) replayResult {
	res := replayResult{Seq: e.Seq}
	switch {
	case e.Kind == wecomhit.DeadLetterHit:
		res.Result, res.Detail = replaySkipped, "a hit record is not a callback: fix the cause, then run backfill for the corp"
		return res
	case e.Kind != wecomhit.DeadLetterCallback || e.Reason == wecomhit.ReasonBadRecord:
		res.Result, res.Detail = replaySkipped, "not a callback record that can be handled"
		return res
	}
	var cb struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(e.Record, &cb); err != nil || cb.ID == "" {
		res.Result, res.Detail = replaySkipped, "the record has no callback id"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	msgID := cb.ID + "/replay/" + strconv.FormatUint(e.Seq, 10)
	if err := r.intake.Restore(ctx, e.Record, msgID, e.Seq); err != nil {
		res.Result, res.Detail = replayFailed, err.Error()
		if errors.Is(err, intake.ErrInvalidRecord) {
			res.Result = replaySkipped
		}
		return res
	}
	res.Result = replayReplayed
	return res
}

// Timeouts of the dlq commands' NATS calls: a refused request (a role
// without the right) gets no answer, and must not hang the command.
const (
	listTimeout   = 30 * time.Second
	replayTimeout = 10 * time.Second
)
