package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/config"
)

// Env is what a command may use of the process, so tests can run commands
// in-process with their own.
type Env struct {
	LookupEnv      func(string) (string, bool)
	Stdout, Stderr io.Writer
	// OnFlagSet, if not nil, sees every flag set a command makes (tests
	// check that help lists each flag).
	OnFlagSet func(*flag.FlagSet)
	// Version, when not "", replaces the module version the build info
	// gives (ReadVersion): a release build's -ldflags -X value.
	Version string

	// table is the command table Run was given: help and FlagSet read it.
	table []Spec
}

// Getenv is the value of the environment variable k, "" if unset.
func (e Env) Getenv(k string) string {
	v, _ := e.LookupEnv(k)
	return v
}

// Log is the logger of an operator command: warnings and errors only, on
// stderr, so stdout holds nothing but the command's results.
func (e Env) Log() zerolog.Logger {
	return zerolog.New(e.Stderr).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// LoadConfig loads a configuration with this environment.
func (e Env) LoadConfig(path string) (*config.Config, error) {
	return config.LoadEnv(path, e.LookupEnv)
}

// config is LoadConfig of -config, which is required.
func (e Env) config(path string) (*config.Config, error) {
	if err := requireConfig(path); err != nil {
		return nil, err
	}
	return e.LoadConfig(path)
}

// requireConfig refuses an empty -config: a usage error.
func requireConfig(path string) error {
	if path == "" {
		return fmt.Errorf("%w: -config FILE or RECEIVER_CONFIG is required", ErrUsage)
	}
	return nil
}

// Command is one subcommand.
type Command interface {
	Run(ctx context.Context, args []string) error
}

// Spec is a subcommand's entry in the command table. Run, the overview,
// help and the tests all read the table, so a new command follows the
// convention by construction: its flag sets come from Env.FlagSet (help
// lists every flag with its default and the environment below), and its
// errors map to the exit codes in Run.
type Spec struct {
	Name     string
	Synopsis string // after "receiver "
	Summary  string // the overview's description, lines indented by the caller
	Env      []EnvVar
	// Subs are subcommands with flag sets of their own (rules list…),
	// which "help CMD SUB" and the tests reach.
	Subs []string
	New  func(e Env) Command
}

// The environment variables commands read.
var (
	EnvConfig = EnvVar{Name: "RECEIVER_CONFIG", Use: "the configuration file when -config is not given; the file may name more (${VAR})"}
	EnvColour = EnvVar{Name: "NO_COLOR", Use: "set (to anything) for logs without colour; colour is only ever used on a terminal"}
)

func lookup(table []Spec, name string) (Spec, bool) {
	for _, s := range table {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Run runs the command args name from table and returns the process's
// exit code: 0 done (and help), 1 failed, 2 usage error, or an ExitError's
// own. Errors go to e.Stderr, prefixed with the command.
func Run(ctx context.Context, args []string, e Env, table []Spec) int {
	e.table = table
	if len(args) == 0 {
		printOverview(e.Stderr, table)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printOverview(e.Stdout, table)
		return ExitOK
	case "-version", "--version":
		name, args = "version", []string{"version"}
	}
	s, ok := lookup(table, name)
	if !ok {
		_, _ = fmt.Fprintf(e.Stderr, "receiver: unknown command %q\n\n", name)
		printOverview(e.Stderr, table)
		return ExitUsage
	}
	return exitCode(e, name, s.New(e).Run(ctx, args[1:]))
}

// exitCode reports err of command name and maps it to an exit code.
func exitCode(e Env, name string, err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	}
	if xe, ok := errors.AsType[ExitError](err); ok {
		if xe.Err != nil {
			_, _ = fmt.Fprintf(e.Stderr, "receiver %s: %v\n", name, xe.Err)
		}
		return xe.Code
	}
	_, _ = fmt.Fprintf(e.Stderr, "receiver %s: %v\n", name, err)
	if errors.Is(err, ErrUsage) {
		_, _ = fmt.Fprintf(e.Stderr, "Run \"receiver help %s\" for its flags.\n", name)
		return ExitUsage
	}
	return ExitFailure
}

// ExitError ends a command with a code of its own (status: 3, 4), after
// printing Err if there is one.
type ExitError struct {
	Code int
	Err  error
}

func (e ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e ExitError) Unwrap() error { return e.Err }

func printOverview(w io.Writer, table []Spec) {
	var b strings.Builder
	b.WriteString("receiver: the WeCom keyword-hit receiver\n\nCommands:\n")
	for _, s := range table {
		lines := strings.Split(s.Summary, "\n")
		if len(s.Synopsis) <= 34 {
			fmt.Fprintf(&b, "  %-34s  %s\n", s.Synopsis, lines[0])
			lines = lines[1:]
		} else {
			fmt.Fprintf(&b, "  %s\n", s.Synopsis)
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

// FlagSet starts the flags of a command (name "serve", or "rules list" for
// a subcommand): help (-h, "receiver help") prints synopsis, the help
// text, every flag with its default and the environment the command reads,
// on stdout; the flag package itself prints nothing, so a mistake is
// reported once, by Run.
func (e Env) FlagSet(name, synopsis, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd, _, _ := strings.Cut(name, " ")
	s, _ := lookup(e.table, cmd)
	u := Usage{Synopsis: "receiver " + synopsis, Help: help, Env: s.Env}
	fs.Usage = func() { PrintUsage(e.Stdout, fs, u) }
	if e.OnFlagSet != nil {
		e.OnFlagSet(fs)
	}
	return fs
}

// ParseOrHelp parses a command's flags: help on -h (flag.ErrHelp, exit 0),
// a usage error on any mistake.
func ParseOrHelp(fs *flag.FlagSet, args []string) error {
	err := Parse(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
	}
	return err
}

// ConfigFlag registers -config with RECEIVER_CONFIG as its default.
func ConfigFlag(fs *flag.FlagSet, e Env) *string {
	return fs.String("config", e.Getenv("RECEIVER_CONFIG"), "configuration `file`; $RECEIVER_CONFIG gives the default")
}

// ParseConfigFlags parses a command's flags, refuses positional arguments
// and requires -config.
func ParseConfigFlags(fs *flag.FlagSet, args []string, path *string) error {
	if err := ParseOrHelp(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	return requireConfig(*path)
}
