package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

func (c *rulesCommand) get(ctx context.Context, args []string) error {
	fs, af := c.flagSet("get", "get RULE_ID [flags]",
		"Shows a rule. -o json prints it as WeCom gives it (get_rule_detail):\n"+
			"{\"rule_id\",\"name\",\"keyword\",\"semantics\",\"applicable_range\"}; its\n"+
			"applicable_range is what create and update take with -range FILE.\n")
	id, err := parseRuleID(fs, args)
	if err != nil {
		return err
	}
	client, corp, done, err := af.connect(ctx, c.env, "wecom-receiver-rules")
	if err != nil {
		return err
	}
	defer done()
	r, err := client.GetRule(ctx, corp, id)
	if err != nil {
		return callError(err)
	}
	if af.out == JSON {
		return format.NewJSONLines(c.env.Stdout).Write(r)
	}
	var words []string
	var codes []int
	if r.Keyword != nil {
		words = r.Keyword.WordList
	}
	if r.Semantics != nil {
		codes = r.Semantics.SemanticsList
	}
	var tb format.Table
	tb.Add("RULE_ID", r.RuleID)
	tb.Add("NAME", r.Name)
	tb.Add("WORDS", orDash(strings.Join(words, ", ")))
	tb.Add("SEMANTICS", orDash(semanticsText(codes)))
	tb.Add("RANGE", rangeSummary(r.ApplicableRange))
	return tb.Write(c.env.Stdout)
}

// rangeSummary describes an applicable_range in one line; the full lists
// are in -o json. Empty members mean the same as absent ones.
func rangeSummary(a *wecom.ApplicableRange) string {
	const everywhere = "all employees and customers, all chats"
	if a == nil {
		return everywhere
	}
	var parts []string
	types := func(label string, l *wecom.TypeList, names ...string) {
		if l == nil || len(l.TypeList) == 0 {
			return
		}
		s := make([]string, len(l.TypeList))
		for i, t := range l.TypeList {
			s[i] = strconv.Itoa(t)
			if t >= 1 && t <= len(names) {
				s[i] = names[t-1]
			}
		}
		parts = append(parts, label+": "+strings.Join(s, ","))
	}
	ids := func(label string, l []string) {
		if len(l) == 0 {
			return
		}
		const shown = 3
		s := strings.Join(l[:min(len(l), shown)], ",")
		if len(l) > shown {
			s += ",…"
		}
		parts = append(parts, fmt.Sprintf("%s: %d (%s)", label, len(l), s))
	}
	types("targets", a.TargetType, "employee", "customer")
	types("chat types", a.ChatType, "single", "group")
	if a.Department != nil {
		d := make([]string, len(a.Department.IDList))
		for i, id := range a.Department.IDList {
			d[i] = strconv.FormatInt(id, 10)
		}
		ids("departments", d)
	}
	if a.User != nil {
		ids("users", a.User.IDList)
	}
	if a.ExternalContact != nil {
		ids("external contacts", a.ExternalContact.IDList)
	}
	if a.Chat != nil {
		ids("chats", a.Chat.IDList)
	}
	if a.ExcludeMobile != nil {
		ids("excluded mobiles", a.ExcludeMobile.MobileList)
	}
	if len(parts) == 0 {
		return everywhere
	}
	return strings.Join(parts, "; ")
}

func localTime(unix int64) string {
	if unix == 0 {
		return "-"
	}
	return time.Unix(unix, 0).Local().Format("2006-01-02 15:04:05")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
