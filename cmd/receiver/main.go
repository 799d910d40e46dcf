// Command receiver is the WeCom keyword-hit receiver: it takes WeCom's
// encrypted callbacks, stores them durably in NATS JetStream, fetches the
// hits they announce from WeCom and publishes them as events.
//
// Usage:
//
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
//	receiver corps list|get|remove|rekey -config FILE
//	                                   the corps each app serves; remove one; re-seal codes
//	receiver version                   print the version and VCS revision (also --version)
//	receiver help [COMMAND]            the overview, or a command's flags
//
// Every command follows one convention (internal/cli: the command table,
// Run and Env): exit 0 done, 1 failed, 2 usage error (status adds 3 and
// 4); results on stdout, progress and notes on stderr; -o table|json where
// results are printed; durations with a day unit; -h lists every flag with
// its default and the environment the command reads.
//
// Only this package sees OS signals and the process environment; the
// commands and their convention are internal/cli's, the service's
// assembly internal/app's. The demo is a binary of its own (cmd/demo), so
// that this one does not link the WeCom simulator and its sample secrets.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/wecomhit/wecomhit/internal/cli"
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
	code := run(ctx, os.Args[1:], cli.Env{LookupEnv: os.LookupEnv, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}

// run runs a command of the table with e.
func run(ctx context.Context, args []string, e cli.Env) int {
	e.Version = version
	return cli.Run(ctx, args, e, cli.Commands())
}
