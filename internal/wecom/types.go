package wecom

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/wecomhit/wecomhit"
)

// Flag is a boolean that WeCom sends as 0 or 1 (has_more, need_detail). It
// also decodes true and false.
type Flag bool

// MarshalJSON writes 1 or 0.
func (f Flag) MarshalJSON() ([]byte, error) {
	if f {
		return []byte("1"), nil
	}
	return []byte("0"), nil
}

// UnmarshalJSON reads 0, 1, true, false or null (false).
func (f *Flag) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "1", "true":
		*f = true
	case "0", "false", "null":
		*f = false
	default:
		return fmt.Errorf("wecom: flag must be 0 or 1, got %.16s", b)
	}
	return nil
}

// HitMsgListRequest is get_hit_msg_list's request (protocol §3.1).
type HitMsgListRequest struct {
	// Token is the hit token of a hit_keyword event, at most 128 bytes.
	// Without it WeCom applies a strict rate limit.
	Token string `json:"token,omitempty"`
	// Cursor is the previous page's NextCursor, at most 64 bytes; empty
	// starts at the oldest hit of the last 5 days.
	Cursor string `json:"cursor,omitempty"`
	// Limit is the page size, at most 1000; 0 means WeCom's default, 200.
	Limit int `json:"limit,omitempty"`
	// NeedDetail asks for each message's MsgDetail.
	NeedDetail Flag `json:"need_detail,omitzero"`
	// BeginTime (unix seconds) re-pulls from near that time when the
	// cursor is lost.
	BeginTime int64 `json:"begin_time,omitempty"`
	// NotifyID is the program_notify event's id; zone apps only, at most
	// 128 bytes. It travels beside request_data, not inside it.
	NotifyID string `json:"-"`
}

// HitMsgList is one page of hits.
type HitMsgList struct {
	HasMore    Flag     `json:"has_more"`
	NextCursor string   `json:"next_cursor"`
	MsgList    []HitMsg `json:"msg_list"`
}

// The hit types are the shared ones of the module root: the client decodes
// straight into what fetch and publish use.
type (
	// HitMsg is one message that hit at least one rule.
	HitMsg = wecomhit.HitMessage
	// MsgDetail describes a message without its (encrypted) content.
	MsgDetail = wecomhit.MsgDetail
	// Party is a sender or receiver: Type 1 employee (open_userid),
	// 2 customer (external_userid), 3 robot.
	Party = wecomhit.Party
	// ServiceEncryptInfo is the message key, encrypted with the public key
	// of version PublicKeyVer registered via set_public_key.
	ServiceEncryptInfo = wecomhit.ServiceEncryptInfo
	// HitRule says which rule a message hit and how.
	HitRule = wecomhit.HitRule
)

// Rule is a keyword rule as create_rule takes it and get_rule_detail
// returns it (protocol §4). Note the nesting: word_list sits under keyword,
// semantics_list under semantics.
type Rule struct {
	// Name is 1–20 characters.
	Name            string           `json:"name"`
	Keyword         *Keyword         `json:"keyword,omitempty"`
	Semantics       *Semantics       `json:"semantics,omitempty"`
	ApplicableRange *ApplicableRange `json:"applicable_range,omitempty"`
}

// Keyword holds the words of a rule: 1–20 words of 1–32 characters.
type Keyword struct {
	WordList []string `json:"word_list"`
}

// Semantics holds the key-behaviour codes of a rule, each 1–12 (1 red
// packet, 2 phone number, 3 e-mail, … see protocol §3.1).
type Semantics struct {
	SemanticsList []int `json:"semantics_list"`
}

// ApplicableRange narrows where a rule applies; every member is optional.
// Beware WeCom's scoping (protocol §4): a department or user list without
// TargetType [1] still matches all customers, and so on.
type ApplicableRange struct {
	// TargetType: 1 employee, 2 customer; absent means both.
	TargetType *TypeList `json:"target_type,omitempty"`
	// ChatType: 1 single chat, 2 group chat; absent means both.
	ChatType   *TypeList   `json:"chat_type,omitempty"`
	Department *Department `json:"department,omitempty"`
	// User holds open_userids: at most 100, or 1000 for zone apps.
	User *IDList `json:"user,omitempty"`
	// ExternalContact holds external_userids, at most 100.
	ExternalContact *IDList `json:"external_contact,omitempty"`
	// Chat holds group chat ids: at most 100, or 2000 for zone apps.
	Chat          *IDList        `json:"chat,omitempty"`
	ExcludeMobile *ExcludeMobile `json:"exclude_mobile,omitempty"`
}

