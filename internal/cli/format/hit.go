package format

import (
	"fmt"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit"
)

// Hit renders an event on one line for people:
// time, corp, rule, key behaviours and keyword, sender → receivers.
func Hit(ev *wecomhit.HitEvent, loc *time.Location) string {
	var b strings.Builder
	when := ev.FetchedAt
	if ev.Message != nil && ev.Message.SendTime > 0 {
		when = time.Unix(ev.Message.SendTime, 0)
	}
	b.WriteString(when.In(loc).Format("2006-01-02 15:04:05"))
	b.WriteString("  ")
	b.WriteString(ev.CorpID)
	b.WriteString("  ")
	name := ev.RuleName
	if name == "" {
		name = "rule " + short(ev.RuleID, 10)
	}
	b.WriteString(name)
	var what []string
	if ev.HasHitKeyword {
		what = append(what, "keyword")
	}
	for _, s := range ev.Semantics {
		what = append(what, s.Name)
	}
	if len(what) > 0 {
		b.WriteString(" [" + strings.Join(what, ",") + "]")
	}
	if m := ev.Message; m != nil {
		fmt.Fprintf(&b, "  %s %s →", m.MsgTypeName, party(m.Sender))
		if m.ChatID != "" {
			b.WriteString(" group " + short(m.ChatID, 12))
		} else {
			for i, r := range m.Receivers {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(" " + party(r))
			}
		}
	}
	return b.String()
}

func party(p wecomhit.NamedParty) string {
	return p.TypeName + ":" + short(p.ID, 12)
}

// short keeps ids readable in a terminal line.
func short(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
