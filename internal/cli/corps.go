package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
)

// corpsCommand lists, shows and removes the corps of the registry
// (docs/corps.md) through a running receiver's NATS.
type corpsCommand struct {
	env Env
}

const corpsUsage = `Usage: receiver corps COMMAND [flags]

The corps each app serves: the corp registry (docs/corps.md), and the corps
the configuration fixes (zone apps; archive apps when corps.encryption_keys
is not set). Works through a running receiver's NATS.

Commands:
  list                       every corp, or an app's (-app NAME)
  get -app NAME -corp ID     one corp
  remove -app NAME -corp ID  stop serving a registry corp and delete its data
                             (as cancel_auth does: every receiver stops it,
                             deletes its tokens, cursor, events and records,
                             and publishes <prefix>.corp.<corp>.cancelled),
                             then erase its registry entry
  rekey                      re-seal every permanent code under corps.current_key,
                             so that older keys can leave the configuration

Every command takes -config FILE and -creds FILE; list and get take -o
table|json. Permanent codes are never printed: the KEY column names the key
a code is sealed under. rekey needs the keys (corps.encryption_keys); the
others do not.

Exit status: 0 done, 1 connection error, 2 usage error (including a corp
that is not there).
`

func (c *corpsCommand) Run(ctx context.Context, args []string) error {
	return runVerb(ctx, c.env, "corps", corpsUsage, []verb{
		{"list", c.list}, {"get", c.get}, {"remove", c.remove}, {"rekey", c.rekey},
	}, args)
}

// corpsFlags are the flags every corps command shares.
type corpsFlags struct {
	config, app, corp, creds *string
	out                      Output
}

func (c *corpsCommand) flagSet(sub, help string) (*flag.FlagSet, *corpsFlags) {
	fs := c.env.FlagSet("corps "+sub, "corps "+sub+" [flags]", help)
	f := &corpsFlags{}
	f.config = ConfigFlag(fs, c.env)
	f.app = fs.String("app", "", "app `name` (apps[].name)")
	f.corp = fs.String("corp", "", "corp `id`")
	OutputVar(fs, &f.out)
	f.creds = credsFlag(fs)
	return fs, f
}

// corpsConn is what a corps command works with: the configuration and,
// when the registry is on, the registry and the connection it is bound on.
type corpsConn struct {
	cfg *config.Config
	reg *corps.Registry // nil: the registry is off
	js  jetstream.JetStream
}

// open loads the configuration and binds the registry (nil when off).
// done closes the connection.
func (f *corpsFlags) open(ctx context.Context, e Env) (conn corpsConn, done func(), err error) {
	if conn.cfg, err = e.config(*f.config); err != nil {
		return conn, nil, err
	}
	if *f.app != "" {
		if _, ok := conn.cfg.App(*f.app); !ok {
			return conn, nil, fmt.Errorf("%w: -app %q is not configured (have %v)", ErrUsage, *f.app, conn.cfg.AppNames())
		}
	}
	if !conn.cfg.Corps.Enabled() {
		return conn, func() {}, nil
	}
	b, err := app.Dial(ctx, conn.cfg, "wecom-receiver-corps", *f.creds, e.Log())
	if err != nil {
		return conn, nil, err
	}
	conn.js = b.JetStream()
	// Listing and removing need no key: the registry opens without one.
	conn.reg, err = corps.Bind(ctx, conn.js, nil)
	if err != nil {
		app.CloseBroker(b)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return conn, nil, fmt.Errorf("no corp registry yet (has a receiver with corps.encryption_keys run?): %w", err)
		}
		return conn, nil, err
	}
	return conn, func() { app.CloseBroker(b) }, nil
}

// openCorp parses the flags of a command about one corp, which -app and
// -corp name, and opens as open does.
func (f *corpsFlags) openCorp(ctx context.Context, e Env, fs *flag.FlagSet, args []string) (corpsConn, func(), error) {
	if err := parseNoArgs(fs, args); err != nil {
		return corpsConn{}, nil, err
	}
	if *f.app == "" || *f.corp == "" {
		return corpsConn{}, nil, fmt.Errorf("%w: -app NAME and -corp ID are required", ErrUsage)
	}
	return f.open(ctx, e)
}

