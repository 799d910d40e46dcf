package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/app"
	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/wecomsim"
)

// Demo credentials: WeCom's public sample values, as in the simulator's
// defaults and configs/receiver.local-sim.yaml. The demo's config allows
// them (allow_sample_secrets): it talks only to its own simulator.
const (
	demoToken  = "QDG6eK"
	demoAESKey = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
	demoSuite  = "wwArchiveSuite01"
	demoCorp   = "wwCorpABC123"
)

// demoCommand runs the whole thing on one machine with no configuration:
// an embedded NATS server, the WeCom simulator calling the receiver back,
// and the receiver, and prints hits as they reach NATS.
type demoCommand struct {
	env cli.Env
}

func (c *demoCommand) Run(ctx context.Context, args []string) error {
	o, out, runFor, err := c.parseFlags(args)
	if err != nil {
		return err
	}
	if runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, runFor)
		defer cancel()
	}
	// The service logs only what needs attention: the hits are the show.
	log := zerolog.New(consoleOrJSON(c.env.Stderr, c.env.Getenv, time.TimeOnly)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	d, err := openDemo(ctx, o, log)
	if err != nil {
		return err
	}
	defer d.Close()
	// Every event the stream holds, as tail prints them.
	hits, err := cli.ReadHits(ctx, d.m.Broker().JetStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{d.cfg.NATS.SubjectPrefix + ".hit.>"},
	})
	if err != nil {
		return err
	}
	seen := 0
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		seen, _ = hits.Print(ctx, c.env.Stdout, out, time.Local, 0)
	}()
	started := time.Now()
	_, _ = fmt.Fprintf(c.env.Stderr, "demo: WeCom simulator at %s (×%g speed) → receiver at http://%s → NATS at %s (nats --nkey %s --js-api-prefix '%s')\n"+
		"demo: hits appear below as they are published on %s.hit.>; Ctrl-C to stop\n",
		d.sim.URL(), o.speed, d.httpAddr, d.m.Broker().ClientURL(), broker.SeedFile(d.cfg.NATS.RolesDir(), app.RoleConsumer),
		app.ConsumerAPIPrefix, d.cfg.NATS.SubjectPrefix)

	<-ctx.Done()
	hits.Stop()
	<-printed // every line is out before the summary counts them
	stats := d.sim.Stats()
	_, _ = fmt.Fprintf(c.env.Stderr, "demo: %d hits published in %s; the simulator recorded %d hits and sent %d hit callbacks\n",
		seen, time.Since(started).Round(time.Second), stats.Hits, stats.Callbacks[wecomsim.CallbackHitKeyword].Delivered)
	return nil
}

// parseFlags reads the demo's flags: its options, the output format, and
// how long to run (0: until Ctrl-C).
func (c *demoCommand) parseFlags(args []string) (demoOptions, cli.Output, time.Duration, error) {
	fs := c.env.FlagSet("demo", "demo [flags]",
		"Runs an embedded NATS server, the WeCom simulator and the receiver in a\n"+
			"temporary directory, and prints each hit event as it is published: a\n"+
			"line each (table), or its JSON (-o json). Notes and the closing summary\n"+
			"go to stderr; so do the service's warnings, as console lines on a\n"+
			"terminal (coloured unless NO_COLOR) and JSON lines otherwise.")
	speed := fs.Float64("speed", 30, "conversation speed-up: messages arrive this many times faster (timestamps stay real)")
	rate := fs.Float64("rate", 20, "messages per conversation minute")
	seed := fs.Int64("seed", 0, "simulator seed (the same seed replays the same conversations; 0: a new one each run)")
	var runFor time.Duration
	cli.DurationVar(fs, &runFor, "for", 0, "stop after this long (0: run until Ctrl-C)")
	var out cli.Output
	cli.OutputVar(fs, &out)
	asJSON := fs.Bool("json", false, "deprecated: use -o json")
	if err := cli.ParseOrHelp(fs, args); err != nil {
		return demoOptions{}, out, 0, err
	}
	if *asJSON {
		out = cli.JSON
	}
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	if fs.NArg() > 0 {
		return demoOptions{}, out, 0, fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, fs.Args())
	}
	return demoOptions{speed: *speed, rate: *rate, seed: *seed}, out, runFor, nil
}

// demoOptions are the demo's knobs; clock is nil (the real clock) except
// in tests.
type demoOptions struct {
	speed, rate float64
	seed        int64
	clock       func() time.Time
}

