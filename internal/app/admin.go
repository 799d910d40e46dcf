package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wecomhit/wecomhit/internal/admin"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// The admin listener: internal/admin has its handlers; Main gives them
// what they read and serves them.

// newRegistry is the service's own Prometheus registry, with the Go runtime
// and process collectors. Not the global one: tests run several Mains in
// one process.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Registry is the registry /metrics serves, for tests.
func (m *Main) Registry() *prometheus.Registry { return m.reg }

// newAdmin builds the admin handlers, with the API when admin.token is
// set. Built even when admin.listen is off: the callback listener serves
// its /healthz and /readyz.
func (m *Main) newAdmin() (err error) {
	opts := []admin.Option{admin.WithLogger(m.log)}
	if token := m.cfg.Admin.Token.Reveal(); token != "" {
		opts = append(opts, admin.WithAPI(token, admin.API{
			Status:      admin.StatusFunc(m.readStatus),
			Apps:        admin.AppsFunc(func(app string) (*wecom.Client, bool) { c, ok := m.clients[app]; return c, ok }),
			Directory:   m.corpView.Dir,
			RuleNames:   m.rules,
			DeadLetters: adminDeadLetters{m},
			Corps:       adminCorps{m},
			Draining:    m.draining.Load,
		}))
	}
	m.adminHandler, err = admin.New(m, m.reg, opts...)
	return err
}

// openAdmin binds the admin listener (when admin.listen is set) and serves
// the admin handlers there.
func (m *Main) openAdmin() error {
	if m.cfg.Admin.Listen == "" {
		return nil
	}
	// A Host that is not one of the listener's names is refused: a
	// browser tricked by DNS rebinding into calling us sends the
	// attacker's domain there. /healthz, which says only "ok", answers
	// any Host, so that probes addressing the listener by IP keep working.
	h := requestID(m.recoverer(allowHosts(m.cfg.Admin.Listen, m.cfg.Admin.AllowedHosts, "/healthz")(m.adminHandler)))
	lis, err := net.Listen("tcp", m.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	m.adminListener = lis
	// Search and backfill-like API calls page through WeCom: a minute to write.
	m.adminServer = newServer("admin", h, m.log, time.Minute, adminIdleTimeout)
	limited := newLimitListener(lis, m.cfg.Admin.MaxConnections, m.log.With().Str("listener", "admin").Logger())
	m.adminServed = make(chan struct{})
	go func() {
		defer close(m.adminServed)
		if err := m.adminServer.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error().Err(err).Msg("admin server stopped")
		}
	}()
	return nil
}

// AdminAddr is the address the admin listener listens on; "" when it is off.
func (m *Main) AdminAddr() string {
	if m.adminListener == nil {
		return ""
	}
	return m.adminListener.Addr().String()
}

// readStatus is GET /api/status's report.
func (m *Main) readStatus(ctx context.Context) (health.Report, error) {
	return ReadStatus(ctx, m.broker.JetStream(), m.cfg, health.DefaultThresholds(), time.Now(), m.corpView.Dir.Corps)
}

// adminDeadLetters lists and replays dead letters for the API as the dlq
// command does.
type adminDeadLetters struct{ m *Main }

func (d adminDeadLetters) List(ctx context.Context, f deadletter.Filter) ([]any, error) {
	entries, err := d.m.dlq.List(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(entries))
	for i := range entries {
		out[i] = NewDLQEntry(&entries[i])
	}
	return out, nil
}

func (d adminDeadLetters) ReplaySeqs(ctx context.Context, seqs []uint64) ([]any, error) {
	return anys(NewReplayer(d.m.intake, d.m.dlq).ReplaySeqs(ctx, seqs))
}

func (d adminDeadLetters) ReplayMatching(ctx context.Context, f deadletter.Filter) ([]any, error) {
	return anys(NewReplayer(d.m.intake, d.m.dlq).ReplayMatching(ctx, f))
}

// adminCorps shows and removes corps for the API as the corps command does.
type adminCorps struct{ m *Main }

func (c adminCorps) List(ctx context.Context, appName string) ([]any, error) {
	return anys(ListCorps(ctx, c.m.cfg, c.m.corpView.Reg, appName))
}

func (c adminCorps) Get(ctx context.Context, appName, corp string) (any, error) {
	return GetCorp(ctx, c.m.cfg, c.m.corpView.Reg, appName, corp)
}

func (c adminCorps) Remove(ctx context.Context, appName, corp string) error {
	if c.m.auth == nil {
		return admin.ErrRegistryOff
	}
	return RemoveCorp(ctx, c.m.corpView.Reg, func(ctx context.Context, a, corp string) error {
		return c.m.auth.Cancel(ctx, a, corp, time.Time{}, corps.CauseOperator)
	}, appName, corp)
}

// anys is what admin's interfaces take: a list of JSON values.
func anys[T any](s []T, err error) ([]any, error) {
	if err != nil {
		return nil, err
	}
	out := make([]any, len(s))
	for i := range s {
		out[i] = s[i]
	}
	return out, nil
}

var (
	_ admin.DeadLetters = adminDeadLetters{}
	_ admin.Corps       = adminCorps{}
)
