package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/config"
)

// checkConfigCommand loads and validates a configuration without starting
// anything, printing every problem of the file on its own line, with its
// key path and line (config.Parse reports them all in one run).
type checkConfigCommand struct {
	env Env
}

func (c *checkConfigCommand) Run(_ context.Context, args []string) error {
	fs := c.env.FlagSet("check-config", "check-config -config FILE [-o json]",
		"Loads and validates the file (and the environment variables it names)\n"+
			"without starting anything. A valid file prints one OK line on stdout;\n"+
			"an invalid one prints every problem, each with its key path and line,\n"+
			"on stderr and exits 1. -o json prints either result on stdout as\n"+
			"{\"file\",\"valid\",\"apps\",\"nats\",\"warnings\",\"problems\"}.")
	path := ConfigFlag(fs, c.env)
	var out Output
	OutputVar(fs, &out)
	if err := ParseConfigFlags(fs, args, path); err != nil {
		return err
	}
	res := checkResult{File: *path}
	cfg, err := c.env.LoadConfig(*path)
	if err != nil {
		var problems []error
		var joined interface{ Unwrap() []error }
		ok := errors.As(err, &joined)
		if ok {
			problems = joined.Unwrap()
		} else {
			problems = []error{err}
		}
		for _, p := range problems {
			res.Problems = append(res.Problems, p.Error())
		}
		if out == JSON {
			_ = format.NewJSONLines(c.env.Stdout).Write(res)
			return fmt.Errorf("%s is not valid", *path)
		}
		if !ok {
			return err // the file could not be read: one error, as it is
		}
		_, _ = fmt.Fprintf(c.env.Stderr, "%s: %d %s:\n", *path, len(problems), format.Plural(len(problems), "problem", "problems"))
		for _, p := range problems {
			_, _ = fmt.Fprintf(c.env.Stderr, "  %v\n", p)
		}
		return fmt.Errorf("%s is not valid", *path)
	}
	res.Valid, res.Apps, res.NATS = true, cfg.AppNames(), natsMode(cfg)
	if cfg.AllowSampleSecrets {
		res.Warnings = append(res.Warnings, app.SampleSecretsWarning)
	}
	if out == JSON {
		return format.NewJSONLines(c.env.Stdout).Write(res)
	}
	for _, w := range res.Warnings {
		_, _ = fmt.Fprintf(c.env.Stderr, "%s: warning: %s\n", *path, w)
	}
	_, err = fmt.Fprintf(c.env.Stdout, "%s: OK (%d %s: %s; nats: %s)\n",
		*path, len(cfg.Apps), format.Plural(len(cfg.Apps), "app", "apps"), strings.Join(res.Apps, ", "), res.NATS)
	return err
}

// checkResult is check-config's -o json output.
type checkResult struct {
	File     string   `json:"file"`
	Valid    bool     `json:"valid"`
	Apps     []string `json:"apps,omitempty"`
	NATS     string   `json:"nats,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

func natsMode(cfg *config.Config) string {
	if urls := cfg.NATS.URLs(); len(urls) > 0 {
		return fmt.Sprintf("external, %d URLs", len(urls))
	}
	return "embedded, store " + cfg.NATS.StoreDir
}
