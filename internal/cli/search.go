package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// searchCommand finds archived messages by a word (search_msg) and pages
// through every result. Like rules it connects to a running receiver's
// NATS for the shared tokens.
type searchCommand struct {
	env Env
}

const searchHelp = `Finds the messages whose text contains QUERY (at least 2 characters) and
prints their msgids, every page of them: the table prints one msgid per line
(and "N messages" on stderr); -o json prints JSON lines, {"msgid":"…"} each.
Flags may come before or after QUERY; put "--" before a QUERY starting with "-".

Without -from and -to WeCom searches the last 30 days (31 for zone apps);
-from and -to take RFC 3339 (2026-11-20T08:00:00+08:00) or a duration ago
(6h), and may be at most 30 (31) days apart. A chat is either a group
(-chat ID) or a single chat between two parties (-between ID1,ID2: an id
starting with "wm" is an external_userid, any other an open_userid).
-sender and -types work for zone apps only.

Exit status: 0 done, 1 WeCom or connection error, 2 usage or validation
error (nothing was sent to WeCom).
`

func (c *searchCommand) Run(ctx context.Context, args []string) error {
	fs := c.env.FlagSet("search", "search QUERY [flags]", searchHelp)
	af := addAppFlags(fs, c.env)
	chatType := fs.String("chat-type", "", "`type` of chat: single or group")
	chat := fs.String("chat", "", "group chat `id` (implies -chat-type group)")
	var between, senders, types listFlag
	fs.Var(&between, "between", "the single chat between `ID1,ID2` (implies -chat-type single)")
	fs.Var(&senders, "sender", "sent by these employees: comma-separated `ids` (open_userid), at most 100 (zone apps)")
	fs.Var(&types, "types", "message `types`, comma-separated codes or names: text, link, mini_program, file, doc, mixed, wedrive_file (zone apps)")
	from := fs.String("from", "", "sent at or after `time`: RFC 3339 or a duration ago (6h)")
	to := fs.String("to", "", "sent at or before `time`: RFC 3339 or a duration ago; needs -from")
	limit := fs.Int("limit", 0, "page `size`, at most 100 (0: WeCom's default, 50); every page is read")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one QUERY, got %q (quote a query with spaces)", ErrUsage, pos)
	}
	req := wecom.SearchRequest{QueryWord: pos[0], Limit: *limit}
	now := time.Now()
	for _, t := range []struct {
		flag, arg string
		dst       *int64
	}{{"-from", *from, &req.StartTime}, {"-to", *to, &req.EndTime}} {
		if t.arg == "" {
			continue
		}
		at, err := parseSince(t.arg, now)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUsage, t.flag, err)
		}
		*t.dst = at.Unix()
	}
	if req.ChatInfo, err = chatInfo(*chatType, *chat, between, senders, types); err != nil {
		return err
	}

	client, corp, done, err := af.connect(ctx, c.env, "wecom-receiver-search")
	if err != nil {
		return err
	}
	defer done()
	out := format.NewJSONLines(c.env.Stdout)
	n := 0
	for hit, err := range client.SearchMsg(ctx, corp, req) {
		if err != nil {
			if n > 0 {
				return fmt.Errorf("after %d messages: %w", n, callError(err))
			}
			return callError(err)
		}
		n++
		if af.out == JSON {
			err = out.Write(hit)
		} else {
			_, err = fmt.Fprintln(c.env.Stdout, hit.MsgID)
		}
		if err != nil {
			return err
		}
	}
	if af.out == Table {
		// A note for people, not a result: stdout stays msgids only.
		_, _ = fmt.Fprintf(c.env.Stderr, "%d %s\n", n, format.Plural(n, "message", "messages"))
	}
	return nil
}

// chatInfo builds chat_info from the filter flags, nil without any. The
// client checks the rest (two ids for a single chat, zone-only filters),
// naming the field.
func chatInfo(chatType, chat string, between, senders, types listFlag) (*wecom.ChatInfo, error) {
	ci := &wecom.ChatInfo{}
	switch chatType {
	case "":
	case "single", "1":
		ci.ChatType = 1
	case "group", "2":
		ci.ChatType = 2
	default:
		return nil, fmt.Errorf("%w: -chat-type: %q: want single or group", ErrUsage, chatType)
	}
	if chat != "" {
		if ci.ChatType == 1 {
			return nil, fmt.Errorf("%w: -chat is a group chat, -chat-type says single", ErrUsage)
		}
		ci.ChatType, ci.ChatID = 2, chat
	}
	if between.set {
		if ci.ChatType == 2 {
			return nil, fmt.Errorf("%w: -between is a single chat, not a group (-chat or -chat-type group)", ErrUsage)
		}
		ci.ChatType = 1
		for _, id := range between.items {
			ci.IDList = append(ci.IDList, partyID(id))
		}
	}
	if ci.ChatType == 2 && ci.ChatID == "" {
		return nil, fmt.Errorf("%w: -chat-type group needs -chat ID", ErrUsage)
	}
	for _, id := range senders.items {
		if strings.HasPrefix(id, "wm") {
			return nil, fmt.Errorf("%w: -sender: %q is an external_userid; senders are employees (open_userid)", ErrUsage, id)
		}
	}
	switch len(senders.items) {
	case 0:
	case 1:
		ci.Sender = &wecom.IDInfo{OpenUserID: senders.items[0]}
	default:
		for _, id := range senders.items {
			ci.SenderList = append(ci.SenderList, wecom.IDInfo{OpenUserID: id})
		}
	}
	for _, t := range types.items {
		code, err := strconv.Atoi(t)
		if err != nil {
			if code = msgTypeCode(t); code == 0 {
				return nil, fmt.Errorf("%w: -types: unknown message type %q", ErrUsage, t)
			}
		}
		ci.MsgTypeList = append(ci.MsgTypeList, code)
	}
	if ci.ChatType == 0 && ci.Sender == nil && ci.SenderList == nil && ci.MsgTypeList == nil {
		return nil, nil
	}
	return ci, nil
}

// partyID names a party by the form of its id: WeCom's external_userids
// start with "wm"; the rest are taken as open_userids.
func partyID(id string) wecom.IDInfo {
	if strings.HasPrefix(id, "wm") {
		return wecom.IDInfo{ExternalUserID: id}
	}
	return wecom.IDInfo{OpenUserID: id}
}

// msgTypeCode is the code MsgTypeName gives name, or 0. The codes are
// sparse and small; 100 is well past the highest WeCom uses.
func msgTypeCode(name string) int {
	name = strings.ReplaceAll(strings.ToLower(name), "-", "_")
	if name == wecomhit.Unknown {
		return 0
	}
	for code := 1; code < 100; code++ {
		if wecomhit.MsgTypeName(code) == name {
			return code
		}
	}
	return 0
}
