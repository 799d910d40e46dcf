package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/deadletter"
	"github.com/wecomhit/wecomhit/internal/health"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// The admin API: JSON over HTTP on the admin listener, under /api, behind
// the bearer token (see bearerAuth). It does what the rules, search and
// status commands do, for tools that prefer HTTP.
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

// maxAPIBody bounds request bodies; rules and searches are small.
const maxAPIBody = 64 << 10

func (m *Main) mountAPI(r chi.Router) {
	r.Get("/status", m.apiStatus)
	r.Get("/dlq", m.apiListDLQ)
	r.Post("/dlq/replay", m.apiReplayDLQ)
	r.Get("/corps", m.apiListCorps)
	r.Get("/corps/{app}/{corp}", m.apiGetCorp)
	r.Delete("/corps/{app}/{corp}", m.apiRemoveCorp)
	r.Route("/apps/{app}", func(r chi.Router) {
		r.Get("/rules", m.forApp(apiListRules))
		r.Post("/rules", m.forApp(m.apiCreateRule))
		r.Get("/rules/{rule_id}", m.forApp(apiGetRule))
		r.Patch("/rules/{rule_id}", m.forApp(m.apiUpdateRule))
		r.Delete("/rules/{rule_id}", m.forApp(apiDeleteRule))
		r.Post("/search", m.forApp(apiSearch))
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
		req  *apiRequestError
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

// apiRequestError is a problem with the request itself.
type apiRequestError struct {
	status int
	msg    string
}

func (e *apiRequestError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return &apiRequestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

// target resolves {app} and ?corp= to a client and a corp.
func (m *Main) target(r *http.Request) (*wecom.Client, string, error) {
	name := chi.URLParam(r, "app")
	a, ok := m.cfg.App(name)
	if !ok {
		return nil, "", &apiRequestError{status: http.StatusNotFound, msg: fmt.Sprintf("no app %q", name)}
	}
	corp, err := m.corpView.dir.Resolve(name, r.URL.Query().Get("corp"))
	switch {
	case errors.Is(err, corps.ErrAmbiguous):
		return nil, "", badRequest("app %s has %d corps: give ?corp=", name, len(m.corpView.dir.Corps(name)))
	case err != nil:
		return nil, "", &apiRequestError{status: http.StatusNotFound, msg: fmt.Sprintf("app %s has no corp %q", name, r.URL.Query().Get("corp"))}
	}
	return m.clients[a.Name], corp, nil
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

func (m *Main) apiStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := apiCtx(r)
	defer cancel()
	rep, err := readStatus(ctx, m.broker.JetStream(), m.cfg, health.DefaultThresholds(), time.Now(), m.corpView.dir.Corps)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// appHandler is an admin API handler for one app and corp: it returns the
// status and body to answer, or an error for writeAPIError.
type appHandler func(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error)

// forApp resolves {app} and ?corp=, bounds the WeCom round trip, and writes
// the handler's answer: the part every per-app endpoint shares.
func (m *Main) forApp(h appHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, corp, err := m.target(r)
		if err != nil {
			writeAPIError(w, err)
			return
		}
		ctx, cancel := apiCtx(r)
		defer cancel()
		status, body, err := h(ctx, w, r, c, corp)
		switch {
		case err != nil:
			writeAPIError(w, err)
		case body == nil:
			w.WriteHeader(status)
		default:
			writeJSON(w, status, body)
		}
	}
}

func apiListRules(ctx context.Context, _ http.ResponseWriter, _ *http.Request, c *wecom.Client, corp string) (int, any, error) {
	rules := []wecom.RuleSummary{}
	for rule, err := range c.ListRules(ctx, corp, 100) {
		if err != nil {
			return 0, nil, err
		}
		rules = append(rules, rule)
	}
	return http.StatusOK, map[string]any{"rules": rules}, nil
}

func apiGetRule(ctx context.Context, _ http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	d, err := c.GetRule(ctx, corp, chi.URLParam(r, "rule_id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, d, nil
}

func (m *Main) apiCreateRule(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	var rule wecom.Rule
	if err := decodeBody(w, r, &rule); err != nil {
		return 0, nil, err
	}
	id, err := c.CreateRule(ctx, corp, rule)
	if err != nil {
		return 0, nil, err
	}
	m.rules.Set(corp, id, rule.Name)
	return http.StatusCreated, map[string]string{"rule_id": id}, nil
}

// ruleUpdateBody is PATCH's body: flat, every key optional.
type ruleUpdateBody struct {
	Name             string             `json:"name"`
	Words            wecom.List[string] `json:"words"`
	Semantics        wecom.List[int]    `json:"semantics"`
	TargetTypes      wecom.List[int]    `json:"target_types"`
	ChatTypes        wecom.List[int]    `json:"chat_types"`
	Departments      wecom.List[int64]  `json:"departments"`
	Users            wecom.List[string] `json:"users"`
	ExternalContacts wecom.List[string] `json:"external_contacts"`
	Chats            wecom.List[string] `json:"chats"`
	ExcludeMobiles   wecom.List[string] `json:"exclude_mobiles"`
}

func (m *Main) apiUpdateRule(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	var b ruleUpdateBody
	if err := decodeBody(w, r, &b); err != nil {
		return 0, nil, err
	}
	id := chi.URLParam(r, "rule_id")
	err := c.UpdateRule(ctx, corp, wecom.RuleUpdate{
		RuleID: id, Name: b.Name, Words: b.Words, Semantics: b.Semantics,
		TargetTypes: b.TargetTypes, ChatTypes: b.ChatTypes, Departments: b.Departments,
		Users: b.Users, ExternalContacts: b.ExternalContacts, Chats: b.Chats, ExcludeMobiles: b.ExcludeMobiles,
	})
	if err != nil {
		return 0, nil, err
	}
	if b.Name != "" {
		m.rules.Set(corp, id, b.Name)
	}
	return http.StatusOK, map[string]string{"rule_id": id}, nil
}

func apiDeleteRule(ctx context.Context, _ http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	if err := c.DeleteRule(ctx, corp, chi.URLParam(r, "rule_id")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func apiSearch(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	var req wecom.SearchRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	ids := []string{}
	for hit, err := range c.SearchMsg(ctx, corp, req) {
		if err != nil {
			return 0, nil, err
		}
		ids = append(ids, hit.MsgID)
	}
	return http.StatusOK, map[string]any{"msgids": ids, "count": len(ids)}, nil
}

// dlqFilter reads the dead-letter filters of a request's query.
func dlqFilter(r *http.Request) (deadletter.Filter, error) {
	q := r.URL.Query()
	f := deadletter.Filter{App: q.Get("app"), CorpID: q.Get("corp"), Kind: q.Get("kind"), Reason: q.Get("reason")}
	switch f.Kind {
	case "", wecomhit.DeadLetterHit, wecomhit.DeadLetterCallback:
	default:
		return f, badRequest("kind %q: want hit or callback", f.Kind)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return f, badRequest("limit %q: want a positive integer", l)
		}
		f.Limit = n
	}
	return f, nil
}

// apiListDLQ answers the dead letters as `receiver dlq list -o json` prints
// them: without records, which for callbacks hold tokens.
func (m *Main) apiListDLQ(w http.ResponseWriter, r *http.Request) {
	f, err := dlqFilter(r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	ctx, cancel := apiCtx(r)
	defer cancel()
	entries, err := m.dlq.List(ctx, f)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	out := make([]dlqEntry, len(entries))
	for i := range entries {
		out[i] = newDLQEntry(&entries[i])
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": out, "count": len(out)})
}

// dlqReplayBody is POST /api/dlq/replay's body.
type dlqReplayBody struct {
	Seqs   []uint64 `json:"seqs"`
	All    bool     `json:"all"`
	App    string   `json:"app"`
	CorpID string   `json:"corp"`
	Reason string   `json:"reason"`
}

// apiReplayDLQ replays callback dead letters as `receiver dlq replay` does,
// answering one result per dead letter; 200 even when some failed (their
// result says so, and they are kept).
func (m *Main) apiReplayDLQ(w http.ResponseWriter, r *http.Request) {
	var b dlqReplayBody
	if err := decodeBody(w, r, &b); err != nil {
		writeAPIError(w, err)
		return
	}
	switch {
	case b.All == (len(b.Seqs) > 0):
		writeAPIError(w, badRequest(`give "seqs" or "all": true, not both`))
		return
	case len(b.Seqs) > 0 && (b.App != "" || b.CorpID != "" || b.Reason != ""):
		writeAPIError(w, badRequest(`filters go with "all"; "seqs" names the dead letters`))
		return
	case slices.Contains(b.Seqs, 0):
		writeAPIError(w, badRequest("seqs: want positive integers"))
		return
	}
	ctx, cancel := apiCtx(r)
	defer cancel()
	rp := &replayer{intake: m.intake, dlq: m.dlq}
	var (
		results []replayResult
		err     error
	)
	if b.All {
		results, err = rp.replayMatching(ctx, deadletter.Filter{Kind: wecomhit.DeadLetterCallback, App: b.App, CorpID: b.CorpID, Reason: b.Reason})
	} else {
		results, err = rp.replaySeqs(ctx, b.Seqs)
	}
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results, "count": len(results)})
}

// apiListCorps answers the corps as `receiver corps list -o json` prints
// them: never a permanent code.
func (m *Main) apiListCorps(w http.ResponseWriter, r *http.Request) {
	app := r.URL.Query().Get("app")
	if _, ok := m.cfg.App(app); app != "" && !ok {
		writeAPIError(w, &apiRequestError{status: http.StatusNotFound, msg: fmt.Sprintf("no app %q", app)})
		return
	}
	ctx, cancel := apiCtx(r)
	defer cancel()
	entries, err := listCorps(ctx, m.cfg, m.corpView.reg, app)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if entries == nil {
		entries = []corpEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"corps": entries, "count": len(entries)})
}

func (m *Main) apiGetCorp(w http.ResponseWriter, r *http.Request) {
	app, corp := chi.URLParam(r, "app"), chi.URLParam(r, "corp")
	ctx, cancel := apiCtx(r)
	defer cancel()
	entries, err := listCorps(ctx, m.cfg, m.corpView.reg, app)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	for _, e := range entries {
		if e.CorpID == corp {
			writeJSON(w, http.StatusOK, e)
			return
		}
	}
	writeAPIError(w, &apiRequestError{status: http.StatusNotFound, msg: fmt.Sprintf("app %s has no corp %q", app, corp)})
}

// apiRemoveCorp does what `receiver corps remove` does, in the receiver:
// the cancellation deletes the corp's data before the entry is erased.
func (m *Main) apiRemoveCorp(w http.ResponseWriter, r *http.Request) {
	app, corp := chi.URLParam(r, "app"), chi.URLParam(r, "corp")
	if m.auth == nil {
		writeAPIError(w, badRequest("the corp registry is off (no corps.encryption_keys): remove the corp from the configuration"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), removeTimeout)
	defer cancel()
	err := removeCorp(ctx, m.corpView.reg, func(ctx context.Context, app, corp string) error {
		return m.auth.Cancel(ctx, app, corp, time.Time{}, corps.CauseOperator)
	}, app, corp)
	if errors.Is(err, corps.ErrNotFound) {
		writeAPIError(w, &apiRequestError{status: http.StatusNotFound, msg: fmt.Sprintf("app %s has no registry corp %q", app, corp)})
		return
	}
	if err != nil {
		writeAPIError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": app + "/" + corp})
}
