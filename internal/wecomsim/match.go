package wecomsim

import (
	"regexp"
	"slices"
	"strings"
	"time"
)

// Semantics codes (关键行为) of semantics_list (protocol §3.1).
const (
	SemRedPacket   = 1
	SemMobile      = 2
	SemEmail       = 3
	SemCard        = 4
	SemQRCodeImage = 5
	SemRecall      = 6
	SemBankCard    = 7
	SemIDCard      = 8
	SemFile        = 9
	SemLink        = 10
	SemMiniProgram = 11
	SemWelcome     = 12
)

// RuleHit is one rule's verdict on a message, as in hit_rule_list.
type RuleHit struct {
	RuleID        string `json:"rule_id"`
	HasHitKeyword bool   `json:"has_hit_keyword"`
	SemanticsList []int  `json:"semantics_list"`
}

// Hit is one (corp, message, rule) hit: the ground truth of what
// get_hit_msg_list must return.
type Hit struct {
	CorpID        string  `json:"corp_id"`
	MsgID         string  `json:"msgid"`
	RuleID        string  `json:"rule_id"`
	HasHitKeyword bool    `json:"has_hit_keyword"`
	SemanticsList []int   `json:"semantics_list"`
	Message       Message `json:"message"`
}

// hitEntry is one msg_list entry: a message and every rule it hit.
type hitEntry struct {
	seq   int64
	msg   *Message
	rules []RuleHit
}

// rule is a stored keyword rule. Lists are nil when not set.
type rule struct {
	ID      string
	seq     int64 // creation order, for get_rule_list cursors
	Name    string
	Created time.Time

	Words         []string
	CaseSensitive int
	MatchRule     int // 0 contains, 1 exact
	TrimMsg       int // trim before an exact match

	Semantics []int

	TargetTypes      []int
	ChatTypes        []int
	Departments      []int64
	Users            []string
	ExternalContacts []string
	Chats            []string
	SessionTypes     []int // enum unknown: stored, not applied
	ExcludeMobiles   []string
	ExcludeEmails    []string
	ExcludeBankCards []string
}

// features are the key behaviours found in a message, before a rule's
// exclude lists apply.
type features struct {
	sem     []int // codes that need no per-rule filtering
	mobiles []string
	emails  []string
	cards   []string
}

var (
	numberRE = regexp.MustCompile(`[0-9]+[Xx]?`)
	emailRE  = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
	urlRE    = regexp.MustCompile(`(?i)\bhttps?://\S+|\bwww\.\S+`)
)

// detect finds the key behaviours in m. Digit runs are classified whole, so
// a bank card number never also counts as a mobile number.
func detect(m *Message) features {
	var f features
	add := func(code int) { f.sem = append(f.sem, code) }
	switch m.MsgType {
	case MsgRedPacket:
		add(SemRedPacket)
	case MsgCard:
		add(SemCard)
	case MsgImage:
		if m.QRCode {
			add(SemQRCodeImage)
		}
	case MsgFile: // a 微盘 file (23) is not a "sent file"
		add(SemFile)
	case MsgLink:
		add(SemLink)
	case MsgMiniProgram:
		add(SemMiniProgram)
	}
	if m.Recalled {
		add(SemRecall)
	}
	if m.Welcome {
		add(SemWelcome)
	}
	if m.MsgType == MsgText || m.MsgType == MsgMixed {
		for _, n := range numberRE.FindAllString(m.Text, -1) {
			digits := !strings.ContainsAny(n, "Xx")
			switch {
			case digits && len(n) == 11 && n[0] == '1' && n[1] >= '3':
				f.mobiles = append(f.mobiles, n)
			case digits && len(n) >= 16 && len(n) <= 19 && luhnValid(n):
				f.cards = append(f.cards, n)
			}
			if len(n) == 18 && idCheck(n[:17]) == upper(n[17]) {
				add(SemIDCard)
			}
		}
		f.emails = emailRE.FindAllString(m.Text, -1)
		if m.MsgType != MsgLink && urlRE.MatchString(m.Text) {
			add(SemLink)
		}
	}
	return f
}

