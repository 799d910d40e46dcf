package wecomsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/go-chi/chi/v5"
)

// Installation: corps authorize the archive suite, cancel it, and have
// their permanent code reset, at any time (protocol notes, authorization
// events). The simulator sends create_auth, cancel_auth and
// reset_permanent_code to the suite's callback URL, and answers
// get_permanent_code (v1 and v2) and get_auth_info. A corp listed in
// Options.Archive.Corps starts authorized with its configured permanent
// code, as if it had installed the suite before.

// Callback kinds of installation, as counted in Stats and matched by
// callback faults.
const (
	CallbackCreateAuth         = "create_auth"
	CallbackCancelAuth         = "cancel_auth"
	CallbackResetPermanentCode = "reset_permanent_code"
)

// Errors of the installation calls.
var (
	// ErrCorpAuthorized: AuthorizeCorp for a corp that is authorized now.
	ErrCorpAuthorized = errors.New("wecomsim: corp already authorized")
	// ErrCorpNotAuthorized: CancelCorp or ResetPermanentCode for a corp
	// that is not authorized.
	ErrCorpNotAuthorized = errors.New("wecomsim: corp not authorized")
)

// authCodeTTL is an auth code's lifetime (protocol notes: 10 minutes).
const authCodeTTL = 10 * time.Minute

// codeInvalidAuthCode answers an auth code that is unknown, used or
// expired. WeCom's doc for get_permanent_code names no code for it;
// 40029 ("invalid code") is what integrators report for a reused code, an
// assumption here.
const codeInvalidAuthCode = 40029

// installation is a corp's authorization of the archive suite.
type installation struct {
	name string
	// permanentCode is the code get_corp_token accepts; "" until the
	// first exchange and after cancel.
	permanentCode string
	authorized    bool
}

// authCode is a single-use code handed out in create_auth or
// reset_permanent_code.
type authCode struct {
	corpID  string
	expires time.Time
	used    bool
}

// authState is the simulator's installation bookkeeping, under s.mu.
type authState struct {
	installs map[string]*installation
	codes    map[string]*authCode
	seq      int
}

func (a *authState) init() {
	if a.installs == nil {
		a.installs = make(map[string]*installation)
		a.codes = make(map[string]*authCode)
	}
}

// installSeededLocked records a corp of Options.Archive.Corps as
// authorized with its configured code.
func (s *Sim) installSeededLocked(c Corp) {
	s.auth.init()
	name := c.CorpName
	if name == "" {
		name = "Simulated corp " + c.CorpID
	}
	s.auth.installs[c.CorpID] = &installation{name: name, permanentCode: c.PermanentCode, authorized: true}
}

// permanentCodeLocked is the permanent code get_corp_token accepts for
// corpID, and whether the corp is authorized at all.
func (s *Sim) permanentCodeLocked(corpID string) (string, bool) {
	in, ok := s.auth.installs[corpID]
	if !ok || !in.authorized {
		return "", false
	}
	return in.permanentCode, true
}

// GenerateCorps returns n corps with ids wwSimCorp00000… and permanent
// codes perm-00000…, for starting a simulator with thousands of corps.
func GenerateCorps(n int) []Corp {
	out := make([]Corp, n)
	for i := range out {
		out[i] = Corp{CorpID: fmt.Sprintf("wwSimCorp%05d", i), PermanentCode: fmt.Sprintf("perm-%05d", i)}
	}
	return out
}

// Install describes a corp to authorize with AuthorizeCorp.
type Install struct {
	// CorpID of the new corp; empty picks wwInstCorpNNNN.
	CorpID string `json:"corp_id,omitempty"`
	// CorpName; empty derives one from the id.
	CorpName string `json:"corp_name,omitempty"`
	// DemoRules gives the corp DemoRules, so its traffic hits.
	DemoRules bool `json:"demo_rules,omitempty"`
	// MessageRate overrides Options.MessageRate for this corp (messages
	// per conversation minute); 0 keeps it.
	MessageRate float64 `json:"message_rate,omitempty"`
}

// Installed is what AuthorizeCorp and ResetPermanentCode return.
type Installed struct {
	CorpID   string `json:"corp_id"`
	CorpName string `json:"corp_name,omitempty"`
	// AuthCode is the single-use code the callback carried.
	AuthCode string `json:"auth_code"`
}

