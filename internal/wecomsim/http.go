package wecomsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// WeCom errcodes the simulator answers (protocol §7).
const (
	codeOK                = 0
	codeBusy              = -1
	codeInvalidSecret     = 40001
	codeInvalidCorpID     = 40013
	codeInvalidToken      = 40014
	codeInvalidSuiteToken = 40082
	codeInvalidSuiteID    = 40083
	codeInvalidPermCode   = 40084
	codeInvalidTicket     = 40085
	codeMissingToken      = 41001
	codeMissingCorpID     = 41002
	codeMissingSecret     = 41004
	codeMissingSuiteToken = 41022
	codeTokenExpired      = 42001
	codeSuiteTokenExpired = 42009
	codeFrequency         = 45009
	codeDataFormat        = 47001 // body is not the JSON the API expects
	codeNotAllowed        = 48002
	codeAbilityInput      = 790016
	// codeInvalidParam answers every violated chat-data limit. WeCom's
	// chat-data specific codes are undocumented (protocol §7): this is
	// WeCom's generic "invalid parameter" code, an assumption.
	codeInvalidParam = 40058
)

const maxBody = 1 << 20

// apiError is WeCom's error body; with codeOK it is the "ok" part of a
// success body.
type apiError struct {
	Errcode int    `json:"errcode"`
	Errmsg  string `json:"errmsg"`
}

var okBody = apiError{Errcode: codeOK, Errmsg: "ok"}

// errLocked builds an error body. Like WeCom it appends a hint and the
// errcode lookup URL, so clients that parse errmsg break here as they
// would against WeCom.
func (s *Sim) errLocked(code int, msg string) apiError {
	return apiError{Errcode: code, Errmsg: fmt.Sprintf(
		"%s, hint: [%d_%08x], more info at https://open.work.weixin.qq.com/devtool/query?e=%d",
		msg, s.now.Unix(), s.ids.Uint32(), code)}
}

// handlerFunc runs an API under s.mu and returns the JSON body to send.
type handlerFunc func(r *http.Request, body []byte) any

func (s *Sim) routes() http.Handler {
	r := chi.NewRouter()
	r.Get("/cgi-bin/gettoken", s.api("gettoken", s.getToken))
	r.Post("/cgi-bin/service/get_suite_token", s.api("get_suite_token", s.getSuiteToken))
	r.Post("/cgi-bin/service/get_corp_token", s.api("get_corp_token", s.getCorpToken))
	for _, op := range operations {
		path := "/cgi-bin/chatdata/keyword/" + op
		if op == "search_msg" {
			path = "/cgi-bin/chatdata/search_msg"
		}
		r.Post(path, s.api(op, s.archiveOp(op)))
	}
	r.Post("/cgi-bin/chatdata/sync_call_program", s.syncCallProgram)
	s.installRoutes(r)
	r.Get("/_sim/hits", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Hits()) })
	r.Get("/_sim/faults", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Faults()) })
	r.Post("/_sim/faults", s.postFaults)
	r.Get("/_sim/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Stats()) })
	r.Get("/_sim/answers", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Answers()) })
	r.Post("/_sim/traffic", s.postTraffic)
	r.Post("/_sim/corps/{corp}/messages", s.postMessage)
	r.Post("/_sim/corps/{corp}/rules", s.postRule)
	return r
}

// api wraps an API: count it, read the body, apply request faults, then run
// h under the lock.
func (s *Sim) api(name string, h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.countLocked(name)
		s.mu.Unlock()
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		if s.requestFaults(w, r, name) {
			return
		}
		s.mu.Lock()
		s.countCorpLocked(r, body)
		resp := h(r, body)
		s.mu.Unlock()
		writeJSON(w, resp)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Sim) postFaults(w http.ResponseWriter, r *http.Request) {
	var fs []Fault
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&fs); err != nil {
		http.Error(w, "body must be a JSON array of faults: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := s.SetFaults(fs...); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, s.Faults())
}

// countCorpLocked counts a request for the corp it concerns: the corp of
// its access token, or the auth_corpid of a get_corp_token or
// get_auth_info body.
func (s *Sim) countCorpLocked(r *http.Request, body []byte) {
	if t, ok := s.tokens[r.URL.Query().Get("access_token")]; ok && t.corpID != "" {
		s.corpRequests[t.corpID]++
		return
	}
	if !bytes.Contains(body, []byte(`"auth_corpid"`)) {
		return
	}
	var b struct {
		AuthCorpID string `json:"auth_corpid"`
	}
	if json.Unmarshal(body, &b) == nil && b.AuthCorpID != "" {
		s.corpRequests[b.AuthCorpID]++
	}
}

// Stats is what GET /_sim/stats shows.
type Stats struct {
	Now      int64          `json:"now"`
	Requests map[string]int `json:"requests"`
	// CorpRequests counts the API requests about each corp (with its
	// access token, or naming it as auth_corpid), to tell whether anyone
	// still calls for a corp.
	CorpRequests map[string]int            `json:"corp_requests"`
	Callbacks    map[string]CallbackCounts `json:"callbacks"`
	Hits         int                       `json:"hits"`
}

// Stats returns request and callback counts, keyed by API and callback kind.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Now: s.now.Unix(), Requests: map[string]int{}, Callbacks: map[string]CallbackCounts{}, Hits: len(s.hits),
		CorpRequests: maps.Clone(s.corpRequests)}
	for k, v := range s.requests {
		st.Requests[k] = v
	}
	for k, v := range s.cbStats {
		st.Callbacks[k] = v
	}
	return st
}

// Hits returns the ground truth: every (corp, msgid, rule) hit so far, in
// hit order, including hits older than get_hit_msg_list's window.
func (s *Sim) Hits() []Hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Hit, len(s.hits))
	copy(out, s.hits)
	return out
}
