package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/health"
)

// Exit codes of status (README "When something goes wrong"). 1 and 2 keep
// their meaning for every command: failure, usage.
const (
	// ExitAttention: the verdict is DEGRADED or STALLED; a person should
	// look.
	ExitAttention = 3
	// ExitUnknown: the facts could not be read: NATS unreachable or not
	// answering in time (a request the login may not make only times out,
	// so it ends here too). Nothing can be said.
	ExitUnknown = 4
)

// statusCommand reports, from NATS, how the deployment is doing: a verdict,
// the intake backlog, dead letters, storage, suite tickets and every
// (app, corp); so it describes the whole deployment, whichever replica
// answers.
type statusCommand struct {
	env Env
}

func (c *statusCommand) Run(ctx context.Context, args []string) error {
	fs := c.env.FlagSet("status", "status -config FILE [-o json] [-all] [-max-rows N] [thresholds]",
		"Reads the whole deployment's state from NATS: a verdict first (OK,\n"+
			"DEGRADED, STALLED), then the facts behind it. With more than -max-rows\n"+
			"corps, the table lists only those that need attention (-all: every\n"+
			"one); -o json always has every corp.\n\n"+
			"Exit status: 0 OK, 1 failure (a bad config), 2 usage error, 3 DEGRADED\n"+
			"or STALLED (a person should look), 4 UNKNOWN (NATS unreachable).")
	path := ConfigFlag(fs, c.env)
	creds := credsFlag(fs)
	var out Output
	OutputVar(fs, &out)
	all := fs.Bool("all", false, "list every corp in the table, however many")
	maxRows := fs.Int("max-rows", defaultMaxRows, "with more corps than this, the table lists only those that need attention")
	th := health.DefaultThresholds()
	DurationVar(fs, &th.MaxCallbackAge, "max-callback-age", th.MaxCallbackAge, "an unhandled callback older than this is STALLED")
	fs.IntVar(&th.MaxFailures, "max-failures", th.MaxFailures, "this many consecutive failed fetches of a corp is DEGRADED")
	DurationVar(fs, &th.MaxTicketAge, "max-ticket-age", th.MaxTicketAge, "a suite_ticket older than this is DEGRADED")
	fs.Float64Var(&th.MaxStorageRatio, "max-storage", th.MaxStorageRatio, "storage use above this fraction is DEGRADED")
	if err := ParseConfigFlags(fs, args, path); err != nil {
		return err
	}
	switch {
	case th.MaxCallbackAge <= 0 || th.MaxTicketAge <= 0:
		return fmt.Errorf("%w: -max-callback-age and -max-ticket-age must be positive", ErrUsage)
	case th.MaxFailures < 1:
		return fmt.Errorf("%w: -max-failures must be at least 1", ErrUsage)
	case th.MaxStorageRatio <= 0 || th.MaxStorageRatio > 1:
		return fmt.Errorf("%w: -max-storage must be in (0, 1]", ErrUsage)
	case *maxRows < 0:
		return fmt.Errorf("%w: -max-rows must not be negative", ErrUsage)
	}
	cfg, err := c.env.LoadConfig(*path)
	if err != nil {
		return err
	}
	b, err := app.Dial(ctx, cfg, "wecom-receiver-status", *creds, c.env.Log())
	if err != nil {
		return c.failed(out, err)
	}
	defer app.CloseBroker(b)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var corpsOf func(string) []string
	if cfg.Corps.Enabled() {
		// The registry's corps too; without a registry yet, the file's.
		if view, err := app.OpenCorpView(rctx, cfg, b.JetStream(), false, zerolog.Nop(), nil); err == nil {
			defer view.Close()
			corpsOf = view.Dir.Corps
		}
	}
	rep, err := app.ReadStatus(rctx, b.JetStream(), cfg, th, time.Now(), corpsOf)
	if err != nil {
		return c.failed(out, err)
	}
	if out == JSON {
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printStatus(c.env, rep, rowLimit(*all, *maxRows)); err != nil {
		return err
	}
	if rep.Verdict.Status != health.StatusOK {
		return ExitError{Code: ExitAttention}
	}
	return nil
}

// failed ends status when the facts could not be read: NATS out of reach
// is exit 4 with an UNKNOWN verdict; a mistake of the caller's (no NATS in
// the config, missing or refused credentials) stays an ordinary failure.
func (c *statusCommand) failed(out Output, err error) error {
	if !unreachable(err) {
		return err
	}
	c.unknown(out, err)
	return ExitError{Code: ExitUnknown, Err: err}
}

// unreachable reports whether err says NATS or JetStream could not be
// reached or did not answer in time.
func unreachable(err error) bool {
	return errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, syscall.ECONNREFUSED)
}

// unknown reports a verdict that could not be reached, in the output's form.
func (c *statusCommand) unknown(out Output, err error) {
	if out == JSON {
		enc := json.NewEncoder(c.env.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"verdict": map[string]any{
			"status": StatusUnknown, "reasons": []map[string]string{{"code": "unreachable", "error": err.Error()}},
		}})
		return
	}
	_, _ = fmt.Fprintf(c.env.Stdout, "%s: cannot read the deployment's state from NATS\n", StatusUnknown)
}