func upper(b byte) byte {
	if b == 'x' {
		return 'X'
	}
	return b
}

func luhnValid(n string) bool {
	sum := 0
	for i := 0; i < len(n); i++ {
		d := int(n[len(n)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// luhnDigit is the check digit that makes body+digit Luhn-valid.
func luhnDigit(body string) byte {
	for d := byte('0'); d <= '9'; d++ {
		if luhnValid(body + string(d)) {
			return d
		}
	}
	return '0'
}

// idCheck is the check character of a mainland ID number's first 17 digits
// (GB 11643).
func idCheck(body17 string) byte {
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := range 17 {
		c := body17[i]
		if c < '0' || c > '9' {
			return 0
		}
		sum += int(c-'0') * weights[i]
	}
	return "10X98765432"[sum%11]
}

// applies reports whether m is in the rule's applicable_range. Each list
// narrows only what it is about (protocol §4 gotchas): department/user lists
// restrict employee senders, external_contact customer senders, chat group
// chats; target_type restricts the sender's type and chat_type the chat's.
// That target_type means the sender is our reading of "监控对象".
func (r *rule) applies(m *Message, dept map[string]int64) bool {
	if len(r.TargetTypes) > 0 && !slices.Contains(r.TargetTypes, m.Sender.Type) {
		return false
	}
	chatType := 1
	if m.ChatID != "" {
		chatType = 2
	}
	if len(r.ChatTypes) > 0 && !slices.Contains(r.ChatTypes, chatType) {
		return false
	}
	switch m.Sender.Type {
	case PartyEmployee:
		if len(r.Departments) > 0 || len(r.Users) > 0 {
			d, ok := dept[m.Sender.ID]
			inDept := ok && slices.Contains(r.Departments, d)
			if !inDept && !slices.Contains(r.Users, m.Sender.ID) {
				return false
			}
		}
	case PartyCustomer:
		if len(r.ExternalContacts) > 0 && !slices.Contains(r.ExternalContacts, m.Sender.ID) {
			return false
		}
	}
	if chatType == 2 && len(r.Chats) > 0 && !slices.Contains(r.Chats, m.ChatID) {
		return false
	}
	return true
}

// match evaluates the rule on m: keywords against the searchable text, and
// the rule's semantics against the detected behaviours minus its exclude
// lists. ok is false when the rule does not apply or nothing hit.
func (r *rule) match(m *Message, f features, dept map[string]int64) (RuleHit, bool) {
	if !r.applies(m, dept) {
		return RuleHit{}, false
	}
	h := RuleHit{RuleID: r.ID, SemanticsList: []int{}}
	if searchable[m.MsgType] && m.Text != "" {
		h.HasHitKeyword = r.keywordHit(m.Text)
	}
	found := slices.Clone(f.sem)
	notExcluded := func(vals, excl []string) bool {
		for _, v := range vals {
			if !slices.Contains(excl, v) {
				return true
			}
		}
		return false
	}
	if notExcluded(f.mobiles, r.ExcludeMobiles) {
		found = append(found, SemMobile)
	}
	if notExcluded(f.emails, r.ExcludeEmails) {
		found = append(found, SemEmail)
	}
	if notExcluded(f.cards, r.ExcludeBankCards) {
		found = append(found, SemBankCard)
	}
	for _, code := range r.Semantics {
		if slices.Contains(found, code) && !slices.Contains(h.SemanticsList, code) {
			h.SemanticsList = append(h.SemanticsList, code)
		}
	}
	slices.Sort(h.SemanticsList)
	return h, h.HasHitKeyword || len(h.SemanticsList) > 0
}

func (r *rule) keywordHit(text string) bool {
	if r.TrimMsg == 1 && r.MatchRule == 1 {
		text = strings.TrimSpace(text)
	}
	for _, w := range r.Words {
		t, w := text, w
		if r.CaseSensitive == 0 {
			t, w = strings.ToLower(t), strings.ToLower(w)
		}
		if r.MatchRule == 1 && t == w || r.MatchRule == 0 && strings.Contains(t, w) {
			return true
		}
	}
	return false
}
