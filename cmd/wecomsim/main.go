// Command wecomsim runs the WeCom simulator alone, for local runs of the
// receiver and for trying the chat-data APIs by hand. Its defaults match
// configs/receiver.local-sim.yaml, so that receiver accepts its callbacks
// as they are. They include WeCom's published sample Token and
// EncodingAESKey, which a receiver accepts only with allow_sample_secrets.
//
//	go run ./cmd/wecomsim [-speed 60] [-fault kind=errcode,api=get_hit_msg_list,rate=0.1]
//	go run ./cmd/wecomsim -corps 10000 -rate 0.1 -corp-rate 60000   # one hot corp among 10,000
//
// Corps install and remove the suite at run time through POST /_sim/corps,
// DELETE /_sim/corps/{corp} and POST /_sim/corps/{corp}/reset (see
// internal/wecomsim, install.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.ExitCode(os.Stderr, "wecomsim", run(ctx, os.Args[1:], os.Stdout, os.Stderr))
	stop()
	os.Exit(code)
}

// faultFlags collects repeated -fault flags.
type faultFlags []wecomsim.Fault

func (f *faultFlags) String() string { return fmt.Sprint(len(*f), " faults") }

func (f *faultFlags) Set(v string) error {
	fault, err := wecomsim.ParseFault(v)
	if err == nil {
		*f = append(*f, fault)
	}
	return err
}

// settings are what the flags fill in.
type settings struct {
	o         wecomsim.Options
	corp      wecomsim.Corp
	faults    faultFlags
	addr      string
	debug     bool
	demoRules bool
	// extraCorps is -corps: generated corps besides -corp-id.
	extraCorps int
	version    bool
}

// newFlagSet defines the flags on s. The credential defaults are those of
// configs/receiver.local-sim.yaml (main_test checks they agree).
func newFlagSet(s *settings, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("wecomsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o, corp := &s.o, &s.corp
	fs.StringVar(&s.addr, "addr", "127.0.0.1:8090", "listen address")
	fs.Int64Var(&o.Seed, "seed", 1, "random seed")
	fs.Float64Var(&o.Speed, "speed", 1, "conversation speed-up: messages arrive and hit callbacks are coalesced this many times faster; timestamps, send_time and token lifetimes stay on the real clock")
	fs.Float64Var(&o.MessageRate, "rate", wecomsim.DefaultMessageRate, "messages per conversation minute per corp; negative for none")
	fs.StringVar(&o.Archive.SuiteID, "suite-id", "wwArchiveSuite01", "archive suite id")
	fs.StringVar(&o.Archive.SuiteSecret, "suite-secret", "demo-suite-secret", "archive suite secret")
	fs.StringVar(&corp.CorpID, "corp-id", "wwCorpABC123", "authorized corp id")
	fs.StringVar(&corp.PermanentCode, "permanent-code", "demo-permanent-code", "the corp's permanent code")
	fs.StringVar(&o.Archive.Token, "token", "QDG6eK", "archive callback token")
	fs.StringVar(&o.Archive.EncodingAESKey, "aes-key", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "archive callback EncodingAESKey")
	fs.StringVar(&o.Archive.CallbackURL, "callback-url", "http://127.0.0.1:8080/callback/archive", "archive callback URL; empty sends none")
	fs.StringVar(&o.Zone.CorpID, "zone-corp-id", "", "zone app corp id; empty disables the zone")
	fs.StringVar(&o.Zone.CorpSecret, "zone-secret", "demo-zone-secret", "zone app secret")
	fs.StringVar(&o.Zone.ProgramID, "zone-program", "demo-program", "zone program id")
	fs.BoolVar(&o.Zone.WrapIO, "zone-wrap", false, `abilities take {"input":…} and answer {"output":…}`)
	fs.StringVar(&o.Zone.Token, "zone-token", "QDG6eK", "zone callback token")
	fs.StringVar(&o.Zone.EncodingAESKey, "zone-aes-key", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "zone callback EncodingAESKey")
	fs.StringVar(&o.Zone.CallbackURL, "zone-callback-url", "", "zone program_notify URL; empty sends none")
	fs.Var(&s.faults, "fault", "fault to inject, repeatable: kind=K[,api=A][,count=N][,rate=R][,errcode=C][,status=S][,delay=D]")
	fs.BoolVar(&s.debug, "debug", false, "log at debug level")
	fs.BoolVar(&s.demoRules, "demo-rules", true, "start with a few keyword rules that the simulated traffic hits")
	fs.IntVar(&s.extraCorps, "corps", 0, "also authorize this many generated corps (wwSimCorp00000…, permanent codes perm-00000…), each with its own traffic at -rate")
	fs.Float64Var(&corp.MessageRate, "corp-rate", 0, "messages per conversation minute of the -corp-id corp alone (a hot corp among -corps); 0 uses -rate")
	fs.BoolVar(&s.version, "version", false, "print the version and VCS revision, and exit")
	return fs
}

// usage is wecomsim's help, above its flags.
func usage() cli.Usage {
	return cli.Usage{
		Synopsis: "wecomsim [flags]",
		Help: "Runs the WeCom simulator: the chat-data APIs on -addr, and signed,\n" +
			"encrypted callbacks to -callback-url. A line saying where it listens goes\n" +
			"to stdout; its logs to stderr, as console lines on a terminal (coloured\n" +
			"unless NO_COLOR) and JSON lines otherwise. Exit status: 0 stopped by a\n" +
			"signal, 1 failed, 2 usage error.",
		Env: []cli.EnvVar{{Name: "NO_COLOR", Use: "set (to anything) for logs without colour"}},
	}
}

// run parses args, serves until ctx ends, then closes within 5 seconds.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var s settings
	fs := newFlagSet(&s, stderr)
	if err := cli.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cli.PrintUsage(stdout, fs, usage())
			return nil // -h asked for the flags, which are printed: not a failure
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, fs.Args())
	}
	if s.version {
		_, err := fmt.Fprintln(stdout, "wecomsim", cli.ReadVersion(""))
		return err
	}
	if s.extraCorps < 0 {
		return fmt.Errorf("%w: -corps %d: must not be negative", cli.ErrUsage, s.extraCorps)
	}
	o, addr, debug, demoRules := s.o, &s.addr, &s.debug, &s.demoRules
	o.Archive.Corps = append([]wecomsim.Corp{s.corp}, wecomsim.GenerateCorps(s.extraCorps)...)
	o.Faults = s.faults

	level := zerolog.InfoLevel
	if *debug {
		level = zerolog.DebugLevel
	}
	out := stderr
	if cli.IsTerminal(stderr) {
		out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly, NoColor: !cli.Colour(stderr, os.Getenv)}
	}
	log := zerolog.New(out).Level(level).With().Timestamp().Logger()
	sim, err := wecomsim.New(o, log)
	if err != nil {
		return err
	}
	if *demoRules {
		if err := sim.SeedDemoRules(); err != nil {
			return err
		}
	}
	if err := sim.Start(ctx, *addr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wecomsim listening on %s, callbacks to %s\n", sim.URL(), o.Archive.CallbackURL)
	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return sim.Close(closeCtx)
}