// AuthorizeCorp models a corp installing the archive suite: the corp
// exists from now on, with its own population and background traffic,
// and create_auth with a fresh single-use auth code goes to the suite's
// callback URL. get_corp_token for the corp works only with the permanent
// code that exchanging the code returns. A corp that cancelled before may
// authorize again; one that is authorized fails with ErrCorpAuthorized.
func (s *Sim) AuthorizeCorp(in Install) (Installed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Archive.SuiteID == "" {
		return Installed{}, fmt.Errorf("%w: no archive suite", ErrInvalidOption)
	}
	if in.MessageRate < 0 {
		return Installed{}, fmt.Errorf("%w: message rate %v", ErrInvalidOption, in.MessageRate)
	}
	s.auth.init()
	if in.CorpID == "" {
		for {
			s.auth.seq++
			in.CorpID = fmt.Sprintf("wwInstCorp%04d", s.auth.seq)
			if _, taken := s.auth.installs[in.CorpID]; !taken && s.corps[in.CorpID] == nil {
				break
			}
		}
	}
	if len(in.CorpID) > 64 {
		return Installed{}, fmt.Errorf("%w: corp id longer than 64 bytes", ErrInvalidOption)
	}
	if cur, ok := s.auth.installs[in.CorpID]; ok && cur.authorized {
		return Installed{}, fmt.Errorf("authorize %q: %w", in.CorpID, ErrCorpAuthorized)
	}
	if s.corps[in.CorpID] != nil && s.corps[in.CorpID].zone {
		return Installed{}, fmt.Errorf("%w: %q is the zone corp", ErrInvalidOption, in.CorpID)
	}
	if in.CorpName == "" {
		in.CorpName = "Simulated corp " + in.CorpID
	}
	s.auth.installs[in.CorpID] = &installation{name: in.CorpName, authorized: true}
	c := s.addCorp(in.CorpID)
	c.archive, c.rate = true, in.MessageRate
	if !s.inOrderLocked(c) {
		// Back after a cancel: traffic resumes from now.
		s.order = append(s.order, c)
	}
	c.nextMsgAt = s.now.Add(s.gapLocked(c))
	s.scheduleMessageLocked(c)
	if in.DemoRules {
		for _, r := range DemoRules() {
			if _, err := s.addRuleLocked(c, r.Name, r.Words, r.Semantics); err != nil {
				return Installed{}, err
			}
		}
	}
	code := s.newAuthCodeLocked(in.CorpID)
	a := s.opts.Archive
	plain := fmt.Sprintf("<xml><SuiteId>%s</SuiteId><AuthCode>%s</AuthCode><InfoType>%s</InfoType><TimeStamp>%d</TimeStamp><State>%s</State><ExtraInfo>%s</ExtraInfo></xml>",
		cdata(a.SuiteID), cdata(code), cdata(CallbackCreateAuth), s.now.Unix(), cdata(""), cdata(""))
	s.sendLocked(CallbackCreateAuth, s.archiveCrypt, a.CallbackURL, a.SuiteID, plain, true)
	return Installed{CorpID: in.CorpID, CorpName: in.CorpName, AuthCode: code}, nil
}

// CancelCorp models a corp removing the suite: its traffic stops, its
// permanent code and access tokens stop working, pending auth codes die,
// and cancel_auth goes to the suite's callback URL. Hits recorded so far
// stay in the ground truth.
func (s *Sim) CancelCorp(corpID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth.init()
	in, ok := s.auth.installs[corpID]
	if !ok || !in.authorized {
		return fmt.Errorf("cancel %q: %w", corpID, ErrCorpNotAuthorized)
	}
	in.authorized, in.permanentCode = false, ""
	for v, ac := range s.auth.codes {
		if ac.corpID == corpID {
			delete(s.auth.codes, v)
		}
	}
	// Its tokens go at once: a provider that keeps calling gets 40014.
	for v, t := range s.tokens {
		if t.kind == kindArchive && t.corpID == corpID {
			delete(s.tokens, v)
		}
	}
	delete(s.current, "corp|"+corpID)
	if c := s.corps[corpID]; c != nil {
		c.archive, c.notifyPending = false, false
		s.order = removeCorp(s.order, c)
	}
	a := s.opts.Archive
	plain := fmt.Sprintf("<xml><SuiteId>%s</SuiteId><InfoType>%s</InfoType><TimeStamp>%d</TimeStamp><AuthCorpId>%s</AuthCorpId></xml>",
		cdata(a.SuiteID), cdata(CallbackCancelAuth), s.now.Unix(), cdata(corpID))
	s.sendLocked(CallbackCancelAuth, s.archiveCrypt, a.CallbackURL, a.SuiteID, plain, true)
	return nil
}

