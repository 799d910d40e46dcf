package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/publish"
)

// corpsCommand lists, shows and removes the corps of the registry
// (docs/corps.md) through a running receiver's NATS.
type corpsCommand struct {
	env env
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
	out                      outputFormat
}

func (c *corpsCommand) flagSet(sub, help string) (*flag.FlagSet, *corpsFlags) {
	fs := c.env.flagSet("corps "+sub, "corps "+sub+" [flags]", help)
	f := &corpsFlags{}
	f.config = configFlag(fs, c.env)
	f.app = fs.String("app", "", "app `name` (apps[].name)")
	f.corp = fs.String("corp", "", "corp `id`")
	cli.OutputVar(fs, &f.out)
	f.creds = credsFlag(fs)
	return fs, f
}

// open loads the configuration and binds the registry (nil when off).
func (f *corpsFlags) open(ctx context.Context, e env) (*config.Config, *corps.Registry, func(), error) {
	if *f.config == "" {
		return nil, nil, nil, fmt.Errorf("%w: -config FILE or RECEIVER_CONFIG is required", errUsage)
	}
	cfg, err := e.loadConfig(*f.config)
	if err != nil {
		return nil, nil, nil, err
	}
	if *f.app != "" {
		if _, ok := cfg.App(*f.app); !ok {
			return nil, nil, nil, fmt.Errorf("%w: -app %q is not configured (have %v)", errUsage, *f.app, cfg.AppNames())
		}
	}
	if !cfg.Corps.Enabled() {
		return cfg, nil, func() {}, nil
	}
	log := e.cmdLog()
	b, err := dialNATS(ctx, cfg, "wecom-receiver-corps", log, withCreds(*f.creds))
	if err != nil {
		return nil, nil, nil, err
	}
	// Listing and removing need no key: the registry opens without one.
	reg, err := corps.Bind(ctx, b.JetStream(), nil)
	if err != nil {
		closeBroker(b)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, nil, nil, fmt.Errorf("no corp registry yet (has a receiver with corps.encryption_keys run?): %w", err)
		}
		return nil, nil, nil, err
	}
	return cfg, reg, func() { closeBroker(b) }, nil
}

// corpEntry is a corp as list, get and the admin API show it: the
// registry's metadata, never the permanent code.
type corpEntry struct {
	App          string     `json:"app"`
	CorpID       string     `json:"corp_id"`
	CorpName     string     `json:"corp_name,omitempty"`
	State        string     `json:"state"`
	Source       string     `json:"source"`
	AuthorizedAt *time.Time `json:"authorized_at,omitempty"`
	LastChange   string     `json:"last_change,omitempty"`
	ChangedAt    *time.Time `json:"changed_at,omitempty"`
	EventAt      *time.Time `json:"event_at,omitempty"`
	// KeyID names the key the permanent code is sealed under; "" if none.
	KeyID string `json:"key_id,omitempty"`
	// Fixed: the corp comes from the configuration, not the registry.
	Fixed bool `json:"fixed,omitempty"`
}

func newCorpEntry(c corps.Corp) corpEntry {
	e := corpEntry{
		App: c.App, CorpID: c.CorpID, CorpName: c.CorpName, State: string(c.State), Source: string(c.Source),
		LastChange: string(c.LastChange), KeyID: c.KeyID(),
	}
	for _, p := range []struct {
		t   time.Time
		dst **time.Time
	}{{c.AuthorizedAt, &e.AuthorizedAt}, {c.ChangedAt, &e.ChangedAt}, {c.EventAt, &e.EventAt}} {
		if !p.t.IsZero() {
			t := p.t
			*p.dst = &t
		}
	}
	return e
}

// listCorps is every corp of app ("" for all): the configuration's fixed
// corps, then the registry's (reg may be nil), sorted by app and corp.
func listCorps(ctx context.Context, cfg *config.Config, reg *corps.Registry, app string) ([]corpEntry, error) {
	var out []corpEntry
	fixed := fixedCorps(cfg)
	for _, a := range cfg.Apps {
		if app != "" && a.Name != app {
			continue
		}
		for _, id := range fixed[a.Name] {
			out = append(out, corpEntry{App: a.Name, CorpID: id, State: string(corps.Active), Source: string(corps.SourceConfig), Fixed: true})
		}
	}
	if reg != nil {
		all, err := reg.List(ctx, app)
		if err != nil {
			return nil, err
		}
		for _, c := range all {
			if _, ok := cfg.App(c.App); ok {
				out = append(out, newCorpEntry(c))
			}
		}
	}
	slices.SortFunc(out, func(a, b corpEntry) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.CorpID, b.CorpID))
	})
	return out, nil
}

func (c *corpsCommand) print(entries []corpEntry, out outputFormat) error {
	if out == outputJSON {
		w := newJSONLines(c.env.stdout)
		for _, e := range entries {
			if err := w.write(e); err != nil {
				return err
			}
		}
		return nil
	}
	var tb table
	tb.add("APP", "CORP", "NAME", "STATE", "SOURCE", "AUTHORIZED", "LAST_CHANGE", "CHANGED", "KEY")
	for _, e := range entries {
		tb.add(e.App, e.CorpID, e.CorpName, e.State, e.Source, localTimePtr(e.AuthorizedAt), e.LastChange, localTimePtr(e.ChangedAt), e.KeyID)
	}
	return tb.write(c.env.stdout)
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
	cfg, reg, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	entries, err := listCorps(lctx, cfg, reg, *f.app)
	if err != nil {
		return err
	}
	return c.print(entries, f.out)
}

