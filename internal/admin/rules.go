package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// The per-app endpoints: rules and search, through the app's WeCom client
// for one of its corps.

// target resolves {app} and ?corp= to a client and a corp.
func (a *API) target(r *http.Request) (*wecom.Client, string, error) {
	name := chi.URLParam(r, "app")
	c, ok := a.Apps.Client(name)
	if !ok {
		return nil, "", notFound("no app %q", name)
	}
	corp, err := a.Directory.Resolve(name, r.URL.Query().Get("corp"))
	switch {
	case errors.Is(err, corps.ErrAmbiguous):
		return nil, "", badRequest("app %s has %d corps: give ?corp=", name, len(a.Directory.Corps(name)))
	case err != nil:
		return nil, "", notFound("app %s has no corp %q", name, r.URL.Query().Get("corp"))
	}
	return c, corp, nil
}

// appHandler is an admin API handler for one app and corp: it returns the
// status and body to answer, or an error for writeAPIError.
type appHandler func(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error)

// forApp resolves {app} and ?corp=, bounds the WeCom round trip, and writes
// the handler's answer: the part every per-app endpoint shares.
func (a *API) forApp(h appHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, corp, err := a.target(r)
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

func listRules(ctx context.Context, _ http.ResponseWriter, _ *http.Request, c *wecom.Client, corp string) (int, any, error) {
	rules := []wecom.RuleSummary{}
	for rule, err := range c.ListRules(ctx, corp, 100) {
		if err != nil {
			return 0, nil, err
		}
		rules = append(rules, rule)
	}
	return http.StatusOK, map[string]any{"rules": rules}, nil
}

func getRule(ctx context.Context, _ http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	d, err := c.GetRule(ctx, corp, chi.URLParam(r, "rule_id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, d, nil
}

func (a *API) createRule(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	var rule wecom.Rule
	if err := decodeBody(w, r, &rule); err != nil {
		return 0, nil, err
	}
	id, err := c.CreateRule(ctx, corp, rule)
	if err != nil {
		return 0, nil, err
	}
	a.RuleNames.Set(corp, id, rule.Name)
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

func (a *API) updateRule(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
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
		a.RuleNames.Set(corp, id, b.Name)
	}
	return http.StatusOK, map[string]string{"rule_id": id}, nil
}

func deleteRule(ctx context.Context, _ http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
	if err := c.DeleteRule(ctx, corp, chi.URLParam(r, "rule_id")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func search(ctx context.Context, w http.ResponseWriter, r *http.Request, c *wecom.Client, corp string) (int, any, error) {
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
