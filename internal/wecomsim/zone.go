package wecomsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

type syncRequest struct {
	ProgramID   string  `json:"program_id"`
	AbilityID   string  `json:"ability_id"`
	NotifyID    string  `json:"notify_id"`
	RequestData *string `json:"request_data"`
}

// syncCallProgram serves POST /cgi-bin/chatdata/sync_call_program: the zone
// program's ability runs the operation it is mapped to, on the zone corp,
// with request_data and response_data as JSON strings.
//
// The program is modelled as a plain proxy of the SDK interface: its output
// is the interface's whole answer, errcode included, so operation errors
// sit inside response_data and the outer errcode is about the call itself.
func (s *Sim) syncCallProgram(w http.ResponseWriter, r *http.Request) {
	const api = "sync_call_program"
	s.mu.Lock()
	s.countLocked(api)
	s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	var req syncRequest
	if json.Unmarshal(body, &req) != nil {
		s.mu.Lock()
		e := s.errLocked(codeDataFormat, "data format error")
		s.mu.Unlock()
		writeJSON(w, e)
		return
	}
	// The ability map is fixed after New, so it is read without the lock.
	op := s.abilityOp[req.AbilityID]
	apis := []string{api}
	if op != "" {
		apis = append(apis, op)
		s.mu.Lock()
		s.countLocked(op)
		s.mu.Unlock()
	}
	if s.requestFaults(w, r, apis...) {
		return
	}
	s.mu.Lock()
	resp := s.syncLocked(r, &req, op, apis)
	s.mu.Unlock()
	writeJSON(w, resp)
}

func (s *Sim) syncLocked(r *http.Request, req *syncRequest, op string, apis []string) any {
	value := r.URL.Query().Get("access_token")
	if t, ok := s.tokens[value]; ok && t.kind == kindArchive {
		return s.errLocked(codeNotAllowed, "api forbidden")
	}
	if _, e := s.checkTokenLocked(value, kindZone, apis...); e != nil {
		return *e
	}
	z := s.opts.Zone
	// WeCom's codes for an unknown program or ability are undocumented;
	// both are answered as 40058 invalid parameter, an assumption.
	switch {
	case req.ProgramID == "" || req.ProgramID != z.ProgramID:
		return s.invalidLocked("program_id")
	case op == "":
		return s.invalidLocked("ability_id")
	case req.RequestData == nil:
		return s.invalidLocked("request_data required")
	}
	data := []byte(*req.RequestData)
	if !json.Valid(data) {
		return s.errLocked(codeAbilityInput, "request_data does not match the ability's input schema")
	}
	if z.WrapIO {
		var wrapped map[string]json.RawMessage
		if json.Unmarshal(data, &wrapped) != nil || len(wrapped) != 1 ||
			!bytes.HasPrefix(bytes.TrimSpace(wrapped["input"]), []byte("{")) {
			return s.errLocked(codeAbilityInput, `request_data must be {"input":{...}} for this ability`)
		}
		data = wrapped["input"]
	}
	cl := &call{corp: s.corps[z.CorpID], zone: true, body: data, apis: apis}
	if n, ok := s.notifies[req.NotifyID]; ok && s.now.Before(n.expires) {
		cl.notifyToken = n.token
	}
	// An unknown or expired notify_id is not an error here: the call just
	// carries no token. WeCom's behaviour is undocumented.
	result := s.runOpLocked(op, cl)
	if bi, ok := result.(badInput); ok {
		return s.errLocked(codeAbilityInput, "request_data does not match the ability's input schema: "+bi.reason)
	}
	out, err := json.Marshal(result)
	if err != nil {
		return s.errLocked(codeBusy, "system busy")
	}
	if z.WrapIO {
		out, _ = json.Marshal(map[string]json.RawMessage{"output": out})
	}
	return struct {
		apiError
		ResponseData string `json:"response_data"`
	}{okBody, string(out)}
}