func (c *corpsCommand) get(ctx context.Context, args []string) error {
	fs, f := c.flagSet("get", "Shows one corp, as list does.\n")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *f.app == "" || *f.corp == "" {
		return fmt.Errorf("%w: -app NAME and -corp ID are required", errUsage)
	}
	cfg, reg, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	entries, err := listCorps(lctx, cfg, reg, *f.app)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.CorpID == *f.corp {
			return c.print([]corpEntry{e}, f.out)
		}
	}
	return fmt.Errorf("%w: app %q has no corp %q", errUsage, *f.app, *f.corp)
}

func (c *corpsCommand) remove(ctx context.Context, args []string) error {
	fs, f := c.flagSet("remove", "Cancels a registry corp as the operator (every receiver stops serving it,\n"+
		"deletes its data and publishes the cancelled event), then erases its\n"+
		"registry entry. A corp fixed by the configuration is removed by editing\n"+
		"the file. A corp that authorizes the suite again comes back.\n")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *f.app == "" || *f.corp == "" {
		return fmt.Errorf("%w: -app NAME and -corp ID are required", errUsage)
	}
	cfg, reg, done, err := f.open(ctx, c.env)
	if err != nil {
		return err
	}
	defer done()
	if reg == nil {
		return fmt.Errorf("%w: the corp registry is off (no corps.encryption_keys): remove the corp from the configuration", errUsage)
	}
	rctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	err = removeCorp(rctx, reg, func(ctx context.Context, app, corp string) error {
		return cancelAndWait(ctx, reg, f, c.env, cfg, app, corp)
	}, *f.app, *f.corp)
	if err != nil {
		if errors.Is(err, corps.ErrNotFound) {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		return err
	}
	_, err = fmt.Fprintf(c.env.stdout, "removed %s/%s\n", *f.app, *f.corp)
	return err
}

// removeTimeout bounds corps remove: the receivers delete the corp's data,
// which scans its app's callback records.
const removeTimeout = 2 * time.Minute

// removeCorp cancels (app, corp) with cancel, which returns once the corp's
// data is deleted, and then erases its registry entry. Erasing first would
// leave the receivers nothing to act on.
func removeCorp(ctx context.Context, reg *corps.Registry, cancel func(ctx context.Context, app, corp string) error, app, corp string) error {
	if _, err := reg.Get(ctx, app, corp); err != nil {
		return err
	}
	if err := cancel(ctx, app, corp); err != nil {
		return err
	}
	return reg.Delete(ctx, app, corp)
}

// cancelAndWait cancels (app, corp) in the registry as the operator and
// waits until a receiver has deleted its data, which it announces with the
// corp's cancelled event: the receivers' registry watches do the work.
func cancelAndWait(ctx context.Context, reg *corps.Registry, f *corpsFlags, e env, cfg *config.Config, app, corp string) error {
	c, err := reg.Cancel(ctx, app, corp, time.Time{}, corps.CauseOperator)
	if err != nil {
		return err
	}
	log := e.cmdLog()
	b, err := dialNATS(ctx, cfg, "wecom-receiver-corps", log, withCreds(*f.creds))
	if err != nil {
		return err
	}
	defer closeBroker(b)
	s, err := b.JetStream().Stream(ctx, publish.CorpStreamName)
	if err != nil {
		return err
	}
	subject := publish.CorpSubject(cfg.NATS.SubjectPrefix, corp, wecomhit.CorpCancelled)
	for {
		if m, err := s.GetLastMsgForSubject(ctx, subject); err == nil {
			var ev wecomhit.CorpLifecycleEvent
			// Published after this cancellation (clocks a minute apart
			// at most): the corp's data is gone.
			if json.Unmarshal(m.Data, &ev) == nil && ev.App == app && ev.PublishedAt.After(c.ChangedAt.Add(-time.Minute)) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no receiver confirmed deleting the data of %s/%s (is one running?); the corp stays cancelled, run remove again: %w", app, corp, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *corpsCommand) rekey(ctx context.Context, args []string) error {
	fs, f := c.flagSet("rekey", "Re-seals every permanent code that is not under corps.current_key, with\n"+
		"compare-and-set (a concurrent change is never overwritten). Prints how many\n"+
		"it re-sealed; an entry it cannot open (its key is gone or changed) is\n"+
		"named in the error and left as it is (exit 1).\n")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *f.config == "" {
		return fmt.Errorf("%w: -config FILE or RECEIVER_CONFIG is required", errUsage)
	}
	cfg, err := c.env.loadConfig(*f.config)
	if err != nil {
		return err
	}
	if !cfg.Corps.Enabled() {
		return fmt.Errorf("%w: the corp registry is off (no corps.encryption_keys)", errUsage)
	}
	log := c.env.cmdLog()
	b, err := dialNATS(ctx, cfg, "wecom-receiver-corps", log, withCreds(*f.creds))
	if err != nil {
		return err
	}
	defer closeBroker(b)
	keys, err := corps.NewKeyringBase64(cfg.Corps.Keys(), cfg.Corps.CurrentKey)
	if err != nil {
		return err
	}
	reg, err := corps.Bind(ctx, b.JetStream(), keys)
	if err != nil {
		return fmt.Errorf("is the receiver running? %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	n, err := reg.Rekey(rctx)
	_, _ = fmt.Fprintf(c.env.stdout, "re-sealed %d permanent codes under key %s\n", n, keys.Current())
	return err
}
