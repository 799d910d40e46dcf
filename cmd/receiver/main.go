// Command receiver is the WeCom keyword-hit receiver: it takes WeCom's
// encrypted callbacks, stores them durably in NATS JetStream, and (in later
// stages) fetches and publishes the hits they announce.
//
// Usage:
//
//	receiver demo                      run everything locally against the WeCom simulator
//	receiver serve -config FILE        run the service (RECEIVER_CONFIG may name the file)
//	receiver check-config -config FILE validate a configuration and exit
//	receiver backfill -config FILE [-app A] [-corp C] -since TIME
//	                                   re-read hits from TIME; publishes what is missing
//	receiver rules list|get|create|update|delete -config FILE [-app A]
//	                                   manage an app's keyword rules in WeCom
//	receiver search QUERY -config FILE [-app A]
//	                                   find archived messages by a word; prints their msgids
//	receiver tail -config FILE         print hit events as they are published
//	receiver status -config FILE       a verdict and the facts behind it, from NATS
//	receiver creds consumer|operator -config FILE
//	                                   print a role's NATS credentials for the embedded server's listener
//	receiver dlq list|replay -config FILE
//	                                   list dead letters; replay callback dead letters
//	receiver version                   print the version and VCS revision (also --version)
//	receiver help [COMMAND]            the overview, or a command's flags
//
// Every command follows one convention (the command table, commands, and
// internal/cli): exit 0 done, 1 failed, 2 usage error (status adds 3 and
// 4); results on stdout, progress and notes on stderr; -o table|json where
// results are printed; durations with a day unit; -h lists every flag with
// its default and the environment the command reads.
//
// Only this package sees OS signals, flags and the process environment; it
// wires the stages together and hands each one what it needs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
)

// version, when set at build time with -ldflags "-X main.version=v1.2.3",
// replaces the module version the build info gives (cli.ReadVersion).
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling so that a
		// second Ctrl-C ends a shutdown that takes too long.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], env{lookupEnv: os.LookupEnv, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// env is what a subcommand may use of the process, so tests can run
// subcommands in-process with their own.
type env struct {
	lookupEnv      func(string) (string, bool)
	stdout, stderr io.Writer
	// onFlagSet, if not nil, sees every flag set a command makes (tests
	// check that help lists each flag).
	onFlagSet func(*flag.FlagSet)
}

func (e env) getenv(k string) string {
	v, _ := e.lookupEnv(k)
	return v
}