func (c *corpsCommand) print(entries []app.CorpEntry, out Output) error {
	if out == JSON {
		return format.WriteJSONLines(c.env.Stdout, entries)
	}
	var tb format.Table
	tb.Add("APP", "CORP", "NAME", "STATE", "SOURCE", "AUTHORIZED", "LAST_CHANGE", "CHANGED", "KEY")
	for _, e := range entries {
		tb.Add(e.App, e.CorpID, e.CorpName, e.State, e.Source, localTimePtr(e.AuthorizedAt), e.LastChange, localTimePtr(e.ChangedAt), e.KeyID)
	}
	return tb.Write(c.env.Stdout)
}

func localTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

func (c *corpsCommand) list(ctx context.Context, args []string) error {
	fs, f := c.flagSet("list", "Lists corps: APP, CORP, NAME, STATE (active, cancelled), SOURCE (config,\n"+
		"create_auth, reset_permanent_code), AUTHORIZED, LAST_CHANGE, CHANGED (local\n"+
		"time), KEY (the key id the permanent code is sealed under). -o json prints\n"+
		"one object per line.\n")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	conn, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	lctx, cancel := context.WithTimeout(ctx, app.ListTimeout)
	defer cancel()
	entries, err := app.ListCorps(lctx, conn.cfg, conn.reg, *f.app)
	if err != nil {
		return err
	}
	return c.print(entries, f.out)
}

func (c *corpsCommand) get(ctx context.Context, args []string) error {
	fs, f := c.flagSet("get", "Shows one corp, as list does.\n")
	conn, done, err := f.openCorp(ctx, c.env, fs, args)
	if err != nil {
		return err
	}
	defer done()
	gctx, cancel := context.WithTimeout(ctx, app.ListTimeout)
	defer cancel()
	e, err := app.GetCorp(gctx, conn.cfg, conn.reg, *f.app, *f.corp)
	if errors.Is(err, corps.ErrNotFound) {
		return fmt.Errorf("%w: app %q has no corp %q", ErrUsage, *f.app, *f.corp)
	}
	if err != nil {
		return err
	}
	return c.print([]app.CorpEntry{e}, f.out)
}

func (c *corpsCommand) remove(ctx context.Context, args []string) error {
	fs, f := c.flagSet("remove", "Cancels a registry corp as the operator (every receiver stops serving it,\n"+
		"deletes its data and publishes the cancelled event), then erases its\n"+
		"registry entry. A corp fixed by the configuration is removed by editing\n"+
		"the file. A corp that authorizes the suite again comes back.\n")
	conn, done, err := f.openCorp(ctx, c.env, fs, args)
	if err != nil {
		return err
	}
	defer done()
	if conn.reg == nil {
		return fmt.Errorf("%w: the corp registry is off (no corps.encryption_keys): remove the corp from the configuration", ErrUsage)
	}
	rctx, cancel := context.WithTimeout(ctx, app.RemoveTimeout)
	defer cancel()
	err = app.RemoveCorp(rctx, conn.reg, func(ctx context.Context, a, corp string) error {
		return app.CancelAndWait(ctx, conn.reg, conn.js, conn.cfg.NATS.SubjectPrefix, a, corp)
	}, *f.app, *f.corp)
	if err != nil {
		if errors.Is(err, corps.ErrNotFound) {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return err
	}
	_, err = fmt.Fprintf(c.env.Stdout, "removed %s/%s\n", *f.app, *f.corp)
	return err
}

func (c *corpsCommand) rekey(ctx context.Context, args []string) error {
	fs, f := c.flagSet("rekey", "Re-seals every permanent code that is not under corps.current_key, with\n"+
		"compare-and-set (a concurrent change is never overwritten). Prints how many\n"+
		"it re-sealed; an entry it cannot open (its key is gone or changed) is\n"+
		"named in the error and left as it is (exit 1).\n")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := c.env.config(*f.config)
	if err != nil {
		return err
	}
	if !cfg.Corps.Enabled() {
		return fmt.Errorf("%w: the corp registry is off (no corps.encryption_keys)", ErrUsage)
	}
	log := c.env.Log()
	b, err := app.Dial(ctx, cfg, "wecom-receiver-corps", *f.creds, log)
	if err != nil {
		return err
	}
	defer app.CloseBroker(b)
	keys, err := corps.NewKeyringBase64(cfg.Corps.Keys(), cfg.Corps.CurrentKey)
	if err != nil {
		return err
	}
	reg, err := corps.Bind(ctx, b.JetStream(), keys)
	if err != nil {
		return fmt.Errorf("is the receiver running? %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, app.RemoveTimeout)
	defer cancel()
	n, err := reg.Rekey(rctx)
	_, _ = fmt.Fprintf(c.env.Stdout, "re-sealed %d permanent codes under key %s\n", n, keys.Current())
	return err
}
