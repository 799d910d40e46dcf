package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/wecomhit/wecomhit/internal/config"
)

// checkConfigCommand loads and validates a configuration without starting
// anything, printing every problem of the file on its own line, with its
// key path and line (config.Parse reports them all in one run).
type checkConfigCommand struct {
	env env
}

func (c *checkConfigCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(c.env.stderr)
	path := configFlag(fs, c.env)
	if err := parseFlags(fs, args, path); err != nil {
		return err
	}
	cfg, err := c.env.loadConfig(*path)
	if err != nil {
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			n, noun := len(joined.Unwrap()), "problems"
			if n == 1 {
				noun = "problem"
			}
			_, _ = fmt.Fprintf(c.env.stderr, "%s: %d %s:\n", *path, n, noun)
			for _, e := range joined.Unwrap() {
				_, _ = fmt.Fprintf(c.env.stderr, "  %v\n", e)
			}
			return fmt.Errorf("%s is not valid", *path)
		}
		return err
	}
	if cfg.AllowSampleSecrets {
		_, _ = fmt.Fprintf(c.env.stderr, "%s: warning: %s\n", *path, sampleSecretsWarning)
	}
	_, _ = fmt.Fprintf(c.env.stdout, "%s: OK (%d apps: %s; nats: %s)\n",
		*path, len(cfg.Apps), strings.Join(cfg.AppNames(), ", "), natsMode(cfg))
	return nil
}

func natsMode(cfg *config.Config) string {
	if urls := cfg.NATS.URLs(); len(urls) > 0 {
		return fmt.Sprintf("external, %d URLs", len(urls))
	}
	return "embedded, store " + cfg.NATS.StoreDir
}
