package admin

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/deadletter"
)

// The endpoints over what the receivers keep in NATS: dead letters and
// corps.

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

// listDLQ answers the dead letters as `receiver dlq list -o json` prints
// them: without records, which for callbacks hold tokens.
func (a *API) listDLQ(w http.ResponseWriter, r *http.Request) {
	f, err := dlqFilter(r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	ctx, cancel := apiCtx(r)
	defer cancel()
	out, err := a.DeadLetters.List(ctx, f)
	writeList(w, "dead_letters", out, err)
}

// dlqReplayBody is POST /api/dlq/replay's body.
type dlqReplayBody struct {
	Seqs   []uint64 `json:"seqs"`
	All    bool     `json:"all"`
	App    string   `json:"app"`
	CorpID string   `json:"corp"`
	Reason string   `json:"reason"`
}

func (b *dlqReplayBody) check() error {
	switch {
	case b.All == (len(b.Seqs) > 0):
		return badRequest(`give "seqs" or "all": true, not both`)
	case len(b.Seqs) > 0 && (b.App != "" || b.CorpID != "" || b.Reason != ""):
		return badRequest(`filters go with "all"; "seqs" names the dead letters`)
	case slices.Contains(b.Seqs, 0):
		return badRequest("seqs: want positive integers")
	}
	return nil
}

// replayDLQ replays callback dead letters as `receiver dlq replay` does,
// answering one result per dead letter; 200 even when some failed (their
// result says so, and they are kept).
func (a *API) replayDLQ(w http.ResponseWriter, r *http.Request) {
	var b dlqReplayBody
	if err := decodeBody(w, r, &b); err != nil {
		writeAPIError(w, err)
		return
	}
	if err := b.check(); err != nil {
		writeAPIError(w, err)
		return
	}
	ctx, cancel := apiCtx(r)
	defer cancel()
	var (
		results []any
		err     error
	)
	if b.All {
		results, err = a.DeadLetters.ReplayMatching(ctx, deadletter.Filter{Kind: wecomhit.DeadLetterCallback, App: b.App, CorpID: b.CorpID, Reason: b.Reason})
	} else {
		results, err = a.DeadLetters.ReplaySeqs(ctx, b.Seqs)
	}
	writeList(w, "results", results, err)
}

// listCorps answers the corps as `receiver corps list -o json` prints
// them: never a permanent code.
func (a *API) listCorps(w http.ResponseWriter, r *http.Request) {
	app := r.URL.Query().Get("app")
	if _, ok := a.Apps.Client(app); app != "" && !ok {
		writeAPIError(w, notFound("no app %q", app))
		return
	}
	ctx, cancel := apiCtx(r)
	defer cancel()
	entries, err := a.Corps.List(ctx, app)
	writeList(w, "corps", entries, err)
}

func (a *API) getCorp(w http.ResponseWriter, r *http.Request) {
	app, corp := chi.URLParam(r, "app"), chi.URLParam(r, "corp")
	ctx, cancel := apiCtx(r)
	defer cancel()
	e, err := a.Corps.Get(ctx, app, corp)
	switch {
	case errors.Is(err, corps.ErrNotFound):
		writeAPIError(w, notFound("app %s has no corp %q", app, corp))
	case err != nil:
		writeAPIError(w, err)
	default:
		writeJSON(w, http.StatusOK, e)
	}
}

// removeCorp does what `receiver corps remove` does, in the receiver:
// the cancellation deletes the corp's data before the entry is erased.
func (a *API) removeCorp(w http.ResponseWriter, r *http.Request) {
	app, corp := chi.URLParam(r, "app"), chi.URLParam(r, "corp")
	ctx, cancel := context.WithTimeout(r.Context(), removeTimeout)
	defer cancel()
	err := a.Corps.Remove(ctx, app, corp)
	switch {
	case errors.Is(err, ErrRegistryOff):
		writeAPIError(w, badRequest("the corp registry is off (no corps.encryption_keys): remove the corp from the configuration"))
	case errors.Is(err, corps.ErrNotFound):
		writeAPIError(w, notFound("app %s has no registry corp %q", app, corp))
	case err != nil:
		writeAPIError(w, err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"removed": app + "/" + corp})
	}
}

// writeList answers {key: list, "count": its length}, or err. A nil list
// is written [], not null.
func writeList(w http.ResponseWriter, key string, list []any, err error) {
	if err != nil {
		writeAPIError(w, err)
		return
	}
	if list == nil {
		list = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{key: list, "count": len(list)})
}
