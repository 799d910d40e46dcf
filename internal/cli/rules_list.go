package cli

import (
	"context"

	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

func (c *rulesCommand) list(ctx context.Context, args []string) error {
	fs, af := c.flagSet("list", "list [flags]",
		"Lists every rule of the corp, page after page. The table shows RULE_ID,\n"+
			"NAME and CREATED in local time; -o json prints JSON lines, one object\n"+
			"per rule as WeCom gives it: {\"rule_id\",\"name\",\"create_time\"} (unix s).\n")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	client, corp, done, err := af.connect(ctx, c.env, "wecom-receiver-rules")
	if err != nil {
		return err
	}
	defer done()
	rules := client.ListRules(ctx, corp, 0)
	if af.out == JSON {
		out := format.NewJSONLines(c.env.Stdout)
		for r, err := range rules {
			if err != nil {
				return callError(err)
			}
			if err := out.Write(r); err != nil {
				return err
			}
		}
		return nil
	}
	// A table lines up only once it has every row: collect, then print,
	// so a failure half-way prints the error and no partial table.
	var all []wecom.RuleSummary
	for r, err := range rules {
		if err != nil {
			return callError(err)
		}
		all = append(all, r)
	}
	var tb format.Table
	tb.Add("RULE_ID", "NAME", "CREATED")
	for _, r := range all {
		tb.Add(r.RuleID, r.Name, localTime(r.CreateTime))
	}
	return tb.Write(c.env.Stdout)
}
