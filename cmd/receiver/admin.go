package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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

// openAdmin binds the admin listener (when admin.listen is set) and serves
// /metrics, /healthz, /readyz and, with a token configured, /api.
func (m *Main) openAdmin() error {
	if m.cfg.Admin.Listen == "" {
		return nil
	}
	m.admin = m.adminRoutes()
	lis, err := net.Listen("tcp", m.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	m.adminListener = lis
	// Search and backfill-like API calls page through WeCom: a minute to write.
	m.adminServer = newServer("admin", m.admin, m.log, time.Minute, adminIdleTimeout)
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

// adminRoutes builds the admin router. All routes are registered here,
// before the server starts: chi's router must not change while it serves.
func (m *Main) adminRoutes() chi.Router {
	r := chi.NewRouter()
	// A Host that is not one of the listener's names is refused: a
	// browser tricked by DNS rebinding into calling us sends the
	// attacker's domain there. /healthz, which says only "ok", answers
	// any Host, so that probes addressing the listener by IP keep working.
	r.Use(requestID, m.recoverer, allowHosts(m.cfg.Admin.Listen, m.cfg.Admin.AllowedHosts, "/healthz"))
	// /metrics needs no token, as Prometheus scrapes expect; keep the
	// listener on loopback or a private network (configs/receiver.example.yaml).
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry: m.reg, // promhttp's own error counter
	}))
	r.Get("/healthz", m.healthz)
	// Operators may see why the service is not ready.
	r.Get("/readyz", m.readyz(true))
	m.mountAPIRoot(r)
	return r
}

// mountAPIRoot mounts the admin API on r. Everything under /api sits
// behind the bearer token. Without a token configured the API is off: /api
// is not mounted, so it answers 404.
func (m *Main) mountAPIRoot(r chi.Router) {
	if token := m.cfg.Admin.Token.Reveal(); token != "" {
		r.Route("/api", func(api chi.Router) {
			api.Use(bearerAuth(token), m.refuseWhileDraining)
			m.api = api
			m.apiRoutes(api)
		})
	}
}

// apiRoutes registers the admin API's endpoints on r, which is mounted at
// /api behind the bearer token: ping, and the endpoints of admin_api.go.
func (m *Main) apiRoutes(r chi.Router) {
	// GET /api/ping: 200 "pong" with the right token; for checking access.
	r.Get("/ping", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "pong\n")
	})
	m.mountAPI(r)
}

// bearerAuth lets a request through only with "Authorization: Bearer
// <token>". Anything else gets 401 before any handler runs. The comparison
// is over SHA-256 digests in constant time, so neither the token's content
// nor its length leaks through timing.
func bearerAuth(token string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, ok := bearerToken(r)
			sum := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="receiver admin"`)
				writeText(w, http.StatusUnauthorized, "401 unauthorized\n")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// refuseWhileDraining answers 503 once shutdown has begun: the pipeline
// the API works with is stopping, and a call half-done then is worse than
// one refused.
func (m *Main) refuseWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.draining.Load() {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "shutting down"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken reads the token of an "Authorization: Bearer" header; the
// scheme is case-insensitive (RFC 9110 §11.1).
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// healthz: the process answers. Readiness is a separate question.
func (m *Main) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

// readyz reports Ready. The reason for a failure goes to the log, and into
// the body only with detail (the admin listener): on the public port it
// would tell anyone about our internals.
func (m *Main) readyz(detail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := m.Ready(r.Context())
		if err == nil {
			m.notReady.Store(nil)
			writeText(w, http.StatusOK, "ready\n")
			return
		}
		// Logged once per distinct failure, not once per probe.
		if msg := err.Error(); m.notReady.Load() == nil || *m.notReady.Load() != msg {
			m.notReady.Store(&msg)
			m.log.Warn().Err(err).Msg("not ready")
		}
		if detail {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "not ready\n")
	}
}
