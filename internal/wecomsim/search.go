package wecomsim

import (
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of search_msg (protocol §5).
const (
	searchWindow     = 30 * 24 * time.Hour
	searchWindowZone = 31 * 24 * time.Hour
	searchDefault    = 50
	searchMax        = 100
	maxSenderList    = 100
)

type idInfo struct {
	OpenUserID     string `json:"open_userid,omitempty"`
	ExternalUserID string `json:"external_userid,omitempty"`
}

// id is the party an IdInfo names; open_userid wins when both are set.
func (i idInfo) id() string {
	if i.OpenUserID != "" {
		return i.OpenUserID
	}
	return i.ExternalUserID
}

// searchMsg finds messages whose searchable text contains query_word
// (case-insensitive), oldest first. The zone-only filters (msg_type_list,
// sender, sender_list, skip_stop_words) are honoured for zone calls and
// ignored on HTTPS, where WeCom does not know them.
func (s *Sim) searchMsg(cl *call) any {
	var req struct {
		QueryWord     string          `json:"query_word"`
		ChatInfo      *searchChatInfo `json:"chat_info"`
		StartTime     int64           `json:"start_time"`
		EndTime       int64           `json:"end_time"`
		SkipStopWords *bool           `json:"skip_stop_words"`
		Limit         int             `json:"limit"`
		Cursor        string          `json:"cursor"`
	}
	if e := s.decodeLocked(cl, &req); e != nil {
		return e
	}
	if utf8.RuneCountInString(strings.TrimSpace(req.QueryWord)) < 2 {
		return s.invalidLocked("query_word must have at least 2 characters")
	}
	limit, e := s.limitLocked(req.Limit, searchDefault, searchMax)
	if e != nil {
		return e
	}
	start, end, e := s.searchRangeLocked(cl, req.StartTime, req.EndTime)
	if e != nil {
		return e
	}
	match := func(*Message) bool { return true }
	if req.ChatInfo != nil {
		if match, e = s.chatMatcherLocked(cl, req.ChatInfo); e != nil {
			return e
		}
	}
	after, e := s.cursorLocked(cl.corp.id, cursorSearch, req.Cursor)
	if e != nil {
		return e
	}
	type item struct {
		MsgID string `json:"msgid"`
	}
	resp := struct {
		apiError
		HasMore    int    `json:"has_more"`
		NextCursor string `json:"next_cursor"`
		MsgList    []item `json:"msg_list"`
	}{apiError: okBody, NextCursor: req.Cursor, MsgList: []item{}}
	word := strings.ToLower(req.QueryWord)
	msgs := cl.corp.messages
	for _, m := range msgs[sort.Search(len(msgs), func(i int) bool { return msgs[i].seq > after }):] {
		if m.SendTime < start || m.SendTime > end || !searchable[m.MsgType] ||
			!strings.Contains(strings.ToLower(m.Text), word) || !match(m) {
			continue
		}
		if len(resp.MsgList) == limit {
			resp.HasMore = 1
			break
		}
		resp.MsgList = append(resp.MsgList, item{m.MsgID})
		resp.NextCursor = s.makeCursor(cl.corp.id, cursorSearch, m.seq)
	}
	return resp
}

// searchChatInfo is search_msg's chat_info: which chat to search, and on
// the zone also which message types and senders.
type searchChatInfo struct {
	ChatType    int      `json:"chat_type"`
	IDList      []idInfo `json:"id_list"`
	ChatID      string   `json:"chat_id"`
	MsgTypeList []int    `json:"msg_type_list"`
	Sender      *idInfo  `json:"sender"`
	SenderList  []idInfo `json:"sender_list"`
}

// searchRangeLocked is the time range a search covers, in Unix seconds:
// the whole window when neither end is given, up to now when only the
// start is. The zone's window is a day longer than HTTPS's.
func (s *Sim) searchRangeLocked(cl *call, start, end int64) (int64, int64, any) {
	window := searchWindow
	if cl.zone {
		window = searchWindowZone
	}
	switch {
	case start == 0 && end == 0:
		start, end = s.now.Add(-window).Unix(), s.now.Unix()
	case start == 0:
		return 0, 0, s.invalidLocked("end_time requires start_time")
	case end == 0:
		end = s.now.Unix()
	}
	if start < 0 || start >= end {
		return 0, 0, s.invalidLocked("start_time must be before end_time")
	}
	if time.Duration(end-start)*time.Second > window {
		return 0, 0, s.invalidLocked("time range longer than %d days", int(window/(24*time.Hour)))
	}
	return start, end, nil
}

// chatMatcherLocked checks ci and returns the test a message must pass to
// be in the chat it names, and on the zone to have one of its types and
// senders. Every field is checked before any message is read, so a bad
// chat_info fails even when nothing would match.
func (s *Sim) chatMatcherLocked(cl *call, ci *searchChatInfo) (func(*Message) bool, any) {
	var senders []string
	var types []int
	if cl.zone {
		var e any
		if senders, e = s.zoneSendersLocked(ci); e != nil {
			return nil, e
		}
		types = ci.MsgTypeList
	}
	var pair []string
	switch ci.ChatType {
	case 0:
	case 1:
		if len(ci.IDList) != 2 || ci.IDList[0].id() == "" || ci.IDList[1].id() == "" {
			return nil, s.invalidLocked("chat_info.id_list must name exactly 2 parties for a single chat")
		}
		pair = []string{ci.IDList[0].id(), ci.IDList[1].id()}
	case 2:
		if ci.ChatID == "" {
			return nil, s.invalidLocked("chat_info.chat_id required for a group chat")
		}
	default:
		return nil, s.invalidLocked("chat_info.chat_type must be 1 or 2")
	}
	chatType, chatID := ci.ChatType, ci.ChatID
	return func(m *Message) bool {
		switch chatType {
		case 1:
			// A single chat is the pair in either direction, and
			// nobody else.
			if m.ChatID != "" || len(m.Receivers) != 1 {
				return false
			}
			a, b := m.Sender.ID, m.Receivers[0].ID
			if !(a == pair[0] && b == pair[1] || a == pair[1] && b == pair[0]) {
				return false
			}
		case 2:
			if m.ChatID != chatID {
				return false
			}
		}
		if len(types) > 0 && !slices.Contains(types, m.MsgType) {
			return false
		}
		return len(senders) == 0 || slices.Contains(senders, m.Sender.ID)
	}, nil
}

// zoneSendersLocked checks the zone-only filters of ci and returns the
// senders a message must come from (none: anyone). sender_list wins over
// sender, and both name employees only.
func (s *Sim) zoneSendersLocked(ci *searchChatInfo) ([]string, any) {
	for _, t := range ci.MsgTypeList {
		if !searchable[t] {
			return nil, s.invalidLocked("chat_info.msg_type_list: %d is not searchable", t)
		}
	}
	if len(ci.SenderList) > maxSenderList {
		return nil, s.invalidLocked("chat_info.sender_list has more than %d items", maxSenderList)
	}
	list := ci.SenderList
	if len(list) == 0 && ci.Sender != nil {
		list = []idInfo{*ci.Sender}
	}
	var senders []string
	for _, p := range list {
		if p.OpenUserID == "" {
			return nil, s.invalidLocked("chat_info.sender: employees (open_userid) only")
		}
		senders = append(senders, p.OpenUserID)
	}
	return senders, nil
}
