package wecom

import (
	"fmt"
	"unicode/utf8"
)

// Documented limits (protocol §2–§5). Where the doc records two values for
// one limit, the larger is for zone apps only: the newer zone doc raised it,
// the archive docs did not.
const (
	maxRuleNameChars   = 20
	maxWords           = 20
	maxWordChars       = 32
	minSemantics       = 1
	maxSemantics       = 12
	maxRangeIDs        = 100
	maxZoneUsers       = 1000
	maxZoneChats       = 2000
	minQueryWordChars  = 2
	singleChatIDs      = 2
	maxSearchLimit     = 100
	maxHitLimit        = 1000
	maxCursorBytes     = 64
	maxTokenBytes      = 128
	maxNotifyIDBytes   = 128
	maxSenderList      = 100
	archiveSearchDays  = 30
	zoneSearchDays     = 31
	chatTypeSingle     = 1
	targetOrChatTypeLo = 1
	targetOrChatTypeHi = 2
	secondsPerDay      = 24 * 60 * 60
)

// check collects the first violation; later checks are no-ops once one
// failed, so a request reports the first field that is wrong.
type check struct{ err *ValidationError }

func (c *check) fail(field, rule string, limit int) {
	if c.err == nil {
		c.err = &ValidationError{Field: field, Rule: rule, Limit: limit}
	}
}

func (c *check) result() error {
	if c.err == nil {
		return nil
	}
	return c.err
}

func (c *check) maxBytes(field, s string, n int) {
	if len(s) > n {
		c.fail(field, fmt.Sprintf("at most %d bytes", n), n)
	}
}

func (c *check) limit(field string, v, hi int) {
	if v < 0 || v > hi {
		c.fail(field, fmt.Sprintf("between 0 and %d", hi), hi)
	}
}

func (c *check) maxLen(field string, n, hi int) {
	if n > hi {
		c.fail(field, fmt.Sprintf("at most %d entries", hi), hi)
	}
}

func (c *check) ruleName(name string) {
	if n := utf8.RuneCountInString(name); n < 1 || n > maxRuleNameChars {
		c.fail("name", fmt.Sprintf("1 to %d characters", maxRuleNameChars), maxRuleNameChars)
	}
}

// words checks keyword.word_list; allowEmpty is for an update that clears it.
func (c *check) words(words []string, allowEmpty bool) {
	if len(words) > maxWords || (!allowEmpty && len(words) == 0) {
		c.fail("keyword.word_list", fmt.Sprintf("1 to %d words", maxWords), maxWords)
	}
	for i, w := range words {
		if n := utf8.RuneCountInString(w); n < 1 || n > maxWordChars {
			c.fail(fmt.Sprintf("keyword.word_list[%d]", i),
				fmt.Sprintf("1 to %d characters", maxWordChars), maxWordChars)
		}
	}
}

func (c *check) semantics(codes []int) {
	for i, s := range codes {
		if s < minSemantics || s > maxSemantics {
			c.fail(fmt.Sprintf("semantics.semantics_list[%d]", i),
				fmt.Sprintf("a code from %d to %d", minSemantics, maxSemantics), maxSemantics)
		}
	}
}

func (c *check) types(field string, types []int) {
	for i, t := range types {
		if t < targetOrChatTypeLo || t > targetOrChatTypeHi {
			c.fail(fmt.Sprintf("%s[%d]", field, i), "1 or 2", targetOrChatTypeHi)
		}
	}
}

// rangeLists checks applicable_range's list sizes, given each list's
// length; the zone limits are the newer, larger ones.
func (c *check) rangeLists(zone bool, targets, chatTypes []int, depts, users, externals, chats, mobiles int) {
	c.types("applicable_range.target_type.type_list", targets)
	c.types("applicable_range.chat_type.type_list", chatTypes)
	maxUsers, maxChats := maxRangeIDs, maxRangeIDs
	if zone {
		maxUsers, maxChats = maxZoneUsers, maxZoneChats
	}
	c.maxLen("applicable_range.department.id_list", depts, maxRangeIDs)
	c.maxLen("applicable_range.user.id_list", users, maxUsers)
	c.maxLen("applicable_range.external_contact.id_list", externals, maxRangeIDs)
	c.maxLen("applicable_range.chat.id_list", chats, maxChats)
	c.maxLen("applicable_range.exclude_mobile.mobile_list", mobiles, maxRangeIDs)
}

func validateHits(r *HitMsgListRequest, zone bool) error {
	var c check
	c.maxBytes("token", r.Token, maxTokenBytes)
	c.maxBytes("cursor", r.Cursor, maxCursorBytes)
	c.limit("limit", r.Limit, maxHitLimit)
	if r.BeginTime < 0 {
		c.fail("begin_time", "not negative", 0)
	}
	validateNotifyID(&c, r.NotifyID, zone)
	return c.result()
}

