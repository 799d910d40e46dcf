package wecomsim

import (
	"encoding/json"
	"net/http"
	"time"
)

// Token kinds.
const (
	kindArchive = "archive" // corp token from get_corp_token
	kindZone    = "zone"    // app token from gettoken
	kindSuite   = "suite"   // suite_access_token
)

type accessToken struct {
	value   string
	kind    string
	corpID  string
	expires time.Time
}

type suiteTicket struct {
	value  string
	issued time.Time
}

// ticketTTL is a suite_ticket's lifetime; ticketEvery its push period.
const (
	ticketTTL   = 30 * time.Minute
	ticketEvery = 10 * time.Minute
)

func (s *Sim) randToken(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[s.ids.IntN(len(alphabet))]
	}
	return string(b)
}

// issueLocked returns the credential's current token while it is valid —
// WeCom answers repeated gettoken calls with the same token (doc 91039) —
// or a fresh one, with the seconds it has left.
func (s *Sim) issueLocked(key, kind, corpID string) (string, int64) {
	if t, ok := s.current[key]; ok && s.now.Before(t.expires) {
		return t.value, int64(t.expires.Sub(s.now) / time.Second)
	}
	t := &accessToken{value: s.randToken(64), kind: kind, corpID: corpID, expires: s.now.Add(s.opts.AccessTokenTTL)}
	s.tokens[t.value] = t
	s.current[key] = t
	return t.value, int64(s.opts.AccessTokenTTL / time.Second)
}

// checkTokenLocked validates a token of kind for api: 41001 missing,
// 40014 unknown or of another kind, 42001 expired (42009/40082 for suite
// tokens). An expire_access_token fault expires it first.
func (s *Sim) checkTokenLocked(value, kind string, apis ...string) (*accessToken, *apiError) {
	missing, invalid, expired := codeMissingToken, codeInvalidToken, codeTokenExpired
	if kind == kindSuite {
		missing, invalid, expired = codeMissingSuiteToken, codeInvalidSuiteToken, codeSuiteTokenExpired
	}
	if value == "" {
		e := s.errLocked(missing, "access_token missing")
		return nil, &e
	}
	t, ok := s.tokens[value]
	if !ok || t.kind != kind {
		e := s.errLocked(invalid, "invalid access_token")
		return nil, &e
	}
	if s.fireLocked(FaultExpireAccessToken, apis...) != nil && s.now.Before(t.expires) {
		t.expires = s.now
	}
	if !s.now.Before(t.expires) {
		e := s.errLocked(expired, "access_token expired")
		return nil, &e
	}
	return t, nil
}

// GET /cgi-bin/gettoken?corpid&corpsecret, for the zone app.
func (s *Sim) getToken(r *http.Request, _ []byte) any {
	q := r.URL.Query()
	corp, secret := q.Get("corpid"), q.Get("corpsecret")
	switch {
	case corp == "":
		return s.errLocked(codeMissingCorpID, "corpid missing")
	case secret == "":
		return s.errLocked(codeMissingSecret, "corpsecret missing")
	case corp != s.opts.Zone.CorpID:
		return s.errLocked(codeInvalidCorpID, "invalid corpid")
	case secret != s.opts.Zone.CorpSecret:
		return s.errLocked(codeInvalidSecret, "invalid credential")
	}
	tok, exp := s.issueLocked("gettoken|"+corp, kindZone, corp)
	return struct {
		apiError
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}{okBody, tok, exp}
}

// POST /cgi-bin/service/get_suite_token. Success omits errcode, as WeCom does.
func (s *Sim) getSuiteToken(_ *http.Request, body []byte) any {
	var req struct {
		SuiteID     string `json:"suite_id"`
		SuiteSecret string `json:"suite_secret"`
		SuiteTicket string `json:"suite_ticket"`
	}
	if json.Unmarshal(body, &req) != nil {
		return s.errLocked(codeDataFormat, "data format error")
	}
	a := s.opts.Archive
	switch {
	case a.SuiteID == "" || req.SuiteID != a.SuiteID:
		return s.errLocked(codeInvalidSuiteID, "invalid suite_id")
	case req.SuiteSecret != a.SuiteSecret:
		return s.errLocked(codeInvalidSecret, "invalid credential")
	case !s.ticketValidLocked(req.SuiteTicket):
		return s.errLocked(codeInvalidTicket, "invalid suite_ticket")
	}
	tok, exp := s.issueLocked("suite|"+a.SuiteID, kindSuite, "")
	return struct {
		SuiteAccessToken string `json:"suite_access_token"`
		ExpiresIn        int64  `json:"expires_in"`
	}{tok, exp}
}

// ticketValidLocked accepts the newest and the previous ticket within
// their 30 minutes.
func (s *Sim) ticketValidLocked(v string) bool {
	for _, t := range s.tickets {
		if v != "" && v == t.value && s.now.Before(t.issued.Add(ticketTTL)) {
			return true
		}
	}
	return false
}

// POST /cgi-bin/service/get_corp_token?suite_access_token=. Success omits
// errcode.
func (s *Sim) getCorpToken(r *http.Request, body []byte) any {
	if _, e := s.checkTokenLocked(r.URL.Query().Get("suite_access_token"), kindSuite, "get_corp_token"); e != nil {
		return *e
	}
	var req struct {
		AuthCorpID    string `json:"auth_corpid"`
		PermanentCode string `json:"permanent_code"`
	}
	if json.Unmarshal(body, &req) != nil {
		return s.errLocked(codeDataFormat, "data format error")
	}
	// A corp that never authorized is unknown; one that cancelled, or
	// has not exchanged its auth code yet, has no valid permanent code
	// (40084 for both is a guess: WeCom documents neither case).
	code, authorized := s.permanentCodeLocked(req.AuthCorpID)
	_, known := s.auth.installs[req.AuthCorpID]
	switch {
	case !known:
		return s.errLocked(codeInvalidCorpID, "invalid corpid")
	case !authorized || req.PermanentCode == "" || req.PermanentCode != code:
		return s.errLocked(codeInvalidPermCode, "invalid permanent_code")
	}
	tok, exp := s.issueLocked("corp|"+req.AuthCorpID, kindArchive, req.AuthCorpID)
	return struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}{tok, exp}
}

// SuiteTicket returns the newest suite_ticket, as last pushed (or about to
// be pushed when the clock first runs); empty without an archive suite.
func (s *Sim) SuiteTicket() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tickets) == 0 {
		return ""
	}
	return s.tickets[len(s.tickets)-1].value
}

func (s *Sim) rotateTicketLocked() {
	s.tickets = append(s.tickets, suiteTicket{value: s.randToken(64), issued: s.now})
	if len(s.tickets) > 2 {
		s.tickets = s.tickets[len(s.tickets)-2:]
	}
}

// ticketEventLocked pushes the first ticket, then rotates and pushes one
// every 10 minutes.
func (s *Sim) ticketEventLocked() {
	if s.pushed {
		s.rotateTicketLocked()
	}
	s.pushed = true
	s.ticketAt = s.ticketAt.Add(ticketEvery)
	s.sendSuiteTicketLocked(s.tickets[len(s.tickets)-1].value)
}