// TypeList is {"type_list":[…]}.
type TypeList struct {
	TypeList []int `json:"type_list"`
}

// Department is {"id_list":[…]} of department ids, at most 100.
type Department struct {
	IDList []int64 `json:"id_list"`
}

// IDList is {"id_list":[…]} of string ids.
type IDList struct {
	IDList []string `json:"id_list"`
}

// ExcludeMobile lists phone numbers that do not count as a phone-number
// hit, at most 100.
type ExcludeMobile struct {
	MobileList []string `json:"mobile_list"`
}

// List is one list field of a RuleUpdate. Its zero value leaves the list as
// it is (the field is not sent); Set sends the items, and Set() with none
// sends [], which clears the list: WeCom gives the two different meanings.
type List[T any] struct {
	items []T
	set   bool
}

// Set returns a List that replaces the rule's list with items; with no
// items it clears the list.
func Set[T any](items ...T) List[T] {
	if items == nil {
		items = []T{}
	}
	return List[T]{items: items, set: true}
}

// Items returns the items and whether the list is set.
func (l List[T]) Items() ([]T, bool) { return l.items, l.set }

// IsZero reports whether the list is unset; with json's omitzero it keeps
// an unset list off the wire.
func (l List[T]) IsZero() bool { return !l.set }

// MarshalJSON writes the items, [] when there are none.
func (l List[T]) MarshalJSON() ([]byte, error) {
	if l.items == nil {
		return []byte("[]"), nil
	}
	return json.Marshal(l.items)
}

// UnmarshalJSON reads a present list: [] (or items) sets it. A JSON null is
// refused: it could mean "unchanged" or "clear", and the two differ.
// Leave the field out to keep the list.
func (l *List[T]) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return fmt.Errorf("wecom: null list: leave the field out to keep it, or send [] to clear it")
	}
	var items []T
	if err := json.Unmarshal(b, &items); err != nil {
		return err
	}
	*l = Set(items...)
	return nil
}

// RuleUpdate is update_rule's request. Every field but RuleID is optional:
// an empty Name and unset Lists are left out, so WeCom keeps them.
type RuleUpdate struct {
	RuleID string
	// Name, when not empty, renames the rule (1–20 characters).
	Name string
	// Words is keyword.word_list.
	Words List[string]
	// Semantics is semantics.semantics_list.
	Semantics List[int]
	// The rest are applicable_range's members.
	TargetTypes      List[int]
	ChatTypes        List[int]
	Departments      List[int64]
	Users            List[string]
	ExternalContacts List[string]
	Chats            List[string]
	ExcludeMobiles   List[string]
}

// MarshalJSON writes the nested wire form; a parent object (keyword,
// semantics, applicable_range and its members) appears only when a list
// under it is set.
func (u RuleUpdate) MarshalJSON() ([]byte, error) {
	type typeList struct {
		TypeList List[int] `json:"type_list"`
	}
	type deptList struct {
		IDList List[int64] `json:"id_list"`
	}
	type idList struct {
		IDList List[string] `json:"id_list"`
	}
	type mobileList struct {
		MobileList List[string] `json:"mobile_list"`
	}
	type rangeUpdate struct {
		TargetType      *typeList   `json:"target_type,omitempty"`
		ChatType        *typeList   `json:"chat_type,omitempty"`
		Department      *deptList   `json:"department,omitempty"`
		User            *idList     `json:"user,omitempty"`
		ExternalContact *idList     `json:"external_contact,omitempty"`
		Chat            *idList     `json:"chat,omitempty"`
		ExcludeMobile   *mobileList `json:"exclude_mobile,omitempty"`
	}
	wire := struct {
		RuleID  string `json:"rule_id"`
		Name    string `json:"name,omitempty"`
		Keyword *struct {
			WordList List[string] `json:"word_list"`
		} `json:"keyword,omitempty"`
		Semantics *struct {
			SemanticsList List[int] `json:"semantics_list"`
		} `json:"semantics,omitempty"`
		ApplicableRange *rangeUpdate `json:"applicable_range,omitempty"`
	}{RuleID: u.RuleID, Name: u.Name}
	if u.Words.set {
		wire.Keyword = &struct {
			WordList List[string] `json:"word_list"`
		}{u.Words}
	}
	if u.Semantics.set {
		wire.Semantics = &struct {
			SemanticsList List[int] `json:"semantics_list"`
		}{u.Semantics}
	}
	var r rangeUpdate
	hasRange := false
	if u.TargetTypes.set {
		r.TargetType, hasRange = &typeList{u.TargetTypes}, true
	}
	if u.ChatTypes.set {
		r.ChatType, hasRange = &typeList{u.ChatTypes}, true
	}
	if u.Departments.set {
		r.Department, hasRange = &deptList{u.Departments}, true
	}
	if u.Users.set {
		r.User, hasRange = &idList{u.Users}, true
	}
	if u.ExternalContacts.set {
		r.ExternalContact, hasRange = &idList{u.ExternalContacts}, true
	}
	if u.Chats.set {
		r.Chat, hasRange = &idList{u.Chats}, true
	}
	if u.ExcludeMobiles.set {
		r.ExcludeMobile, hasRange = &mobileList{u.ExcludeMobiles}, true
	}
	if hasRange {
		wire.ApplicableRange = &r
	}
	return json.Marshal(wire)
}

