package main

// The demo's system: a simulator calling back a receiver with an embedded
// NATS server in a temporary directory.

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/app"
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
