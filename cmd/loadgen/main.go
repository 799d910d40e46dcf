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

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       loadgen.Config
		natsURL   = fs.String("nats-url", "", "NATS URL to check the stored records on (loopback unless -allow-remote)")
		natsCreds = fs.String("nats-creds", "", "credentials file for -nats-url")
		stream    = fs.String("stream", "WECOM_CALLBACKS", "stream the receiver stores callbacks in")
		inbox     = fs.String("nats-inbox", "", "inbox prefix for -nats-url replies (the receiver's operator role takes _INBOX_OPERATOR)")
		noCheck   = fs.Bool("no-check", false, "skip the check of stored records (then -nats-url is not needed)")
		version   = fs.Bool("version", false, "print the version and VCS revision, and exit")
		holdCheck = fs.Bool("hold-check", false, "after the load, write \""+LoadDone+"\" on stderr and wait for a line on stdin before checking the records (bench/run measures the server in between: the check's reads are not the load's)")
		out       cli.Output
	)
	cli.OutputVar(fs, &out)
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
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "loadgen: "+format+"\n", a...)
		fmt.Fprintln(stderr, `Run "loadgen -h" for its flags.`)
		return cli.ExitUsage
	}
	if err := cli.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cli.PrintUsage(stdout, fs, helpText())
			return cli.ExitOK
		}
		return usage("%v", err)
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments: %v", fs.Args())
	}
	if *version {
		fmt.Fprintln(stdout, "loadgen", cli.ReadVersion(""))
		return cli.ExitOK
	}
	cfg.Token, cfg.EncodingAESKey = getenv("LOADGEN_TOKEN"), getenv("LOADGEN_ENCODING_AES_KEY")
	if cfg.Token == "" || cfg.EncodingAESKey == "" {
		return usage("LOADGEN_TOKEN and LOADGEN_ENCODING_AES_KEY must be set")
	}
	var js jetstream.JetStream
	if !*noCheck {
		if *natsURL == "" {
			return usage("-nats-url required to check the stored records (or -no-check)")
		}
		u, err := url.Parse(*natsURL)
		if err != nil || u.Hostname() == "" {
			return usage("-nats-url %q is not a URL", *natsURL)
		}
		if !cfg.AllowRemote && !netutil.IsLoopback(u.Hostname()) {
			return usage("-nats-url: %s is not a loopback host (-allow-remote to allow)", u.Hostname())
		}
		opts := []nats.Option{nats.Name("loadgen")}
		if *inbox != "" {
			opts = append(opts, nats.CustomInboxPrefix(*inbox))
		}
		if *natsCreds != "" {
			o, err := credsOption(*natsCreds)
			if err != nil {
				fmt.Fprintf(stderr, "loadgen: -nats-creds: %v\n", err)
				return 2
			}
			opts = append(opts, o)
		}
		nc, err := nats.Connect(*natsURL, opts...)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: connect to NATS: %v\n", err)
			return 1
		}
		defer nc.Close()
		if js, err = jetstream.New(nc); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
	}

	var from uint64
	if js != nil {
		var err error
		if from, err = loadgen.NextSeq(ctx, js, *stream); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, loadgen.ErrInvalidConfig) {
			return usage("%v", err)
		}
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	rep := report{
		Kind: cfg.Kind, Rate: cfg.Rate, Conns: cfg.Conns, Sent: res.Sent, Answered: res.Answered, Errors: res.Errors,
		Status: map[string]int{}, ElapsedSec: res.Elapsed.Seconds(), PerSecond: res.Throughput(),
		P50Ms: ms(res.Latency.Quantile(0.5)), P90Ms: ms(res.Latency.Quantile(0.9)), P99Ms: ms(res.Latency.Quantile(0.99)),
		P999Ms: ms(res.Latency.Quantile(0.999)), MaxMs: ms(res.Latency.Max()), FirstError: res.FirstError,
	}
	for code, n := range res.Status {
		rep.Status[fmt.Sprint(code)] = n
	}
	code := 0
	if js != nil && *holdCheck {
		fmt.Fprintln(stderr, LoadDone)
		if _, err := bufio.NewReader(stdin).ReadString('\n'); err != nil && !errors.Is(err, io.EOF) {
			fmt.Fprintf(stderr, "loadgen: -hold-check: %v\n", err)
			return 1
		}
	}
	if js != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		chk, err := loadgen.Verify(ctx, js, *stream, from, res)
		cancel()
		if chk != nil {
			rep.Checked, rep.Stored, rep.Missing, rep.Unconfirmed = true, chk.Stored, len(chk.Missing), chk.Unconfirmed
		}
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			code = 1
		}
	}
	if out == cli.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return 1
		}
		return code
	}
	mode := fmt.Sprintf("%.0f/s scheduled", cfg.Rate)
	if cfg.Rate == 0 {
		mode = "as fast as possible (closed loop: latency is service time)"
	}
	fmt.Fprintf(stdout, "%s callbacks, %s, %d connections\n", cfg.Kind, mode, cfg.Conns)
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
	return code
}
