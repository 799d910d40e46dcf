// Package admin serves the operators' HTTP listener: /healthz, /readyz
// with the reason for a failure, /metrics, and, behind a bearer token, the
// JSON API under /api (status, rules, search, dead letters, corps). It
// also lends /healthz and /readyz, without the reason, to the callback
// listener (MountProbes).
//
// It leaves the listener itself (binding, the connection cap, timeouts,
// request ids, panic recovery, the Host check) to the service that serves
// the Handler, and every fact it shows to the collaborators it is given
// through the small interfaces below: it reads no configuration, opens no
// connection and keeps no data of its own.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// ErrInvalidOption is returned by New for a missing collaborator or a bad
// option; the error names which.
var ErrInvalidOption = errors.New("admin: invalid option")

// Checker reports whether the service can do its work; /readyz asks it
// on every probe, with the probe's context.
type Checker interface {
	Ready(ctx context.Context) error
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context) error

// Ready calls f.
func (f CheckerFunc) Ready(ctx context.Context) error { return f(ctx) }

var _ Checker = CheckerFunc(nil)

type options struct {
	log   zerolog.Logger
	token string
	api   *API
}

// Option changes a default of New.
type Option func(*options) error

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}

// WithLogger sets the logger of the readiness failures; its fields are
// kept as they are.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithAPI turns the API under /api on, behind token: a request without
// "Authorization: Bearer <token>" gets 401 before any handler runs. Every
// field of api is required. Never put the token in an error or a log line.
func WithAPI(token string, api API) Option {
	return func(o *options) error {
		if token == "" {
			return invalid("WithAPI: empty token")
		}
		if err := api.validate(); err != nil {
			return err
		}
		o.token, o.api = token, &api
		return nil
	}
}

// Handler is the admin listener's router, and the probes it lends to the
// callback listener.
type Handler struct {
	ready  Checker
	log    zerolog.Logger
	router chi.Router
	api    *API // nil: the API is off
	// notReady is the last readiness failure logged, so that a probe
	// every few seconds logs a failure once, and again when it changes.
	notReady atomic.Pointer[string]
}

var _ http.Handler = (*Handler)(nil)

// New returns the admin router: ready answers /readyz, and metrics is the
// registry /metrics serves (its promhttp error counter is registered
// there too). Both are required.
//
// Defaults: WithLogger zerolog.Nop(); the API off (without WithAPI, /api
// is not mounted and answers 404, token or not).
//
// New does no I/O; it fails with ErrInvalidOption. All routes are
// registered here, before anything serves: chi's router must not change
// while it serves.
func New(ready Checker, metrics *prometheus.Registry, opts ...Option) (*Handler, error) {
	if ready == nil {
		return nil, invalid("nil readiness checker")
	}
	if metrics == nil {
		return nil, invalid("nil metrics registry")
	}
	o := options{log: zerolog.Nop()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	h := &Handler{ready: ready, log: o.log, api: o.api}
	r := chi.NewRouter()
	// /metrics needs no token, as Prometheus scrapes expect; keep the
	// listener on loopback or a private network (configs/receiver.example.yaml).
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{
		Registry: metrics, // promhttp's own error counter
	}))
	r.Get("/healthz", h.healthz)
	// Operators may see why the service is not ready.
	r.Get("/readyz", h.readyz(true))
	if h.api != nil {
		r.Route("/api", func(r chi.Router) {
			r.Use(bearerAuth(o.token), h.refuseWhileDraining)
			// GET /api/ping: 200 "pong" with the right token; for checking access.
			r.Get("/ping", func(w http.ResponseWriter, _ *http.Request) {
				writeText(w, http.StatusOK, "pong\n")
			})
			h.api.mount(r)
		})
	}
	h.router = r
	return h, nil
}

// ServeHTTP routes a request of the admin listener.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.router.ServeHTTP(w, r) }

// APIOn reports whether /api is mounted (New had WithAPI).
func (h *Handler) APIOn() bool { return h.api != nil }

// MountProbes puts /healthz and /readyz on another listener's router (the
// callback port's). Its /readyz says only "not ready": the reason would
// tell anyone on that port about our internals. A failure is logged once
// whichever listener saw it.
func (h *Handler) MountProbes(r chi.Router) {
	r.Get("/healthz", h.healthz)
	r.Get("/readyz", h.readyz(false))
}

// healthz: the process answers. Readiness is a separate question.
func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

// readyz reports Ready. The reason for a failure goes to the log, and into
// the body only with detail (the admin listener).
func (h *Handler) readyz(detail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h.ready.Ready(r.Context())
		if err == nil {
			h.notReady.Store(nil)
			writeText(w, http.StatusOK, "ready\n")
			return
		}
		// Logged once per distinct failure, not once per probe.
		if msg := err.Error(); h.notReady.Load() == nil || *h.notReady.Load() != msg {
			h.notReady.Store(&msg)
			h.log.Warn().Err(err).Msg("not ready")
		}
		if detail {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "not ready\n")
	}
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

// refuseWhileDraining answers 503 once shutdown has begun: the pipeline
// the API works with is stopping, and a call half-done then is worse than
// one refused.
func (h *Handler) refuseWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.api.Draining() {
			writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "shutting down"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
