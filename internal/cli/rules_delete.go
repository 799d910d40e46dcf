package cli

import (
	"context"
)

func (c *rulesCommand) delete(ctx context.Context, args []string) error {
	fs, af := c.flagSet("delete", "delete RULE_ID [flags]", "Deletes a rule. -o json prints {\"rule_id\"}.\n")
	id, err := parseRuleID(fs, args)
	if err != nil {
		return err
	}
	client, corp, done, err := af.connect(ctx, c.env, "wecom-receiver-rules")
	if err != nil {
		return err
	}
	defer done()
	if err := client.DeleteRule(ctx, corp, id); err != nil {
		return callError(err)
	}
	return c.done(af, id, "deleted")
}
