package wecomsim

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const searchPath = "/cgi-bin/chatdata/search_msg"

func TestSim_SearchMsg(t *testing.T) {
	s := newTestSim(t, nil)
	tok := corpToken(t, s)
	pop, err := s.Population(testCorp)
	require.NoError(t, err)
	var group string
	for id := range pop.Groups {
		group = id
	}
	emp, cust := Party{PartyEmployee, pop.Employees[0]}, Party{PartyCustomer, pop.Customers[0]}
	send := func(m Message) string {
		got, err := s.SendMessage(testCorp, m)
		require.NoError(t, err)
		return got.MsgID
	}
	a := send(Message{Sender: emp, Receivers: []Party{cust}, Text: "发货时间是什么时候"})
	b := send(Message{Sender: cust, Receivers: []Party{emp}, MsgType: MsgFile, Text: "发货单.pdf"})
	c := send(Message{Sender: emp, ChatID: group, Receivers: pop.Groups[group][1:], Text: "群里说发货"})
	send(Message{Sender: emp, Receivers: []Party{cust}, MsgType: MsgCard, Text: "发货"}) // cards are not searchable
	send(Message{Sender: emp, Receivers: []Party{cust}, Text: "unrelated"})

	search := func(body obj) ([]string, obj) {
		o := api(t, s, searchPath, tok, body)
		var ids []string
		if l, ok := o["msg_list"].([]any); ok {
			for _, m := range l {
				ids = append(ids, m.(obj)["msgid"].(string))
			}
		}
		return ids, o
	}
	ids, _ := search(obj{"query_word": "发货"})
	assert.Equal(t, []string{a, b, c}, ids)

	ids, _ = search(obj{"query_word": "发货", "chat_info": obj{"chat_type": 1,
		"id_list": []obj{{"external_userid": cust.ID}, {"open_userid": emp.ID}}}})
	assert.Equal(t, []string{a, b}, ids)
	ids, _ = search(obj{"query_word": "发货", "chat_info": obj{"chat_type": 2, "chat_id": group}})
	assert.Equal(t, []string{c}, ids)

	// Paging.
	ids, o := search(obj{"query_word": "发货", "limit": 2})
	assert.Equal(t, []string{a, b}, ids)
	assert.EqualValues(t, 1, o["has_more"])
	ids, o = search(obj{"query_word": "发货", "limit": 2, "cursor": o["next_cursor"]})
	assert.Equal(t, []string{c}, ids)
	assert.EqualValues(t, 0, o["has_more"])

	now := s.Now().Unix()
	for name, body := range map[string]obj{
		"ErrQueryWordShort":  {"query_word": "发"},
		"ErrLimit101":        {"query_word": "发货", "limit": 101},
		"ErrEndWithoutStart": {"query_word": "发货", "end_time": now},
		"ErrStartAfterEnd":   {"query_word": "发货", "start_time": now, "end_time": now - 1},
		"ErrWindow31Days":    {"query_word": "发货", "start_time": now - 31*86400, "end_time": now},
		"ErrIDListOne":       {"query_word": "发货", "chat_info": obj{"chat_type": 1, "id_list": []obj{{"open_userid": emp.ID}}}},
		"ErrGroupNoChatID":   {"query_word": "发货", "chat_info": obj{"chat_type": 2}},
		"ErrChatType3":       {"query_word": "发货", "chat_info": obj{"chat_type": 3}},
		"ErrCursor":          {"query_word": "发货", "cursor": "xyz"},
	} {
		_, o := search(body)
		assert.Equal(t, 40058, errcode(o), name)
	}
	_, o = search(obj{"query_word": "发货", "start_time": now - 30*86400, "end_time": now})
	assert.Equal(t, 0, errcode(o))

	// Messages leave the default window after 30 days.
	s.Advance(30*24*time.Hour + time.Second)
	ids, _ = search(obj{"query_word": "发货"})
	assert.Empty(t, ids)
}

func TestSim_SearchMsg_Zone(t *testing.T) {
	s := newTestSim(t, nil)
	tok := zoneToken(t, s)
	pop, err := s.Population(testZone)
	require.NoError(t, err)
	e1, e2 := pop.Employees[0], pop.Employees[1]
	m1, _ := s.SendMessage(testZone, Message{Sender: Party{PartyEmployee, e1}, Text: "合同条款"})
	_, _ = s.SendMessage(testZone, Message{Sender: Party{PartyEmployee, e2}, MsgType: MsgFile, Text: "合同.pdf"})
	now := s.Now().Unix()

	run := func(req string) obj {
		o := syncCall(t, s, tok, "invoke_search_msg", req)
		require.Equal(t, 0, errcode(o), o)
		return decodeResponse(t, o, false)
	}
	o := run(`{"query_word":"合同","start_time":` + itoa(now-31*86400) + `,"end_time":` + itoa(now) + `}`)
	assert.Equal(t, 0, errcode(o), "zone allows 31 days: %v", o)
	assert.Len(t, o["msg_list"], 2)
	o = run(`{"query_word":"合同","chat_info":{"sender_list":[{"open_userid":"` + e1 + `"}]}}`)
	assert.Equal(t, []any{obj{"msgid": m1.MsgID}}, o["msg_list"])
	o = run(`{"query_word":"合同","chat_info":{"msg_type_list":[8]}}`)
	assert.Len(t, o["msg_list"], 1)
	assert.Equal(t, 40058, errcode(run(`{"query_word":"合同","chat_info":{"msg_type_list":[9]}}`)))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