// ResetPermanentCode models WeCom resetting an authorized corp's permanent
// code: reset_permanent_code with a fresh auth code goes to the callback
// URL; exchanging it returns a new permanent code, and from that exchange
// on the old one fails in get_corp_token (40084). Access tokens already
// issued keep working until they expire (UNCONFIRMED for WeCom).
func (s *Sim) ResetPermanentCode(corpID string) (Installed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth.init()
	in, ok := s.auth.installs[corpID]
	if !ok || !in.authorized {
		return Installed{}, fmt.Errorf("reset %q: %w", corpID, ErrCorpNotAuthorized)
	}
	code := s.newAuthCodeLocked(corpID)
	a := s.opts.Archive
	plain := fmt.Sprintf("<xml><SuiteId>%s</SuiteId><AuthCode>%s</AuthCode><InfoType>%s</InfoType><TimeStamp>%d</TimeStamp><AuthCorpId>%s</AuthCorpId></xml>",
		cdata(a.SuiteID), cdata(code), cdata(CallbackResetPermanentCode), s.now.Unix(), cdata(corpID))
	s.sendLocked(CallbackResetPermanentCode, s.archiveCrypt, a.CallbackURL, a.SuiteID, plain, true)
	return Installed{CorpID: corpID, CorpName: in.name, AuthCode: code}, nil
}

// CorpInfo is a corp as GET /_sim/corps lists it.
type CorpInfo struct {
	CorpID     string `json:"corp_id"`
	CorpName   string `json:"corp_name"`
	Authorized bool   `json:"authorized"`
	// Exchanged: a permanent code exists (seeded, or an auth code was
	// exchanged).
	Exchanged bool `json:"exchanged"`
}

// Corps lists the archive suite's corps, authorized or cancelled, by id.
func (s *Sim) Corps() []CorpInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CorpInfo, 0, len(s.auth.installs))
	for id, in := range s.auth.installs {
		out = append(out, CorpInfo{CorpID: id, CorpName: in.name, Authorized: in.authorized, Exchanged: in.permanentCode != ""})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CorpID < out[j].CorpID })
	return out
}

func (s *Sim) newAuthCodeLocked(corpID string) string {
	v := "ac-" + s.randToken(60)
	s.auth.codes[v] = &authCode{corpID: corpID, expires: s.now.Add(authCodeTTL)}
	return v
}

func (s *Sim) inOrderLocked(c *corpState) bool {
	for _, o := range s.order {
		if o == c {
			return true
		}
	}
	return false
}

func removeCorp(order []*corpState, c *corpState) []*corpState {
	for i, o := range order {
		if o == c {
			return append(order[:i:i], order[i+1:]...)
		}
	}
	return order
}

// gapLocked draws the next message gap of c: its own rate if it has one,
// else Options.MessageRate.
func (s *Sim) gapLocked(c *corpState) time.Duration {
	if c.rate > 0 {
		mean := float64(time.Minute) / c.rate
		d := time.Duration(-math.Log(1-s.traffic.Float64()) * mean)
		// The same floor as interarrival's: a hot corp may send many
		// messages a second.
		return s.conversation(max(d, time.Millisecond))
	}
	return s.interarrival()
}

// exchangeLocked spends an auth code: it returns the corp and its new
// permanent code, or the error body.
func (s *Sim) exchangeLocked(r *http.Request, body []byte, api string) (*installation, string, *apiError) {
	if _, e := s.checkTokenLocked(r.URL.Query().Get("suite_access_token"), kindSuite, api); e != nil {
		return nil, "", e
	}
	var req struct {
		AuthCode string `json:"auth_code"`
	}
	if json.Unmarshal(body, &req) != nil {
		e := s.errLocked(codeDataFormat, "data format error")
		return nil, "", &e
	}
	s.auth.init()
	ac, ok := s.auth.codes[req.AuthCode]
	if !ok || ac.used || !s.now.Before(ac.expires) {
		e := s.errLocked(codeInvalidAuthCode, "invalid code")
		return nil, "", &e
	}
	ac.used = true
	in := s.auth.installs[ac.corpID]
	in.permanentCode = "pc-" + s.randToken(60)
	return in, ac.corpID, nil
}

// POST /cgi-bin/service/v2/get_permanent_code: the corp and its permanent
// code, no access token (doc 100776).
func (s *Sim) getPermanentCodeV2(r *http.Request, body []byte) any {
	in, corpID, e := s.exchangeLocked(r, body, "get_permanent_code_v2")
	if e != nil {
		return *e
	}
	type corpInfo struct {
		CorpID   string `json:"corpid"`
		CorpName string `json:"corp_name"`
	}
	return struct {
		apiError
		PermanentCode string   `json:"permanent_code"`
		AuthCorpInfo  corpInfo `json:"auth_corp_info"`
		State         string   `json:"state"`
	}{okBody, in.permanentCode, corpInfo{corpID, in.name}, ""}
}

