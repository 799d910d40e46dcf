package cli

import (
	"context"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/memlimit"
)

// serveCommand runs the service until ctx is cancelled.
type serveCommand struct {
	env Env
}

func (c *serveCommand) Run(ctx context.Context, args []string) error {
	fs := c.env.FlagSet("serve", "serve -config FILE",
		"Runs the service until SIGTERM or Ctrl-C. Logs go to stderr: JSON lines,\n"+
			"or with log.format console a layout for people, coloured only on a\n"+
			"terminal without NO_COLOR.")
	path := ConfigFlag(fs, c.env)
	if err := ParseConfigFlags(fs, args, path); err != nil {
		return err
	}
	cfg, err := c.env.LoadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, c.env.Stderr, Colour(c.env.Stderr, c.env.Getenv))
	warnSampleSecrets(cfg, log)
	// Process-wide, so here and not in Main: tests run several Mains.
	raiseFileLimit(log, cfg.HTTP.MaxConnections+cfg.Admin.MaxConnections)
	stopGoverning := governMemory(log, cfg.MemoryLimitBytes, c.env.Getenv("GOMEMLIMIT"))
	defer stopGoverning()
	m := app.NewMain(cfg, log)
	if err := m.Open(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info().Msg("shutting down")
	closeCtx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	return m.Close(closeCtx)
}

// governMemory applies memory_limit_bytes as the runtime's soft memory
// limit and starts a memlimit.Governor that raises it while the live heap
// outgrows it (nats-server's de-duplication ids, BENCHMARKS.md), unless
// GOMEMLIMIT (env, as the runtime read it at start) set a limit already:
// the operator's environment wins over the file's default, and is left
// as it is. stop ends the governor, waits for it, and puts back the limit
// found before (tests run several serves in one process).
func governMemory(log zerolog.Logger, limit int64, env string) (stop func()) {
	switch {
	case env != "":
		log.Info().Str("gomemlimit", env).Msg("memory limit from GOMEMLIMIT")
		return func() {}
	case limit <= 0:
		return func() {}
	}
	stop = memlimit.Start(limit, log)
	log.Info().Int64("memory_limit_bytes", limit).Msg("memory limit")
	return stop
}

// newLogger builds the process logger from the config. The level and format
// were validated by config. The console format colours only when colour is
// true (a terminal, no NO_COLOR): escape codes in a file or a log
// collector are noise.
func newLogger(c config.Log, w io.Writer, colour bool) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !colour}
	}
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// warnSampleSecrets logs, at every start, that allow_sample_secrets is on
// and which apps use a sample secret.
func warnSampleSecrets(cfg *config.Config, log zerolog.Logger) {
	if !cfg.AllowSampleSecrets {
		return
	}
	apps := []string{}
	for i := range cfg.Apps {
		if config.SampleSecret(&cfg.Apps[i]) {
			apps = append(apps, cfg.Apps[i].Name)
		}
	}
	log.Warn().Strs("apps_with_sample_secrets", apps).Msg(app.SampleSecretsWarning)
}
