// Command demo runs the receiver on one machine with no configuration: an
// embedded NATS server, the WeCom simulator calling the receiver back, and
// the receiver, in a temporary directory, and prints each hit event as it
// is published. Run it with `go run ./cmd/demo` (-h lists its flags).
//
// It is a binary of its own, not a receiver command, so that the
// production binary does not link the simulator: internal/wecomsim holds
// WeCom's published sample secrets and serves a fake WeCom API, neither of
// which belongs in a service facing the internet (the receiver's
// TestReceiver_NoSimulator checks). Left out, they cost the receiver about
// 280 KB of its 22.8 MB (go build -trimpath -ldflags="-s -w"), but the size
// is not the reason.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so that a
		// second Ctrl-C ends a shutdown that takes too long.
		<-ctx.Done()
		stop()
	}()
	e := cli.Env{LookupEnv: os.LookupEnv, Stdout: os.Stdout, Stderr: os.Stderr}
	code := cli.ExitCode(e.Stderr, "demo", run(ctx, os.Args[1:], e))
	stop()
	os.Exit(code)
}

// run runs the demo until ctx ends (Ctrl-C) or -for passes, then prints a
// summary.
func run(ctx context.Context, args []string, e cli.Env) error {
	o, out, runFor, err := parseFlags(args, e.Stdout)
	if err != nil {
		return err
	}
	if runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, runFor)
		defer cancel()
	}
	// The service logs only what needs attention: the hits are the show.
	log := zerolog.New(consoleOrJSON(e.Stderr, e.Getenv, time.TimeOnly)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	d, err := openDemo(ctx, o, log)
	if err != nil {
		return err
	}
	defer d.Close()
	// Every event the stream holds, as tail prints them.
	hits, err := cli.ReadHits(ctx, d.m.Broker().JetStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{d.cfg.NATS.SubjectPrefix + ".hit.>"},
	})
	if err != nil {
		return err
	}
	seen := 0
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		seen, _ = hits.Print(ctx, e.Stdout, out, time.Local, 0)
	}()
	started := time.Now()
	_, _ = fmt.Fprintf(e.Stderr, "demo: WeCom simulator at %s (×%g speed) → receiver at http://%s → NATS at %s (nats --nkey %s --js-api-prefix '%s')\n"+
		"demo: hits appear below as they are published on %s.hit.>; Ctrl-C to stop\n",
		d.sim.URL(), o.speed, d.httpAddr, d.m.Broker().ClientURL(), broker.SeedFile(d.cfg.NATS.RolesDir(), app.RoleConsumer),
		app.ConsumerAPIPrefix, d.cfg.NATS.SubjectPrefix)

	<-ctx.Done()
	hits.Stop()
	<-printed // every line is out before the summary counts them
	stats := d.sim.Stats()
	_, _ = fmt.Fprintf(e.Stderr, "demo: %d hits published in %s; the simulator recorded %d hits and sent %d hit callbacks\n",
		seen, time.Since(started).Round(time.Second), stats.Hits, stats.Callbacks[wecomsim.CallbackHitKeyword].Delivered)
	return nil
}

// flags are the demo's command line.
type flags struct {
	o      demoOptions
	out    cli.Output
	runFor time.Duration
	asJSON bool
}

// newFlagSet registers the demo's flags in f; -h prints them on stdout.
func newFlagSet(f *flags, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // mistakes are reported once, by cli.ExitCode
	help := "Runs an embedded NATS server, the WeCom simulator and the receiver in a\n" +
		"temporary directory, and prints each hit event as it is published: a\n" +
		"line each (table), or its JSON (-o json). Notes and the closing summary\n" +
		"go to stderr; so do the service's warnings, as console lines on a\n" +
		"terminal (coloured unless NO_COLOR) and JSON lines otherwise. Exit\n" +
		"status: 0 done (Ctrl-C or -for), 1 failed, 2 usage error."
	fs.Usage = func() {
		cli.PrintUsage(stdout, fs, cli.Usage{Synopsis: "demo [flags]", Help: help, Env: []cli.EnvVar{cli.EnvColour}})
	}
	fs.Float64Var(&f.o.speed, "speed", 30, "conversation speed-up: messages arrive this many times faster (timestamps stay real)")
	fs.Float64Var(&f.o.rate, "rate", 20, "messages per conversation minute")
	fs.Int64Var(&f.o.seed, "seed", 0, "simulator seed (the same seed replays the same conversations; 0: a new one each run)")
	cli.DurationVar(fs, &f.runFor, "for", 0, "stop after this long (0: run until Ctrl-C)")
	cli.OutputVar(fs, &f.out)
	fs.BoolVar(&f.asJSON, "json", false, "deprecated: use -o json")
	return fs
}

// parseFlags reads the demo's flags: its options, the output format, and
// how long to run (0: until Ctrl-C).
func parseFlags(args []string, stdout io.Writer) (demoOptions, cli.Output, time.Duration, error) {
	var f flags
	fs := newFlagSet(&f, stdout)
	if err := cli.ParseOrHelp(fs, args); err != nil {
		return demoOptions{}, f.out, 0, err
	}
	if fs.NArg() > 0 {
		return demoOptions{}, f.out, 0, fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, fs.Args())
	}
	if f.asJSON {
		f.out = cli.JSON
	}
	if f.o.seed == 0 {
		f.o.seed = time.Now().UnixNano()
	}
	return f.o, f.out, f.runFor, nil
}

// consoleOrJSON is where a command without a log configuration logs: a
// console layout for people on a terminal (coloured unless NO_COLOR),
// JSON lines for a file or a pipe, which tools read.
func consoleOrJSON(w io.Writer, getenv func(string) string, timeFormat string) io.Writer {
	if !cli.IsTerminal(w) {
		return w
	}
	return zerolog.ConsoleWriter{Out: w, TimeFormat: timeFormat, NoColor: !cli.Colour(w, getenv)}
}
