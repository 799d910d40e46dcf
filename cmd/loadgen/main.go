// Command loadgen sends distinct, validly signed WeCom callbacks to a
// callback endpoint on loopback, open loop at a fixed rate or as fast as
// N connections allow, and reports throughput, latency percentiles (from
// each callback's scheduled send time) and status counts. With -nats-url
// it then checks that the stream holds every callback answered 200.
//
// The app's callback token and EncodingAESKey come from the environment
// (LOADGEN_TOKEN, LOADGEN_ENCODING_AES_KEY), never from flags, so they
// stay out of process listings.
//
//	LOADGEN_TOKEN=… LOADGEN_ENCODING_AES_KEY=… loadgen -url http://127.0.0.1:8080/callback/archive \
//	    -receive-id wwSuite -rate 5000 -duration 10s -nats-url nats://127.0.0.1:4222 -nats-creds op.creds
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/loadgen"
	"github.com/wecomhit/wecomhit/internal/netutil"
)

// helpText is loadgen's help, above its flags.
func helpText() cli.Usage {
	return cli.Usage{
		Synopsis: "loadgen -url URL (-n N | -duration D) [-rate R] [-nats-url URL | -no-check] [-o json]",
		Help: "Sends distinct, validly signed WeCom callbacks to a loopback endpoint and\n" +
			"reports throughput, latency percentiles and status counts on stdout; with\n" +
			"-nats-url it then checks that the stream holds every callback answered\n" +
			"200. Exit status: 0 done, 1 failed (or records missing), 2 usage error.",
		Env: []cli.EnvVar{
			{Name: "LOADGEN_TOKEN", Use: "the app's callback Token (required; never a flag, to stay out of process listings)"},
			{Name: "LOADGEN_ENCODING_AES_KEY", Use: "the app's EncodingAESKey (required)"},
		},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// report is the -o json output.
type report struct {
	Kind        string         `json:"kind"`
	Rate        float64        `json:"rate"`
	Conns       int            `json:"conns"`
	Sent        int            `json:"sent"`
	Answered    int            `json:"answered"`
	Errors      int            `json:"errors"`
	Status      map[string]int `json:"status"`
	ElapsedSec  float64        `json:"elapsed_s"`
	PerSecond   float64        `json:"ok_per_s"`
	P50Ms       float64        `json:"p50_ms"`
	P90Ms       float64        `json:"p90_ms"`
	P99Ms       float64        `json:"p99_ms"`
	P999Ms      float64        `json:"p999_ms"`
	MaxMs       float64        `json:"max_ms"`
	FirstError  string         `json:"first_error,omitempty"`
	Checked     bool           `json:"checked"`
	Stored      int            `json:"stored,omitempty"`
	Missing     int            `json:"missing,omitempty"`
	Unconfirmed int            `json:"unconfirmed,omitempty"`
}

// credsOption logs in with a .creds file (user JWT and seed) or a bare
// nkey seed file, such as the receiver's operator.nk.
func credsOption(path string) (nats.Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(data), "BEGIN NATS USER JWT") {
		return nats.UserCredentials(path), nil
	}
	return nats.NkeyOptionFromSeed(path)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// LoadDone is the line -hold-check writes on stderr once the load is over.
const LoadDone = "loadgen: load done"

// run is loadgen with its process around it passed in, so tests run it
// whole: parse the command line, connect to NATS for the check, send the
// load, check the stream, and print the report. It returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	var f flags
	fs := newFlagSet(&f, stderr)
	err := parseFlags(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		cli.PrintUsage(stdout, fs, helpText())
		return cli.ExitOK
	case err != nil:
		return exitCode(stderr, err)
	case f.version:
		fmt.Fprintln(stdout, "loadgen", cli.ReadVersion(""))
		return cli.ExitOK
	}
	f.cfg.Token, f.cfg.EncodingAESKey = getenv("LOADGEN_TOKEN"), getenv("LOADGEN_ENCODING_AES_KEY")
	if f.cfg.Token == "" || f.cfg.EncodingAESKey == "" {
		return exitCode(stderr, usagef("LOADGEN_TOKEN and LOADGEN_ENCODING_AES_KEY must be set"))
	}
	// A nil js means -no-check: every step below that reads the stream is
	// skipped.
	var js jetstream.JetStream
	if !f.noCheck {
		nc, err := f.connect()
		if err != nil {
			return exitCode(stderr, err)
		}
		defer nc.Close()
		if js, err = jetstream.New(nc); err != nil {
			return exitCode(stderr, err)
		}
	}
	from, res, err := f.load(ctx, js)
	if err != nil {
		return exitCode(stderr, err)
	}
	rep := newReport(f.cfg, res)
	if js != nil && f.holdCheck {
		if err := holdCheck(stdin, stderr); err != nil {
			return exitCode(stderr, err)
		}
	}
	// A failed check still prints the report: the load's numbers stand,
	// and the exit code says the records are not all there.
	code := cli.ExitOK
	if js != nil {
		if err := verify(ctx, js, f.stream, from, res, &rep); err != nil {
			code = exitCode(stderr, err)
		}
	}
	if f.out == cli.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return cli.ExitFailure
		}
		return code
	}
	printText(stdout, rep)
	return code
}