// StatusUnknown is the verdict when the facts cannot be read.
const StatusUnknown = "UNKNOWN"

// defaultMaxRows is how many corps' rows status prints before it lists
// only those that need attention: a table a person reads whole.
const defaultMaxRows = 50

// rowLimit is printStatus's maxRows for the flags: -1 (no limit) with -all.
func rowLimit(all bool, maxRows int) int {
	if all {
		return -1
	}
	return maxRows
}

// printStatus writes rep as text. With more than maxRows corps (maxRows
// >= 0), the table has only the corps that need attention
// (Report.Attention) and a line counting the others; with thousands of
// corps, the few failing ones would otherwise be lost in the healthy.
func printStatus(e Env, rep health.Report, maxRows int) error {
	w := e.Stdout
	_, _ = fmt.Fprintln(w, rep.Verdict.Line())
	_, _ = fmt.Fprintln(w)
	in := rep.Intake
	oldest := "none"
	if in.OldestUnhandled != nil {
		oldest = secs(in.OldestUnhandledAgeSeconds)
	}
	handlers := ""
	if len(in.MissingConsumers) > 0 {
		// Their callbacks are in none of the counts before.
		handlers = "; no consumer " + strings.Join(in.MissingConsumers, ", ")
	}
	_, _ = fmt.Fprintf(w, "callbacks:    %d waiting, %d being handled, oldest unhandled %s%s\n", in.Waiting, in.Handling, oldest, handlers)
	_, _ = fmt.Fprintf(w, "dead letters: %d callbacks, %d hits\n", rep.DeadLetters.Callback, rep.DeadLetters.Hit)
	st := rep.Storage
	used := bytesText(st.UsedBytes) + " used (no account limit)"
	if st.LimitBytes > 0 {
		used = bytesText(st.UsedBytes) + " of " + bytesText(uint64(st.LimitBytes)) + " used"
	}
	limited := st.LimitBytes > 0
	var streams []string
	for _, s := range st.Streams {
		t := s.Stream + " " + bytesText(s.Bytes)
		if s.MaxBytes > 0 {
			t += " of " + bytesText(uint64(s.MaxBytes))
			limited = true
		}
		streams = append(streams, t)
	}
	if limited {
		used += fmt.Sprintf(", fullest %.0f%%", 100*st.UsedRatio)
	}
	if len(streams) > 0 {
		used += "; " + strings.Join(streams, ", ")
	}
	_, _ = fmt.Fprintf(w, "storage:      %s\n", used)
	for _, s := range rep.Suites {
		line := "none usable"
		if s.AgeSeconds != nil {
			line = "received " + secs(*s.AgeSeconds) + " ago"
		}
		if s.HasPrevious {
			line += ", the previous one kept"
		}
		if s.LastRejected != nil {
			line += fmt.Sprintf("; WeCom rejected %d (40085), last %s", s.Rejections, ago(s.LastRejected))
		}
		_, _ = fmt.Fprintf(w, "suite ticket: %s (app %s): %s\n", s.SuiteID, s.App, line)
	}
	_, _ = fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "APP\tCORP\tFAILURES\tLAST SUCCESS\tLAST ERROR\tCURSOR MOVED\tLAST HIT\tLAG\tEVENTS\tHIT TOKEN\tFETCHING")
	corps := rep.Corps
	if maxRows >= 0 && len(corps) > maxRows {
		corps = rep.Attention()
	}
	for _, c := range corps {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.App, c.CorpID,
			c.ConsecutiveFailures, ago(c.LastSuccess), lastError(c), ago(c.CursorMoved), ago(c.LastHit),
			lag(c.LagSeconds), c.Events, hitToken(c.HitTokenExpires), yesNo(c.FetchingNow))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if hidden := len(rep.Corps) - len(corps); hidden > 0 {
		noun := "corps"
		if hidden == 1 {
			noun = "corp"
		}
		_, _ = fmt.Fprintf(w, "%s healthy %s not shown (-all to list them)\n", thousands(hidden), noun)
	}
	return nil
}

// thousands writes n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// lastError says a corp's last error briefly: what failed and since when.
func lastError(c health.Corp) string {
	e := c.LastError
	if e == nil {
		return "-"
	}
	what := e.API
	if what == "" {
		what = "fetch"
	}
	switch {
	case e.Errcode != 0:
		what += " errcode " + strconv.Itoa(e.Errcode)
	case e.HTTPStatus != 0:
		what += " http " + strconv.Itoa(e.HTTPStatus)
	default:
		what += " error"
	}
	if c.ConsecutiveFailures == 0 {
		return what + " (recovered)"
	}
	return what + " since " + ago(&e.Since)
}

func hitToken(exp *time.Time) string {
	if exp == nil {
		return "none"
	}
	return "valid for " + time.Until(*exp).Round(time.Second).String()
}

func secs(s float64) string {
	return (time.Duration(s) * time.Second).Round(time.Second).String()
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
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