// demoSystem is the demo's wiring, shared with its tests: a simulator
// calling back a receiver with an embedded NATS server in a temporary
// directory.
type demoSystem struct {
	sim      *wecomsim.Sim
	m        *app.Main
	cfg      *config.Config
	httpAddr string
	life     app.Lifecycle // what Close undoes, registered as openDemo goes
}

// openDemo starts the demo's parts; on an error it closes those it started.
func openDemo(ctx context.Context, o demoOptions, log zerolog.Logger) (_ *demoSystem, err error) {
	d := &demoSystem{life: app.Lifecycle{Log: log}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	dir, err := os.MkdirTemp("", "wecom-receiver-demo-")
	if err != nil {
		return nil, err
	}
	d.life.OnClose("temporary directory", func(context.Context) error { return os.RemoveAll(dir) })
	// The simulator must know the receiver's address before either starts:
	// bind the receiver's port now and hand the listener over (Main.Open
	// takes it over; until then it is ours).
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	d.life.OnClose("receiver listener", app.CloseListener(lis))
	d.httpAddr = lis.Addr().String()
	// Registered before the simulator, so it stops after it: the simulator
	// then sends nothing to a stopped receiver.
	d.life.OnClose("receiver", func(ctx context.Context) error {
		if d.m == nil {
			return nil
		}
		return d.m.Close(ctx)
	})
	if err := d.startSim(ctx, o, log); err != nil {
		return nil, err
	}
	if d.cfg, err = demoConfig(dir, d.httpAddr, d.sim.URL()); err != nil {
		return nil, err
	}
	m := app.NewMain(d.cfg, log)
	m.UseListener(lis)
	if o.clock != nil {
		m.UseClock(o.clock)
	}
	if err := m.Open(ctx); err != nil {
		return nil, err // Open closed what it opened
	}
	d.m = m
	return d, nil
}

// startSim starts the simulator, calling back the receiver at d.httpAddr.
// Its first callbacks wait in the receiver's listen backlog until the
// receiver serves.
func (d *demoSystem) startSim(ctx context.Context, o demoOptions, log zerolog.Logger) error {
	sim, err := wecomsim.New(wecomsim.Options{
		Seed: o.seed, Speed: o.speed, MessageRate: o.rate, Clock: o.clock,
		Archive: wecomsim.Archive{
			SuiteID: demoSuite, SuiteSecret: "demo-suite-secret",
			Corps: []wecomsim.Corp{{CorpID: demoCorp, PermanentCode: "demo-permanent-code"}},
			Token: demoToken, EncodingAESKey: demoAESKey,
			CallbackURL: "http://" + d.httpAddr + "/callback/archive",
		},
	}, log)
	if err != nil {
		return err
	}
	if err := sim.SeedDemoRules(); err != nil {
		return err
	}
	if err := sim.Start(ctx, "127.0.0.1:0"); err != nil {
		return err
	}
	d.sim = sim
	d.life.OnClose("simulator", sim.Close)
	return nil
}

// demoConfig is the receiver's configuration for the demo: the archive app
// of the simulator at simURL, an embedded NATS server storing in dir, and
// callbacks on httpAddr.
func demoConfig(dir, httpAddr, simURL string) (*config.Config, error) {
	return config.Parse([]byte(fmt.Sprintf(`
allow_sample_secrets: true
http: {listen: %q}
admin: {listen: "127.0.0.1:0"}
nats: {store_dir: nats, listen: "127.0.0.1:0"}
fetch: {poll_interval: 1m, tokenless_per_minute: 30}
apps:
  - name: archive
    mode: archive
    token: %s
    encoding_aes_key: %s
    api_base_url: %s
    suite_id: %s
    suite_secret: demo-suite-secret
    corps: [{corp_id: %s, permanent_code: demo-permanent-code}]
`, httpAddr, demoToken, demoAESKey, simURL, demoSuite, demoCorp)), dir, func(string) (string, bool) { return "", false })
}

// Close stops the simulator first, so it sends nothing to a stopped
// receiver, then the receiver, and removes the directory, within twenty
// seconds in all.
func (d *demoSystem) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = d.life.Close(ctx)
}

// consoleOrJSON is where a command without a log configuration logs: a
// console layout for people on a terminal (coloured unless NO_COLOR),
// JSON lines for a file or a pipe, which tools read.
func consoleOrJSON(w io.Writer, getenv func(string) string, timeFormat string) io.Writer {
	if !cli.IsTerminal(w) {
		return w
	}
	return zerolog.ConsoleWriter{Out: w, TimeFormat: timeFormat, NoColor: !cli.Colour(w, getenv)}
}