// flags are loadgen's command line: the load's Config and what the check
// of the stored records needs.
type flags struct {
	cfg       loadgen.Config
	natsURL   string
	natsCreds string
	stream    string
	inbox     string
	noCheck   bool
	version   bool
	holdCheck bool
	out       cli.Output
}

// newFlagSet registers loadgen's flags in f. The flag package's own
// complaints go to stderr, ahead of the one exitCode writes.
func newFlagSet(f *flags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS URL to check the stored records on (loopback unless -allow-remote)")
	fs.StringVar(&f.natsCreds, "nats-creds", "", "credentials file for -nats-url")
	fs.StringVar(&f.stream, "stream", "WECOM_CALLBACKS", "stream the receiver stores callbacks in")
	fs.StringVar(&f.inbox, "nats-inbox", "", "inbox prefix for -nats-url replies (the receiver's operator role takes _INBOX_OPERATOR)")
	fs.BoolVar(&f.noCheck, "no-check", false, "skip the check of stored records (then -nats-url is not needed)")
	fs.BoolVar(&f.version, "version", false, "print the version and VCS revision, and exit")
	fs.BoolVar(&f.holdCheck, "hold-check", false, "after the load, write \""+LoadDone+"\" on stderr and wait for a line on stdin before checking the records (bench/run measures the server in between: the check's reads are not the load's)")
	cli.OutputVar(fs, &f.out)
	cfg := &f.cfg
	fs.StringVar(&cfg.URL, "url", "", "callback endpoint, e.g. http://127.0.0.1:8080/callback/archive (required)")
	fs.StringVar(&cfg.App, "app", "", "app name the receiver derives record ids with (default: the URL's last path segment)")
	fs.StringVar(&cfg.ReceiveID, "receive-id", "", "receive id the app's callbacks carry: suite id or corp id")
	fs.StringVar(&cfg.Kind, "kind", "hit_keyword", "callback kind: "+strings.Join(loadgen.Kinds, ", "))
	fs.StringVar(&cfg.SuiteID, "suite-id", "", "SuiteId in suite callbacks (default: -receive-id)")
	fs.StringVar(&cfg.CorpID, "corp", "", "corp id in the payloads (default wwLoadgenCorp)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "callbacks per second; 0 sends as fast as the connections allow")
	fs.IntVar(&cfg.Conns, "c", 64, "concurrent connections")
	cli.DurationVar(fs, &cfg.Duration, "duration", 0, "how long to send (this or -n required)")
	fs.IntVar(&cfg.N, "n", 0, "how many callbacks to send (this or -duration required)")
	cli.DurationVar(fs, &cfg.Timeout, "timeout", 5*time.Second, "timeout of one request")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a target that is not loopback")
	return fs
}

// parseFlags parses args into fs's flags; flag.ErrHelp asks for the help.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := cli.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	return nil
}

// exitError is an error with the exit code it ends loadgen with. hint adds
// the pointer to -h that a mistake in the flags deserves.
type exitError struct {
	code int
	hint bool
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usagef is a command-line mistake: exit code 2, nothing sent.
func usagef(format string, a ...any) error {
	return &exitError{code: cli.ExitUsage, hint: true, err: fmt.Errorf(format, a...)}
}

// exitCode reports err on stderr and returns loadgen's exit code for it:
// an exitError's own, or 1 for anything else.
func exitCode(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "loadgen: %v\n", err)
	var e *exitError
	if !errors.As(err, &e) {
		return cli.ExitFailure
	}
	if e.hint {
		fmt.Fprintln(stderr, `Run "loadgen -h" for its flags.`)
	}
	return e.code
}

