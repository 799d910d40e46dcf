// Command receiver is the WeCom keyword-hit receiver: it takes WeCom's
// encrypted callbacks, stores them durably in NATS JetStream, and (in later
// stages) fetches and publishes the hits they announce.
//
// Usage:
//
//	receiver demo                      run everything locally against the WeCom simulator
//	receiver serve -config FILE        run the service (RECEIVER_CONFIG may name the file)
//	receiver check-config -config FILE validate a configuration and exit
//	receiver backfill -config FILE -app A [-corp C] -since TIME
//	                                   re-read hits from TIME; publishes what is missing
//	receiver rules list|get|create|update|delete -config FILE -app A
//	                                   manage an app's keyword rules in WeCom
//	receiver search QUERY -config FILE -app A
//	                                   find archived messages by a word; prints their msgids
//	receiver tail -config FILE         print hit events as they are published
//	receiver status -config FILE       a verdict and the facts behind it, from NATS
//	receiver creds consumer|operator -config FILE
//	                                   print a role's NATS credentials for the embedded server's listener
//	receiver dlq list|replay -config FILE
//	                                   list dead letters; replay callback dead letters
//	receiver version                   print the version
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
	"syscall"

	"github.com/wecomhit/wecomhit/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

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
}

func (e env) getenv(k string) string {
	v, _ := e.lookupEnv(k)
	return v
}

// loadConfig loads a configuration with this environment.
func (e env) loadConfig(path string) (*config.Config, error) {
	return config.LoadEnv(path, e.lookupEnv)
}

// command is one subcommand.
type command interface {
	Run(ctx context.Context, args []string) error
}

// errUsage marks a command-line mistake: exit code 2 and the usage text.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		printUsage(e.stderr)
		return 2
	}
	var cmd command
	switch args[0] {
	case "serve":
		cmd = &serveCommand{env: e}
	case "check-config":
		cmd = &checkConfigCommand{env: e}
	case "backfill":
		cmd = &backfillCommand{env: e}
	case "demo":
		cmd = &demoCommand{env: e}
	case "tail":
		cmd = &tailCommand{env: e}
	case "status":
		cmd = &statusCommand{env: e}
	case "rules":
		cmd = &rulesCommand{env: e}
	case "search":
		cmd = &searchCommand{env: e}
	case "creds":
		cmd = &credsCommand{env: e}
	case "dlq":
		cmd = &dlqCommand{env: e}
	case "version":
		_, _ = fmt.Fprintln(e.stdout, "receiver", version)
		return 0
	case "help", "-h", "-help", "--help":
		printUsage(e.stdout)
		return 0
	default:
		_, _ = fmt.Fprintf(e.stderr, "receiver: unknown command %q\n\n", args[0])
		printUsage(e.stderr)
		return 2
	}
	if err := cmd.Run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if xe, ok := errors.AsType[exitError](err); ok {
			if xe.err != nil {
				_, _ = fmt.Fprintf(e.stderr, "receiver %s: %v\n", args[0], xe.err)
			}
			return xe.code
		}
		_, _ = fmt.Fprintf(e.stderr, "receiver %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
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
	_, _ = fmt.Fprint(w, `receiver: the WeCom keyword-hit receiver

Commands:
  demo                        run everything locally against the WeCom simulator, printing hits
  serve -config FILE          run the service (RECEIVER_CONFIG may name the file)
  check-config -config FILE   validate a configuration and exit
  backfill -config FILE -app NAME [-corp ID] -since TIME
                              re-read hits from TIME (RFC 3339 or 6h ago), publish what is missing
  rules list|get|create|update|delete -config FILE -app NAME [-o json]
                              manage an app's keyword rules in WeCom
  search QUERY -config FILE -app NAME [filters] [-o json]
                              find archived messages by a word, every page; prints their msgids
  tail -config FILE [-since TIME] [-subject S] [-o json]
                              print hit events as they are published
  status -config FILE [-o json] [thresholds]
                              a verdict (OK, DEGRADED, STALLED) and the facts behind it: backlog,
                              dead letters, storage, suite tickets, each app and corp's fetches;
                              exit 0 OK, 3 needs attention, 4 cannot tell (NATS unreachable)
  creds consumer|operator -config FILE
                              print a role's credentials for the embedded NATS listener (nkey seed)
  dlq list|replay -config FILE [-app NAME] [-corp ID] [-kind K] [-reason R] [-o json]
                              list dead letters; replay callback dead letters (-seq N,... or -all)
  version                     print the version

backfill, rules, search, tail, status and dlq reach the running receiver's NATS; on
its host they log in with the operator key it wrote, elsewhere pass -creds FILE.

Run "receiver COMMAND -h" for a command's flags.
`)
}

// configFlag registers -config with RECEIVER_CONFIG as its default.
func configFlag(fs *flag.FlagSet, e env) *string {
	return fs.String("config", e.getenv("RECEIVER_CONFIG"), "configuration `file` (default $RECEIVER_CONFIG)")
}

// parseFlags parses a subcommand's flags and requires -config.
func parseFlags(fs *flag.FlagSet, args []string, path *string) error {
	if err := fs.Parse(args); err != nil {
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