// POST /cgi-bin/service/get_permanent_code: also a corp access token and
// the grant (doc 90603).
func (s *Sim) getPermanentCodeV1(r *http.Request, body []byte) any {
	in, corpID, e := s.exchangeLocked(r, body, "get_permanent_code")
	if e != nil {
		return *e
	}
	tok, exp := s.issueLocked("corp|"+corpID, kindArchive, corpID)
	return struct {
		apiError
		AccessToken   string       `json:"access_token"`
		ExpiresIn     int64        `json:"expires_in"`
		PermanentCode string       `json:"permanent_code"`
		AuthCorpInfo  simCorpInfo  `json:"auth_corp_info"`
		AuthInfo      simAuthAgent `json:"auth_info"`
		State         string       `json:"state"`
	}{okBody, tok, exp, in.permanentCode, s.corpInfo(corpID, in), s.grant(), ""}
}

type simCorpInfo struct {
	CorpID       string `json:"corpid"`
	CorpName     string `json:"corp_name"`
	CorpFullName string `json:"corp_full_name"`
	CorpType     string `json:"corp_type"`
}

type simAuthAgent struct {
	Agent []struct {
		AgentID int    `json:"agentid"`
		Name    string `json:"name"`
	} `json:"agent"`
}

func (s *Sim) corpInfo(corpID string, in *installation) simCorpInfo {
	return simCorpInfo{CorpID: corpID, CorpName: in.name, CorpFullName: in.name + " Ltd.", CorpType: "verified"}
}

// grant is the suite's one agent as every corp grants it.
func (s *Sim) grant() simAuthAgent {
	var g simAuthAgent
	g.Agent = append(g.Agent, struct {
		AgentID int    `json:"agentid"`
		Name    string `json:"name"`
	}{AgentID: 1000001, Name: "会话存档接口授权"})
	return g
}

// POST /cgi-bin/service/get_auth_info: the corp's current grant, for its
// current permanent code.
func (s *Sim) getAuthInfo(r *http.Request, body []byte) any {
	if _, e := s.checkTokenLocked(r.URL.Query().Get("suite_access_token"), kindSuite, "get_auth_info"); e != nil {
		return *e
	}
	var req struct {
		AuthCorpID    string `json:"auth_corpid"`
		PermanentCode string `json:"permanent_code"`
	}
	if json.Unmarshal(body, &req) != nil {
		return s.errLocked(codeDataFormat, "data format error")
	}
	s.auth.init()
	in, ok := s.auth.installs[req.AuthCorpID]
	switch {
	case !ok:
		return s.errLocked(codeInvalidCorpID, "invalid corpid")
	case !in.authorized || req.PermanentCode == "" || req.PermanentCode != in.permanentCode:
		return s.errLocked(codeInvalidPermCode, "invalid permanent_code")
	}
	return struct {
		apiError
		AuthCorpInfo simCorpInfo  `json:"auth_corp_info"`
		AuthInfo     simAuthAgent `json:"auth_info"`
	}{okBody, s.corpInfo(req.AuthCorpID, in), s.grant()}
}

// installRoutes adds the installation APIs and their /_sim controls.
func (s *Sim) installRoutes(r chi.Router) {
	r.Post("/cgi-bin/service/v2/get_permanent_code", s.api("get_permanent_code_v2", s.getPermanentCodeV2))
	r.Post("/cgi-bin/service/get_permanent_code", s.api("get_permanent_code", s.getPermanentCodeV1))
	r.Post("/cgi-bin/service/get_auth_info", s.api("get_auth_info", s.getAuthInfo))
	r.Get("/_sim/corps", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Corps()) })
	r.Post("/_sim/corps", func(w http.ResponseWriter, r *http.Request) {
		var in Install
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err == nil && len(body) > 0 {
			err = json.Unmarshal(body, &in)
		}
		if err != nil {
			http.Error(w, "body must be empty or a JSON object {corp_id, corp_name, demo_rules, message_rate}", http.StatusBadRequest)
			return
		}
		out, err := s.AuthorizeCorp(in)
		if err != nil {
			http.Error(w, err.Error(), installStatus(err))
			return
		}
		writeJSON(w, out)
	})
	r.Delete("/_sim/corps/{corp}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.CancelCorp(chi.URLParam(r, "corp")); err != nil {
			http.Error(w, err.Error(), installStatus(err))
			return
		}
		writeJSON(w, map[string]string{"corp_id": chi.URLParam(r, "corp")})
	})
	r.Post("/_sim/corps/{corp}/reset", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.ResetPermanentCode(chi.URLParam(r, "corp"))
		if err != nil {
			http.Error(w, err.Error(), installStatus(err))
			return
		}
		writeJSON(w, out)
	})
}

func installStatus(err error) int {
	switch {
	case errors.Is(err, ErrCorpAuthorized):
		return http.StatusConflict
	case errors.Is(err, ErrCorpNotAuthorized):
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}
