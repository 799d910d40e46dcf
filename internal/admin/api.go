package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// The admin API: JSON over HTTP on the admin listener, under /api, behind
// the bearer token (see bearerAuth). It does what the rules, search,
// status, dlq and corps commands do, for tools that prefer HTTP.
//
//	GET    /api/status
//	GET    /api/apps/{app}/rules                 ?corp=
//	POST   /api/apps/{app}/rules                 body: a rule as WeCom's create_rule takes it
//	GET    /api/apps/{app}/rules/{rule_id}
//	PATCH  /api/apps/{app}/rules/{rule_id}       body: {"name", "words", "semantics", "target_types", "chat_types",
//	                                                    "departments", "users", "external_contacts", "chats",
//	                                                    "exclude_mobiles"}: a key left out is unchanged, [] clears
//	DELETE /api/apps/{app}/rules/{rule_id}
//	POST   /api/apps/{app}/search                body: search_msg's request; answers every page's msgids
//	GET    /api/dlq                              ?app= &corp= &kind=hit|callback &reason= &limit=: dead letters, oldest first
//	POST   /api/dlq/replay                       body: {"seqs": [N, ...]} or {"all": true, "app", "corp", "reason"}
//	GET    /api/corps                            ?app=: the corps, as `receiver corps list -o json` prints them
//	GET    /api/corps/{app}/{corp}
//	DELETE /api/corps/{app}/{corp}               cancel a registry corp, delete its data, erase its entry
//
// corp may be left out when the app has one corp.

// StatusReader reads the deployment's state from NATS for GET /api/status.
type StatusReader interface {
	ReadStatus(ctx context.Context) (health.Report, error)
}

// StatusFunc adapts a function to StatusReader.
type StatusFunc func(ctx context.Context) (health.Report, error)

// ReadStatus calls f.
func (f StatusFunc) ReadStatus(ctx context.Context) (health.Report, error) { return f(ctx) }

// Apps gives the WeCom client through which an app's rules and searches
// go; ok is false when there is no such app.
type Apps interface {
	Client(app string) (c *wecom.Client, ok bool)
}

// AppsFunc adapts a function to Apps.
type AppsFunc func(app string) (*wecom.Client, bool)

// Client calls f.
func (f AppsFunc) Client(app string) (*wecom.Client, bool) { return f(app) }

// Directory names the corp a request is about; *corps.Directory is the
// one the service has. Resolve fails with corps.ErrNotFound or
// corps.ErrAmbiguous; Corps lists an app's corps (for the error's count).
type Directory interface {
	Resolve(app, corp string) (string, error)
	Corps(app string) []string
}

// RuleNames learns the name of a rule the API creates or renames, so that
// the hits it matches carry the name at once; *rulecache.Cache is one.
type RuleNames interface {
	Set(corpID, ruleID, name string)
}

// DeadLetters lists and replays dead letters. The values they return are
// written as JSON, as `receiver dlq list -o json` and `receiver dlq replay`
// show them: a dead letter without its record (a callback's holds its
// token), and one result per replayed dead letter.
type DeadLetters interface {
	// List returns the dead letters f selects, oldest first.
	List(ctx context.Context, f deadletter.Filter) ([]any, error)
	// ReplaySeqs replays the dead letters at seqs, one result each.
	ReplaySeqs(ctx context.Context, seqs []uint64) ([]any, error)
	// ReplayMatching replays every dead letter f selects, one result each.
	ReplayMatching(ctx context.Context, f deadletter.Filter) ([]any, error)
}

// Corps shows and removes corps. The values List and Get return are
// written as JSON, as `receiver corps list -o json` prints them: never a
// permanent code.
type Corps interface {
	// List returns app's corps ("" for every app's), sorted by app and corp.
	List(ctx context.Context, app string) ([]any, error)
	// Get returns one of List's values; corps.ErrNotFound when app has no
	// such corp.
	Get(ctx context.Context, app, corp string) (any, error)
	// Remove cancels a registry corp, which deletes its data, then erases
	// its entry. It fails with ErrRegistryOff when there is no registry,
	// and corps.ErrNotFound when the registry has no such corp.
	Remove(ctx context.Context, app, corp string) error
}

// ErrRegistryOff is Corps.Remove's answer when the corp registry is off.
var ErrRegistryOff = errors.New("admin: the corp registry is off")

// API is what the endpoints under /api work with (WithAPI).
type API struct {
	Status      StatusReader
	Apps        Apps
	Directory   Directory
	RuleNames   RuleNames
	DeadLetters DeadLetters
	Corps       Corps
	// Draining reports that shutdown has begun; the API then answers 503.
	Draining func() bool
}

func (a *API) validate() error {
	for _, f := range []struct {
		name string
		nil  bool
	}{
		{"Status", a.Status == nil}, {"Apps", a.Apps == nil}, {"Directory", a.Directory == nil},
		{"RuleNames", a.RuleNames == nil}, {"DeadLetters", a.DeadLetters == nil}, {"Corps", a.Corps == nil},
		{"Draining", a.Draining == nil},
	} {
		if f.nil {
			return invalid("WithAPI: nil %s", f.name)
		}
	}
	return nil
}

// maxAPIBody bounds request bodies; rules and searches are small.
const maxAPIBody = 64 << 10

// removeTimeout bounds DELETE /api/corps, as `receiver corps remove` is
// bounded: the receivers delete the corp's data, which scans its app's
// callback records.
const removeTimeout = 2 * time.Minute

func (a *API) mount(r chi.Router) {
	r.Get("/status", a.status)
	r.Get("/dlq", a.listDLQ)
	r.Post("/dlq/replay", a.replayDLQ)
	r.Get("/corps", a.listCorps)
	r.Get("/corps/{app}/{corp}", a.getCorp)
	r.Delete("/corps/{app}/{corp}", a.removeCorp)
	r.Route("/apps/{app}", func(r chi.Router) {
		r.Get("/rules", a.forApp(listRules))
		r.Post("/rules", a.forApp(a.createRule))
		r.Get("/rules/{rule_id}", a.forApp(getRule))
		r.Patch("/rules/{rule_id}", a.forApp(a.updateRule))
		r.Delete("/rules/{rule_id}", a.forApp(deleteRule))
		r.Post("/search", a.forApp(search))
	})
}

// apiError is every error answer's body.
type apiError struct {
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
	API     string `json:"api,omitempty"`
	Errcode int    `json:"errcode,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeAPIError maps an error to a status: the request's fault (400, 404),
// WeCom's answer (502, with its errcode), or WeCom unreachable (503).
func writeAPIError(w http.ResponseWriter, err error) {
	var (
		verr *wecom.ValidationError
		aerr *wecom.APIError
		req  *requestError
	)
	switch {
	case errors.As(err, &req):
		writeJSON(w, req.status, apiError{Error: req.msg})
	case errors.As(err, &verr):
		writeJSON(w, http.StatusBadRequest, apiError{Error: verr.Error(), Field: verr.Field})
	case errors.As(err, &aerr):
		writeJSON(w, http.StatusBadGateway, apiError{Error: "WeCom refused the call", API: aerr.API, Errcode: aerr.Code})
	default:
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error()})
	}
}

// requestError is a problem with the request itself.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &requestError{status: http.StatusNotFound, msg: fmt.Sprintf(format, a...)}
}

// decodeBody reads a bounded, strict JSON body.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("body: one JSON value expected")
	}
	return nil
}

// apiCtx bounds a WeCom round trip for an API request.
func apiCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 50*time.Second)
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := apiCtx(r)
	defer cancel()
	rep, err := a.Status.ReadStatus(ctx)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