// connect opens the NATS connection the check reads the stream on. The
// URL is checked first, so a mistake exits 2 without a dial, and a
// remote server takes -allow-remote, as the callback target does.
func (f *flags) connect() (*nats.Conn, error) {
	if f.natsURL == "" {
		return nil, usagef("-nats-url required to check the stored records (or -no-check)")
	}
	u, err := url.Parse(f.natsURL)
	if err != nil || u.Hostname() == "" {
		return nil, usagef("-nats-url %q is not a URL", f.natsURL)
	}
	if !f.cfg.AllowRemote && !netutil.IsLoopback(u.Hostname()) {
		return nil, usagef("-nats-url: %s is not a loopback host (-allow-remote to allow)", u.Hostname())
	}
	opts := []nats.Option{nats.Name("loadgen")}
	if f.inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(f.inbox))
	}
	if f.natsCreds != "" {
		o, err := credsOption(f.natsCreds)
		if err != nil {
			return nil, &exitError{code: cli.ExitUsage, err: fmt.Errorf("-nats-creds: %w", err)}
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(f.natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

// load sends the load. With a stream to check (js not nil) it first notes
// the stream's next sequence, from, so the check reads only this run's
// records. A Config that loadgen.Run rejects is a usage error.
func (f *flags) load(ctx context.Context, js jetstream.JetStream) (from uint64, res *loadgen.Result, err error) {
	if js != nil {
		if from, err = loadgen.NextSeq(ctx, js, f.stream); err != nil {
			return 0, nil, err
		}
	}
	res, err = loadgen.Run(ctx, f.cfg)
	if errors.Is(err, loadgen.ErrInvalidConfig) {
		return 0, nil, usagef("%v", err)
	}
	return from, res, err
}

// newReport is the load's outcome as the report shows it; the check's
// fields are filled in by verify.
func newReport(cfg loadgen.Config, res *loadgen.Result) report {
	rep := report{
		Kind: cfg.Kind, Rate: cfg.Rate, Conns: cfg.Conns, Sent: res.Sent, Answered: res.Answered, Errors: res.Errors,
		Status: map[string]int{}, ElapsedSec: res.Elapsed.Seconds(), PerSecond: res.Throughput(),
		P50Ms: ms(res.Latency.Quantile(0.5)), P90Ms: ms(res.Latency.Quantile(0.9)), P99Ms: ms(res.Latency.Quantile(0.99)),
		P999Ms: ms(res.Latency.Quantile(0.999)), MaxMs: ms(res.Latency.Max()), FirstError: res.FirstError,
	}
	for code, n := range res.Status {
		rep.Status[fmt.Sprint(code)] = n
	}
	return rep
}

// holdCheck says the load is over and waits for a line on stdin (or its
// end), so that bench/run can measure the server before the check's reads
// add to it.
func holdCheck(stdin io.Reader, stderr io.Writer) error {
	fmt.Fprintln(stderr, LoadDone)
	if _, err := bufio.NewReader(stdin).ReadString('\n'); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("-hold-check: %w", err)
	}
	return nil
}

// verify checks the stream for the run's records and puts what it found
// in rep. It has time of its own, past a cancelled ctx: after a Ctrl-C
// that ended the load early, what was sent is still worth checking.
func verify(ctx context.Context, js jetstream.JetStream, stream string, from uint64, res *loadgen.Result, rep *report) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkTime(len(res.All)))
	defer cancel()
	chk, err := loadgen.Verify(ctx, js, stream, from, res)
	if chk != nil {
		rep.Checked, rep.Stored, rep.Missing, rep.Unconfirmed = true, chk.Stored, len(chk.Missing), chk.Unconfirmed
	}
	return err
}

// checkTime bounds the check of n records: a minute, and half a
// millisecond more per record. The check reads records one request each;
// on a busy 2-core machine that went at about 5,000 a second, so a fixed
// minute ran out on a 300,000-callback run and lost the check of a load
// that had worked.
func checkTime(n int) time.Duration {
	return time.Minute + time.Duration(n)*500*time.Microsecond
}

// printText writes the report for people: the mode, the counts by HTTP
// status in order, the latency percentiles and the check's outcome.
func printText(stdout io.Writer, rep report) {
	mode := fmt.Sprintf("%.0f/s scheduled", rep.Rate)
	if rep.Rate == 0 {
		mode = "as fast as possible (closed loop: latency is service time)"
	}
	fmt.Fprintf(stdout, "%s callbacks, %s, %d connections\n", rep.Kind, mode, rep.Conns)
	fmt.Fprintf(stdout, "sent %d in %.2fs: %d answered, %d errors; %.0f answered 200 per second\n",
		rep.Sent, rep.ElapsedSec, rep.Answered, rep.Errors, rep.PerSecond)
	codes := make([]string, 0, len(rep.Status))
	for c := range rep.Status {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		fmt.Fprintf(stdout, "  HTTP %s: %d\n", c, rep.Status[c])
	}
	if rep.FirstError != "" {
		fmt.Fprintf(stdout, "  first error: %s\n", rep.FirstError)
	}
	fmt.Fprintf(stdout, "latency from scheduled send: p50 %.2fms  p90 %.2fms  p99 %.2fms  p99.9 %.2fms  max %.2fms\n",
		rep.P50Ms, rep.P90Ms, rep.P99Ms, rep.P999Ms, rep.MaxMs)
	if rep.Checked {
		fmt.Fprintf(stdout, "records: %d of the run's callbacks stored; %d answered 200 but missing; %d stored without a 200\n",
			rep.Stored, rep.Missing, rep.Unconfirmed)
	} else {
		fmt.Fprintln(stdout, "records: not checked")
	}
}
