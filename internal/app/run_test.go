package app_test

import (
	"context"

	"github.com/wecomhit/wecomhit/internal/cli"
)

// run runs a receiver command in-process, as cmd/receiver's main does.
func run(ctx context.Context, args []string, e cli.Env) int {
	return cli.Run(ctx, args, e, commands())
}

// commands is the receiver's command table.
func commands() []cli.Spec { return cli.Commands() }
