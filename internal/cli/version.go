package cli

import (
	"context"
	"fmt"

	"github.com/wecomhit/wecomhit/internal/cli/format"
)

// versionCommand prints the version: the module version and VCS revision
// the build info holds (go build and go install record them).
type versionCommand struct{ env Env }

func (c *versionCommand) Run(_ context.Context, args []string) error {
	fs := c.env.FlagSet("version", "version [-o json]",
		"Prints the module version (a tag, or the pseudo-version go build derives\n"+
			"from the commit), the VCS revision and the Go version.")
	var out Output
	OutputVar(fs, &out)
	if err := ParseOrHelp(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	v := ReadVersion(c.env.Version)
	if out == JSON {
		return format.NewJSONLines(c.env.Stdout).Write(v)
	}
	_, err := fmt.Fprintln(c.env.Stdout, "receiver", v)
	return err
}

// helpCommand prints the overview, or a command's help.
type helpCommand struct{ env Env }

func (c *helpCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printOverview(c.env.Stdout, c.env.table)
		return nil
	}
	s, ok := lookup(c.env.table, args[0])
	if !ok {
		return fmt.Errorf("%w: unknown command %q", ErrUsage, args[0])
	}
	if s.Name == "help" {
		printOverview(c.env.Stdout, c.env.table)
		return nil
	}
	return s.New(c.env).Run(ctx, append(args[1:], "-h"))
}