func validateNotifyID(c *check, id string, zone bool) {
	if !zone && id != "" {
		c.fail("notify_id", "only for zone apps", 0)
	}
	c.maxBytes("notify_id", id, maxNotifyIDBytes)
}

func validateRule(r *Rule, zone bool) error {
	var c check
	c.ruleName(r.Name)
	var words []string
	var codes []int
	if r.Keyword != nil {
		words = r.Keyword.WordList
		c.words(words, false)
	}
	if r.Semantics != nil {
		codes = r.Semantics.SemanticsList
		c.semantics(codes)
	}
	if len(words) == 0 && len(codes) == 0 {
		c.fail("keyword", "at least one of keyword.word_list and semantics.semantics_list", 0)
	}
	if a := r.ApplicableRange; a != nil {
		var targets, chatTypes []int
		if a.TargetType != nil {
			targets = a.TargetType.TypeList
		}
		if a.ChatType != nil {
			chatTypes = a.ChatType.TypeList
		}
		n := func(l *IDList) int {
			if l == nil {
				return 0
			}
			return len(l.IDList)
		}
		var depts, mobiles int
		if a.Department != nil {
			depts = len(a.Department.IDList)
		}
		if a.ExcludeMobile != nil {
			mobiles = len(a.ExcludeMobile.MobileList)
		}
		c.rangeLists(zone, targets, chatTypes, depts, n(a.User), n(a.ExternalContact), n(a.Chat), mobiles)
	}
	return c.result()
}

func validateUpdate(u *RuleUpdate, zone bool) error {
	var c check
	if u.RuleID == "" {
		c.fail("rule_id", "required", 0)
	}
	if u.Name != "" {
		c.ruleName(u.Name)
	}
	// A set list may be empty: that clears it. Whether the rule keeps a
	// word or a code is WeCom's to judge; it knows the stored rule.
	if u.Words.set {
		c.words(u.Words.items, true)
	}
	if u.Semantics.set {
		c.semantics(u.Semantics.items)
	}
	c.rangeLists(zone, u.TargetTypes.items, u.ChatTypes.items, len(u.Departments.items),
		len(u.Users.items), len(u.ExternalContacts.items), len(u.Chats.items), len(u.ExcludeMobiles.items))
	return c.result()
}

func validateRuleID(id string) error {
	if id == "" {
		return &ValidationError{Field: "rule_id", Rule: "required"}
	}
	return nil
}

func validateRuleList(cursor string, limit int) error {
	var c check
	c.maxBytes("cursor", cursor, maxCursorBytes)
	if limit < 0 {
		c.fail("limit", "not negative", 0)
	}
	return c.result()
}

func validateSearch(r *SearchRequest, zone bool) error {
	var c check
	if utf8.RuneCountInString(r.QueryWord) < minQueryWordChars {
		c.fail("query_word", fmt.Sprintf("at least %d characters", minQueryWordChars), minQueryWordChars)
	}
	if ci := r.ChatInfo; ci != nil {
		if ci.ChatType == chatTypeSingle && len(ci.IDList) != singleChatIDs {
			c.fail("chat_info.id_list", fmt.Sprintf("exactly %d entries for a single chat", singleChatIDs), singleChatIDs)
		}
		if !zone {
			if len(ci.MsgTypeList) > 0 {
				c.fail("chat_info.msg_type_list", "only for zone apps", 0)
			}
			if ci.Sender != nil || len(ci.SenderList) > 0 {
				c.fail("chat_info.sender_list", "only for zone apps", 0)
			}
		}
		c.maxLen("chat_info.sender_list", len(ci.SenderList), maxSenderList)
	}
	if !zone && r.SkipStopWords {
		c.fail("skip_stop_words", "only for zone apps", 0)
	}
	if r.StartTime < 0 {
		c.fail("start_time", "not negative", 0)
	}
	if r.EndTime != 0 {
		days := archiveSearchDays
		if zone {
			days = zoneSearchDays
		}
		switch {
		case r.StartTime == 0:
			c.fail("end_time", "requires start_time", 0)
		case r.EndTime <= r.StartTime:
			c.fail("end_time", "after start_time", 0)
		case r.EndTime-r.StartTime > int64(days)*secondsPerDay:
			c.fail("end_time", fmt.Sprintf("at most %d days after start_time", days), days)
		}
	}
	c.limit("limit", r.Limit, maxSearchLimit)
	c.maxBytes("cursor", r.Cursor, maxCursorBytes)
	return c.result()
}