// RuleSummary is one entry of get_rule_list.
type RuleSummary struct {
	RuleID     string `json:"rule_id"`
	Name       string `json:"name"`
	CreateTime int64  `json:"create_time"`
}

// RuleDetail is get_rule_detail's answer.
type RuleDetail struct {
	RuleID string `json:"rule_id"`
	Rule
}

// SearchRequest is search_msg's request (protocol §5). Cursor is managed
// by the SearchMsg iterator; set it only to resume a search.
type SearchRequest struct {
	// QueryWord is required, at least 2 characters.
	QueryWord string    `json:"query_word"`
	ChatInfo  *ChatInfo `json:"chat_info,omitempty"`
	// StartTime and EndTime are unix seconds; EndTime needs StartTime and
	// must be after it, at most 30 days (archive) or 31 days (zone) later.
	StartTime int64 `json:"start_time,omitempty"`
	EndTime   int64 `json:"end_time,omitempty"`
	// SkipStopWords is for zone apps only.
	SkipStopWords bool `json:"skip_stop_words,omitempty"`
	// Limit is the page size, at most 100; 0 means WeCom's default, 50.
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// ChatInfo narrows a search to one chat.
type ChatInfo struct {
	// ChatType is 1 single chat, 2 group chat.
	ChatType int `json:"chat_type,omitempty"`
	// IDList names the two parties of a single chat: exactly 2.
	IDList []IDInfo `json:"id_list,omitempty"`
	// ChatID is the group of a group chat.
	ChatID string `json:"chat_id,omitempty"`
	// MsgTypeList, Sender and SenderList are for zone apps only;
	// SenderList holds at most 100 employees and overrides Sender.
	MsgTypeList []int    `json:"msg_type_list,omitempty"`
	Sender      *IDInfo  `json:"sender,omitempty"`
	SenderList  []IDInfo `json:"sender_list,omitempty"`
}

// IDInfo names an employee (OpenUserID) or a customer (ExternalUserID);
// OpenUserID wins when both are set.
type IDInfo struct {
	OpenUserID     string `json:"open_userid,omitempty"`
	ExternalUserID string `json:"external_userid,omitempty"`
}

// SearchHit is one message search_msg found; only its id.
type SearchHit struct {
	MsgID string `json:"msgid"`
}

// Wire shapes of the requests and responses not exported above.
type (
	createRuleResponse struct {
		RuleID string `json:"rule_id"`
	}
	ruleListRequest struct {
		Cursor string `json:"cursor,omitempty"`
		Limit  int    `json:"limit,omitempty"`
	}
	ruleListResponse struct {
		HasMore    Flag          `json:"has_more"`
		NextCursor string        `json:"next_cursor"`
		RuleList   []RuleSummary `json:"rule_list"`
	}
	ruleIDRequest struct {
		RuleID string `json:"rule_id"`
	}
	searchResponse struct {
		HasMore    Flag        `json:"has_more"`
		NextCursor string      `json:"next_cursor"`
		MsgList    []SearchHit `json:"msg_list"`
	}
)
