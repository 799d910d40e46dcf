package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
)

// verb is one subcommand of a command that has several (rules list, dlq
// replay, corps remove).
type verb struct {
	name string
	run  func(ctx context.Context, args []string) error
}

// runVerb runs the verb that args[0] names with the rest of args. help, -h
// and --help print usage on stdout; a missing, unknown or misplaced verb
// prints it on stderr and is a usage error that lists the verbs.
func runVerb(ctx context.Context, e Env, command, usage string, verbs []verb, args []string) error {
	names := make([]string, len(verbs))
	for i, v := range verbs {
		names[i] = v.name
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if len(args) == 0 {
		_, _ = fmt.Fprint(e.Stderr, usage)
		return fmt.Errorf("%w: missing command: %s", ErrUsage, want)
	}
	name, args := args[0], args[1:]
	for _, v := range verbs {
		if v.name == name {
			return v.run(ctx, args)
		}
	}
	switch name {
	case "help", "-h", "-help", "--help":
		_, _ = fmt.Fprint(e.Stdout, usage)
		return flag.ErrHelp
	}
	_, _ = fmt.Fprint(e.Stderr, usage)
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("%w: the command comes first: receiver %s %s [flags]", ErrUsage, command, strings.Join(names, "|"))
	}
	return fmt.Errorf("%w: unknown command %q: want %s", ErrUsage, name, want)
}
