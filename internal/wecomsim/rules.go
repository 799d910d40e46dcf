package wecomsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"unicode/utf8"
)

// Limits of keyword rules (protocol §4). Where the doc records two limits,
// the larger applies to zone corps only.
const (
	maxNameRunes    = 20
	maxWords        = 20
	maxWordRunes    = 32
	maxDepartments  = 100
	maxUsers        = 100
	maxUsersZone    = 1000
	maxExternal     = 100
	maxChats        = 100
	maxChatsZone    = 2000
	maxExcludeItems = 100 // mobile_list; email/bank card limits are unconfirmed, same assumed
	// maxRules per corp is unconfirmed ("≤100?"); assumed.
	maxRules = 100
	// get_rule_list's limit bounds are unconfirmed; assumed default 100, max 1000.
	ruleListDefault = 100
	ruleListMax     = 1000
)

// call is one operation invocation, by either transport.
type call struct {
	corp *corpState
	zone bool
	body []byte
	// notifyToken is the hit token behind a sync_call_program notify_id.
	notifyToken string
	apis        []string
}

// badInput is returned by an operation when a zone request_data does not
// fit the ability's input schema; sync_call_program turns it into 790016.
type badInput struct{ reason string }

// decodeLocked decodes the call's body into v. HTTPS calls ignore unknown
// fields, as WeCom's JSON APIs do, and answer 47001 when the JSON does not
// fit; zone calls are checked against the ability's schema: unknown fields
// or wrong types are badInput.
func (s *Sim) decodeLocked(cl *call, v any) any {
	body := cl.body
	if len(bytes.TrimSpace(body)) == 0 && !cl.zone {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if cl.zone {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		if cl.zone {
			return badInput{err.Error()}
		}
		return s.errLocked(codeDataFormat, "data format error")
	}
	return nil
}

func (s *Sim) invalidLocked(format string, args ...any) apiError {
	return s.errLocked(codeInvalidParam, "invalid parameter: "+fmt.Sprintf(format, args...))
}

// ruleBody is create_rule's and update_rule's request. Pointers tell an
// absent field (nil: unchanged on update) from an empty list (cleared).
type ruleBody struct {
	RuleID          *string        `json:"rule_id"`
	Name            *string        `json:"name"`
	Keyword         *keywordBody   `json:"keyword"`
	Semantics       *semanticsBody `json:"semantics"`
	ApplicableRange *rangeBody     `json:"applicable_range"`
}

type keywordBody struct {
	WordList        *[]string `json:"word_list"`
	IsCaseSensitive *int      `json:"is_case_sensitive"`
	MatchRule       *int      `json:"match_rule"`
	IsTrimMsg       *int      `json:"is_trim_msg"`
}

type semanticsBody struct {
	SemanticsList *[]int `json:"semantics_list"`
}

type rangeBody struct {
	TargetType *struct {
		List *[]int `json:"type_list"`
	} `json:"target_type"`
	ChatType *struct {
		List *[]int `json:"type_list"`
	} `json:"chat_type"`
	Department *struct {
		List *[]int64 `json:"id_list"`
	} `json:"department"`
	User *struct {
		List *[]string `json:"id_list"`
	} `json:"user"`
	ExternalContact *struct {
		List *[]string `json:"id_list"`
	} `json:"external_contact"`
	Chat *struct {
		List *[]string `json:"id_list"`
	} `json:"chat"`
	SessionType *struct {
		List *[]int `json:"session_type_list"`
	} `json:"session_type"`
	ExcludeMobile *struct {
		List *[]string `json:"mobile_list"`
	} `json:"exclude_mobile"`
	ExcludeEmail *struct {
		List *[]string `json:"email_list"`
	} `json:"exclude_email"`
	ExcludeBankCard *struct {
		List *[]string `json:"bank_card_list"`
	} `json:"exclude_bank_card"`
}

func set[T any](dst *[]T, src *[]T) {
	if src != nil {
		*dst = slices.Clone(*src)
	}
}

// applyTo writes the fields present in b onto r.
func (b *ruleBody) applyTo(r *rule) {
	if b.Name != nil {
		r.Name = *b.Name
	}
	if k := b.Keyword; k != nil {
		set(&r.Words, k.WordList)
		for dst, src := range map[*int]*int{&r.CaseSensitive: k.IsCaseSensitive, &r.MatchRule: k.MatchRule, &r.TrimMsg: k.IsTrimMsg} {
			if src != nil {
				*dst = *src
			}
		}
	}
	if b.Semantics != nil {
		set(&r.Semantics, b.Semantics.SemanticsList)
	}
	a := b.ApplicableRange
	if a == nil {
		return
	}
	if a.TargetType != nil {
		set(&r.TargetTypes, a.TargetType.List)
	}
	if a.ChatType != nil {
		set(&r.ChatTypes, a.ChatType.List)
	}
	if a.Department != nil {
		set(&r.Departments, a.Department.List)
	}
	if a.User != nil {
		set(&r.Users, a.User.List)
	}
	if a.ExternalContact != nil {
		set(&r.ExternalContacts, a.ExternalContact.List)
	}
	if a.Chat != nil {
		set(&r.Chats, a.Chat.List)
	}
	if a.SessionType != nil {
		set(&r.SessionTypes, a.SessionType.List)
	}
	if a.ExcludeMobile != nil {
		set(&r.ExcludeMobiles, a.ExcludeMobile.List)
	}
	if a.ExcludeEmail != nil {
		set(&r.ExcludeEmails, a.ExcludeEmail.List)
	}
	if a.ExcludeBankCard != nil {
		set(&r.ExcludeBankCards, a.ExcludeBankCard.List)
	}
}

// validate returns what is wrong with r, or "".
func (r *rule) validate(zone bool) string {
	if n := utf8.RuneCountInString(r.Name); n < 1 || n > maxNameRunes {
		return fmt.Sprintf("name must be 1-%d characters", maxNameRunes)
	}
	if len(r.Words) > maxWords {
		return fmt.Sprintf("keyword.word_list has more than %d words", maxWords)
	}
	for _, w := range r.Words {
		if n := utf8.RuneCountInString(w); n < 1 || n > maxWordRunes {
			return fmt.Sprintf("keyword.word_list: each word must be 1-%d characters", maxWordRunes)
		}
	}
	for _, c := range r.Semantics {
		if c < 1 || c > 12 {
			return "semantics.semantics_list: values must be 1-12"
		}
	}
	// Unconfirmed but implied by the doc: a rule matches on something.
	if len(r.Words) == 0 && len(r.Semantics) == 0 {
		return "keyword.word_list or semantics.semantics_list required"
	}
	for name, v := range map[string]int{"keyword.is_case_sensitive": r.CaseSensitive,
		"keyword.match_rule": r.MatchRule, "keyword.is_trim_msg": r.TrimMsg} {
		if v != 0 && v != 1 {
			return name + " must be 0 or 1"
		}
	}
	for name, l := range map[string][]int{"applicable_range.target_type.type_list": r.TargetTypes,
		"applicable_range.chat_type.type_list": r.ChatTypes} {
		for _, v := range l {
			if v != 1 && v != 2 {
				return name + ": values must be 1 or 2"
			}
		}
	}
	users, chats := maxUsers, maxChats
	if zone {
		users, chats = maxUsersZone, maxChatsZone
	}
	for _, c := range []struct {
		name string
		n    int
		max  int
	}{
		{"applicable_range.department.id_list", len(r.Departments), maxDepartments},
		{"applicable_range.user.id_list", len(r.Users), users},
		{"applicable_range.external_contact.id_list", len(r.ExternalContacts), maxExternal},
		{"applicable_range.chat.id_list", len(r.Chats), chats},
		{"applicable_range.exclude_mobile.mobile_list", len(r.ExcludeMobiles), maxExcludeItems},
		{"applicable_range.exclude_email.email_list", len(r.ExcludeEmails), maxExcludeItems},
		{"applicable_range.exclude_bank_card.bank_card_list", len(r.ExcludeBankCards), maxExcludeItems},
	} {
		if c.n > c.max {
			return fmt.Sprintf("%s has more than %d items", c.name, c.max)
		}
	}
	return ""
}

func (s *Sim) createRule(cl *call) any {
	var req ruleBody
	if e := s.decodeLocked(cl, &req); e != nil {
		return e
	}
	r := &rule{Created: s.now}
	req.applyTo(r)
	if msg := r.validate(cl.zone); msg != "" {
		return s.invalidLocked("%s", msg)
	}
	if len(cl.corp.rules) >= maxRules {
		return s.invalidLocked("more than %d rules", maxRules)
	}
	r.ID = s.randToken(24)
	cl.corp.ruleSeq++
	r.seq = cl.corp.ruleSeq
	cl.corp.rules = append(cl.corp.rules, r)
	return struct {
		apiError
		RuleID string `json:"rule_id"`
	}{okBody, r.ID}
}

func (s *Sim) findRule(c *corpState, id string) (int, *rule) {
	for i, r := range c.rules {
		if r.ID == id {
			return i, r
		}
	}
	return -1, nil
}

func (s *Sim) ruleByIDLocked(cl *call, id *string) (int, *rule, any) {
	if id == nil || *id == "" {
		return -1, nil, s.invalidLocked("rule_id required")
	}
	i, r := s.findRule(cl.corp, *id)
	if r == nil {
		// The real "no such rule" code is undocumented; assumed 40058.
		return -1, nil, s.invalidLocked("rule_id not found")
	}
	return i, r, nil
}

func (s *Sim) updateRule(cl *call) any {
	var req ruleBody
	if e := s.decodeLocked(cl, &req); e != nil {
		return e
	}
	i, old, e := s.ruleByIDLocked(cl, req.RuleID)
	if e != nil {
		return e
	}
	r := *old // lists are replaced by set, never appended to, so sharing is safe
	req.applyTo(&r)
	if msg := r.validate(cl.zone); msg != "" {
		return s.invalidLocked("%s", msg)
	}
	cl.corp.rules[i] = &r
	return okBody
}

func (s *Sim) deleteRule(cl *call) any {
	var req struct {
		RuleID *string `json:"rule_id"`
	}
	if e := s.decodeLocked(cl, &req); e != nil {
		return e
	}
	i, _, e := s.ruleByIDLocked(cl, req.RuleID)
	if e != nil {
		return e
	}
	cl.corp.rules = slices.Delete(cl.corp.rules, i, i+1)
	return okBody
}

type idsOut[T any] struct {
	IDList []T `json:"id_list"`
}

type ruleDetail struct {
	apiError
	Name    string `json:"name"`
	Keyword struct {
		WordList        []string `json:"word_list"`
		IsCaseSensitive int      `json:"is_case_sensitive,omitempty"`
		MatchRule       int      `json:"match_rule,omitempty"`
		IsTrimMsg       int      `json:"is_trim_msg,omitempty"`
	} `json:"keyword"`
	Semantics *struct {
		SemanticsList []int `json:"semantics_list"`
	} `json:"semantics,omitempty"`
	ApplicableRange struct {
		TargetType *struct {
			TypeList []int `json:"type_list"`
		} `json:"target_type,omitempty"`
		ChatType *struct {
			TypeList []int `json:"type_list"`
		} `json:"chat_type,omitempty"`
		Department      *idsOut[int64]  `json:"department,omitempty"`
		User            *idsOut[string] `json:"user,omitempty"`
		ExternalContact *idsOut[string] `json:"external_contact,omitempty"`
		Chat            *idsOut[string] `json:"chat,omitempty"`
		SessionType     *struct {
			List []int `json:"session_type_list"`
		} `json:"session_type,omitempty"`
		ExcludeMobile *struct {
			List []string `json:"mobile_list"`
		} `json:"exclude_mobile,omitempty"`
		ExcludeEmail *struct {
			List []string `json:"email_list"`
		} `json:"exclude_email,omitempty"`
		ExcludeBankCard *struct {
			List []string `json:"bank_card_list"`
		} `json:"exclude_bank_card,omitempty"`
	} `json:"applicable_range"`
}

// getRuleDetail answers the rule's fields at the top level, as WeCom does
// (SKIT's model of doc 97237); empty range members are left out.
func (s *Sim) getRuleDetail(cl *call) any {
	var req struct {
		RuleID *string `json:"rule_id"`
	}
	if e := s.decodeLocked(cl, &req); e != nil {
		return e
	}
	_, r, e := s.ruleByIDLocked(cl, req.RuleID)
	if e != nil {
		return e
	}
	d := ruleDetail{apiError: okBody, Name: r.Name}
	d.Keyword.WordList = append([]string{}, r.Words...)
	d.Keyword.IsCaseSensitive, d.Keyword.MatchRule, d.Keyword.IsTrimMsg = r.CaseSensitive, r.MatchRule, r.TrimMsg
	if len(r.Semantics) > 0 {
		d.Semantics = &struct {
			SemanticsList []int `json:"semantics_list"`
		}{r.Semantics}
	}
	a := &d.ApplicableRange
	if len(r.TargetTypes) > 0 {
		a.TargetType = &struct {
			TypeList []int `json:"type_list"`
		}{r.TargetTypes}
	}
	if len(r.ChatTypes) > 0 {
		a.ChatType = &struct {
			TypeList []int `json:"type_list"`
		}{r.ChatTypes}
	}
	if len(r.Departments) > 0 {
		a.Department = &idsOut[int64]{r.Departments}
	}
	if len(r.Users) > 0 {
		a.User = &idsOut[string]{r.Users}
	}
	if len(r.ExternalContacts) > 0 {
		a.ExternalContact = &idsOut[string]{r.ExternalContacts}
	}
	if len(r.Chats) > 0 {
		a.Chat = &idsOut[string]{r.Chats}
	}
	if len(r.SessionTypes) > 0 {
		a.SessionType = &struct {
			List []int `json:"session_type_list"`
		}{r.SessionTypes}
	}
	if len(r.ExcludeMobiles) > 0 {
		a.ExcludeMobile = &struct {
			List []string `json:"mobile_list"`
		}{r.ExcludeMobiles}
	}
	if len(r.ExcludeEmails) > 0 {
		a.ExcludeEmail = &struct {
			List []string `json:"email_list"`
		}{r.ExcludeEmails}
	}
	if len(r.ExcludeBankCards) > 0 {
		a.ExcludeBankCard = &struct {
			List []string `json:"bank_card_list"`
		}{r.ExcludeBankCards}
	}
	return d
}

func (s *Sim) getRuleList(cl *call) any {
	var req struct {
		Cursor string `json:"cursor"`
		Limit  int    `json:"limit"`
	}
	if e := s.decodeLocked(cl, &req); e != nil {
		return e
	}
	limit, e := s.limitLocked(req.Limit, ruleListDefault, ruleListMax)
	if e != nil {
		return e
	}
	after, e := s.cursorLocked(cl.corp.id, cursorRules, req.Cursor)
	if e != nil {
		return e
	}
	type item struct {
		RuleID     string `json:"rule_id"`
		Name       string `json:"name"`
		CreateTime int64  `json:"create_time"`
	}
	resp := struct {
		apiError
		HasMore    int    `json:"has_more"`
		NextCursor string `json:"next_cursor"`
		RuleList   []item `json:"rule_list"`
	}{apiError: okBody, NextCursor: req.Cursor, RuleList: []item{}}
	for _, r := range cl.corp.rules {
		if r.seq <= after {
			continue
		}
		if len(resp.RuleList) == limit {
			resp.HasMore = 1
			break
		}
		resp.RuleList = append(resp.RuleList, item{r.ID, r.Name, r.Created.Unix()})
		resp.NextCursor = s.makeCursor(cl.corp.id, cursorRules, r.seq)
	}
	return resp
}

// limitLocked applies a default to 0 and rejects values outside 1..max.
func (s *Sim) limitLocked(v, def, max int) (int, any) {
	if v == 0 {
		return def, nil
	}
	if v < 0 || v > max {
		return 0, s.invalidLocked("limit must be 1-%d", max)
	}
	return v, nil
}

// archiveOp serves an operation's HTTPS path, which takes a corp token from
// get_corp_token. Zone app tokens are refused with 48002: zone apps reach
// these interfaces only through their program.
func (s *Sim) archiveOp(op string) handlerFunc {
	return func(r *http.Request, body []byte) any {
		value := r.URL.Query().Get("access_token")
		if t, ok := s.tokens[value]; ok && t.kind == kindZone {
			return s.errLocked(codeNotAllowed, "api forbidden")
		}
		t, e := s.checkTokenLocked(value, kindArchive, op)
		if e != nil {
			return *e
		}
		return s.runOpLocked(op, &call{corp: s.corps[t.corpID], body: body, apis: []string{op}})
	}
}

func (s *Sim) runOpLocked(op string, cl *call) any {
	switch op {
	case "create_rule":
		return s.createRule(cl)
	case "get_rule_list":
		return s.getRuleList(cl)
	case "get_rule_detail":
		return s.getRuleDetail(cl)
	case "update_rule":
		return s.updateRule(cl)
	case "delete_rule":
		return s.deleteRule(cl)
	case "get_hit_msg_list":
		return s.getHitMsgList(cl)
	case "search_msg":
		return s.searchMsg(cl)
	}
	return s.errLocked(codeNotAllowed, "api forbidden")
}

// AddRule creates a rule in corpID directly, as create_rule would, for
// seeding demos and tests without a client: words (contains, case-insensitive)
// and semantics codes. It returns the rule id.
func (s *Sim) AddRule(corpID, name string, words []string, semantics []int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.corps[corpID]
	if !ok {
		return "", fmt.Errorf("add rule to %q: %w", corpID, ErrUnknownCorp)
	}
	return s.addRuleLocked(c, name, words, semantics)
}

func (s *Sim) addRuleLocked(c *corpState, name string, words []string, semantics []int) (string, error) {
	r := &rule{Created: s.now, Name: name, Words: words, Semantics: semantics}
	if msg := r.validate(c.zone); msg != "" {
		return "", fmt.Errorf("add rule: %s: %w", msg, ErrInvalidOption)
	}
	if len(c.rules) >= maxRules {
		return "", fmt.Errorf("add rule: more than %d rules: %w", maxRules, ErrInvalidOption)
	}
	r.ID = s.randToken(24)
	c.ruleSeq++
	r.seq = c.ruleSeq
	c.rules = append(c.rules, r)
	return r.ID, nil
}

// DemoRule is a rule to seed with AddRule.
type DemoRule struct {
	Name      string
	Words     []string
	Semantics []int
}

// DemoRules returns rules that the simulated traffic hits often: key
// behaviours grouped by theme, and a few words its texts use.
func DemoRules() []DemoRule {
	return []DemoRule{
		{"联系方式外泄", nil, []int{SemMobile, SemEmail, SemCard}},
		{"资金风险", nil, []int{SemRedPacket, SemBankCard, SemIDCard}},
		{"外链与文件", nil, []int{SemFile, SemLink, SemMiniProgram}},
		{"敏感词", []string{"微信", "转账", "返现"}, nil},
	}
}

// SeedDemoRules adds DemoRules to every simulated corp.
func (s *Sim) SeedDemoRules() error {
	s.mu.Lock()
	corps := make([]string, 0, len(s.corps))
	for id := range s.corps {
		corps = append(corps, id)
	}
	s.mu.Unlock()
	sort.Strings(corps)
	for _, id := range corps {
		for _, r := range DemoRules() {
			if _, err := s.AddRule(id, r.Name, r.Words, r.Semantics); err != nil {
				return err
			}
		}
	}
	return nil
}