// cmdLog is the logger of an operator command: warnings and errors only,
// on stderr, so stdout holds nothing but the command's results.
func (e env) cmdLog() zerolog.Logger {
	return zerolog.New(e.stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// loadConfig loads a configuration with this environment.
func (e env) loadConfig(path string) (*config.Config, error) {
	return config.LoadEnv(path, e.lookupEnv)
}

// command is one subcommand.
type command interface {
	Run(ctx context.Context, args []string) error
}

// errUsage marks a command-line mistake: exit code 2, nothing done.
var errUsage = cli.ErrUsage

// spec is a subcommand's entry in the command table. run, the overview,
// help and the tests all read the table, so a new command follows the
// convention by construction: its flag sets come from env.flagSet (help
// lists every flag with its default and the environment below), and its
// errors map to the exit codes in run.
type spec struct {
	name     string
	synopsis string // after "receiver "
	summary  string // the overview's description, lines indented by the caller
	env      []cli.EnvVar
	// subs are subcommands with flag sets of their own (rules list…),
	// which "help CMD SUB" and the tests reach.
	subs []string
	new  func(e env) command
}

// The environment variables commands read.
var (
	envConfig = cli.EnvVar{Name: "RECEIVER_CONFIG", Use: "the configuration file when -config is not given; the file may name more (${VAR})"}
	envColour = cli.EnvVar{Name: "NO_COLOR", Use: "set (to anything) for logs without colour; colour is only ever used on a terminal"}
)

// commands is the command table, in the order the overview lists them.
func commands() []spec {
	return []spec{
		{name: "demo", synopsis: "demo [-for 10m] [-o json]",
			summary: "run everything locally against the WeCom simulator, printing hits",
			env:     []cli.EnvVar{envColour},
			new:     func(e env) command { return &demoCommand{env: e} }},
		{name: "serve", synopsis: "serve -config FILE",
			summary: "run the service",
			env:     []cli.EnvVar{envConfig, envColour},
			new:     func(e env) command { return &serveCommand{env: e} }},
		{name: "check-config", synopsis: "check-config -config FILE [-o json]",
			summary: "validate a configuration: every problem, with its key path and line",
			env:     []cli.EnvVar{envConfig},
			new:     func(e env) command { return &checkConfigCommand{env: e} }},
		{name: "backfill", synopsis: "backfill -config FILE [-app NAME] [-corp ID] -since TIME [-o json]",
			summary: "re-read hits from TIME (RFC 3339 or a duration ago: 6h, 5d), publish what is missing",
			env:     []cli.EnvVar{envConfig},
			new:     func(e env) command { return &backfillCommand{env: e} }},
		{name: "rules", synopsis: "rules list|get|create|update|delete -config FILE [-app NAME] [-o json]",
			summary: "manage an app's keyword rules in WeCom",
			env:     []cli.EnvVar{envConfig},
			subs:    []string{"list", "get", "create", "update", "delete"},
			new:     func(e env) command { return &rulesCommand{env: e} }},
		{name: "search", synopsis: "search QUERY -config FILE [-app NAME] [filters] [-o json]",
			summary: "find archived messages by a word, every page; prints their msgids",
			env:     []cli.EnvVar{envConfig},
			new:     func(e env) command { return &searchCommand{env: e} }},
		{name: "tail", synopsis: "tail -config FILE [-since TIME] [-subject S] [-o json]",
			summary: "print hit events as they are published",
			env:     []cli.EnvVar{envConfig},
			new:     func(e env) command { return &tailCommand{env: e} }},
		{name: "status", synopsis: "status -config FILE [-o json] [thresholds]",
			summary: "a verdict (OK, DEGRADED, STALLED) and the facts behind it: backlog,\n" +
				"dead letters, storage, suite tickets, each app and corp's fetches;\n" +
				"exit 0 OK, 3 needs attention, 4 cannot tell (NATS unreachable)",
			env: []cli.EnvVar{envConfig},
			new: func(e env) command { return &statusCommand{env: e} }},
		{name: "creds", synopsis: "creds consumer|operator -config FILE",
			summary: "print a role's credentials for the embedded NATS listener (nkey seed)",
			env:     []cli.EnvVar{envConfig},
			subs:    []string{roleConsumer, roleOperator},
			new:     func(e env) command { return &credsCommand{env: e} }},
		{name: "dlq", synopsis: "dlq list|replay -config FILE [filters] [-o json]",
			summary: "list dead letters; replay callback dead letters (-seq N,... or -all)",
			env:     []cli.EnvVar{envConfig},
			subs:    []string{"list", "replay"},
			new:     func(e env) command { return &dlqCommand{env: e} }},
		{name: "corps", synopsis: "corps list|get|remove|rekey -config FILE [-app NAME] [-corp ID] [-o json]",
			summary: "the corps each app serves (docs/corps.md); remove stops one and deletes\n" +
				"its data; rekey re-seals permanent codes under corps.current_key",
			env:  []cli.EnvVar{envConfig},
			subs: []string{"list", "get", "remove", "rekey"},
			new:  func(e env) command { return &corpsCommand{env: e} }},
		{name: "version", synopsis: "version [-o json]",
			summary: "print the version and VCS revision (also: receiver --version)",
			new:     func(e env) command { return &versionCommand{env: e} }},
		{name: "help", synopsis: "help [COMMAND [SUBCOMMAND]]",
			summary: "this overview, or a command's flags (same as COMMAND -h)",
			new:     func(e env) command { return &helpCommand{env: e} }},
	}
}

func lookupCommand(name string) (spec, bool) {
	for _, s := range commands() {
		if s.name == name {
			return s, true
		}
	}
	return spec{}, false
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		printUsage(e.stderr)
		return cli.ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printUsage(e.stdout)
		return cli.ExitOK
	case "-version", "--version":
		name, args = "version", []string{"version"}
	}
	s, ok := lookupCommand(name)
	if !ok {
		_, _ = fmt.Fprintf(e.stderr, "receiver: unknown command %q\n\n", name)
		printUsage(e.stderr)
		return cli.ExitUsage
	}
	err := s.new(e).Run(ctx, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return cli.ExitOK
	}
	if xe, ok := errors.AsType[exitError](err); ok {
		if xe.err != nil {
			_, _ = fmt.Fprintf(e.stderr, "receiver %s: %v\n", name, xe.err)
		}
		return xe.code
	}
	_, _ = fmt.Fprintf(e.stderr, "receiver %s: %v\n", name, err)
	if errors.Is(err, errUsage) {
		_, _ = fmt.Fprintf(e.stderr, "Run \"receiver help %s\" for its flags.\n", name)
		return cli.ExitUsage
	}
	return cli.ExitFailure
}

// exitError ends a command with a code of its own (status: 3, 4), after
// printing err if there is one.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("receiver: the WeCom keyword-hit receiver\n\nCommands:\n")
	for _, s := range commands() {
		lines := strings.Split(s.summary, "\n")
		if len(s.synopsis) <= 34 {
			fmt.Fprintf(&b, "  %-34s  %s\n", s.synopsis, lines[0])
			lines = lines[1:]
		} else {
			fmt.Fprintf(&b, "  %s\n", s.synopsis)
		}
		for _, l := range lines {
			fmt.Fprintf(&b, "  %-34s  %s\n", "", l)
		}
	}
	b.WriteString(`
backfill, rules, search, tail, status, dlq and corps reach the running receiver's NATS; on
its host they log in with the operator key it wrote, elsewhere pass -creds FILE.

Every command: exit 0 done, 1 failed, 2 usage error (status adds 3 and 4);
results on stdout, progress and notes on stderr; -o json where it prints
results; durations take s, m, h and d (5d). Run "receiver help COMMAND" (or
"receiver COMMAND -h") for a command's flags, their defaults and the
environment it reads.
`)
	_, _ = io.WriteString(w, b.String())
}

// flagSet starts the flags of a command (name "serve", or "rules list" for
// a subcommand): help (-h, "receiver help") prints synopsis, the help
// text, every flag with its default and the environment the command reads,
// on stdout; the flag package itself prints nothing, so a mistake is
// reported once, by run.
func (e env) flagSet(name, synopsis, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd, _, _ := strings.Cut(name, " ")
	s, _ := lookupCommand(cmd)
	u := cli.Usage{Synopsis: "receiver " + synopsis, Help: help, Env: s.env}
	fs.Usage = func() { cli.PrintUsage(e.stdout, fs, u) }
	if e.onFlagSet != nil {
		e.onFlagSet(fs)
	}
	return fs
}

// parse parses a command's flags: help on -h (flag.ErrHelp, exit 0), a
// usage error on any mistake.
func parse(fs *flag.FlagSet, args []string) error {
	err := cli.Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
	}
	return err
}

// configFlag registers -config with RECEIVER_CONFIG as its default.
func configFlag(fs *flag.FlagSet, e env) *string {
	return fs.String("config", e.getenv("RECEIVER_CONFIG"), "configuration `file`; $RECEIVER_CONFIG gives the default")
}

// parseFlags parses a subcommand's flags and requires -config.
func parseFlags(fs *flag.FlagSet, args []string, path *string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *path == "" {
		return fmt.Errorf("%w: -config FILE or RECEIVER_CONFIG is required", errUsage)
	}
	return nil
}

// versionCommand prints the version: the module version and VCS revision
// the build info holds (go build and go install record them).
type versionCommand struct{ env env }

func (c *versionCommand) Run(_ context.Context, args []string) error {
	fs := c.env.flagSet("version", "version [-o json]",
		"Prints the module version (a tag, or the pseudo-version go build derives\n"+
			"from the commit), the VCS revision and the Go version.")
	var out cli.Output
	cli.OutputVar(fs, &out)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	v := cli.ReadVersion(version)
	if out == cli.JSON {
		return newJSONLines(c.env.stdout).write(v)
	}
	_, err := fmt.Fprintln(c.env.stdout, "receiver", v)
	return err
}

// helpCommand prints the overview, or a command's help.
type helpCommand struct{ env env }

func (c *helpCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printUsage(c.env.stdout)
		return nil
	}
	s, ok := lookupCommand(args[0])
	if !ok {
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	if s.name == "help" {
		printUsage(c.env.stdout)
		return nil
	}
	return s.new(c.env).Run(ctx, append(args[1:], "-h"))
}
