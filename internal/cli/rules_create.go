package cli

import (
	"context"
	"fmt"

	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

func (c *rulesCommand) create(ctx context.Context, args []string) error {
	fs, af := c.flagSet("create", "create -name NAME [-words W,...] [-semantics S,...] [-range FILE] [flags]",
		"Creates a rule and prints its id (-o json: {\"rule_id\",\"name\"}). It needs\n"+
			"words, semantics or both. Lists are comma-separated; a flag may be\n"+
			"repeated to add to its list.\n")
	name := fs.String("name", "", "rule `name`, 1 to 20 characters")
	rf := addRuleFlags(fs)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	r := wecom.Rule{Name: *name}
	if rf.words.set {
		r.Keyword = &wecom.Keyword{WordList: rf.words.items}
	}
	codes, err := rf.semanticCodes()
	if err != nil {
		return err
	}
	if rf.semantics.set {
		r.Semantics = &wecom.Semantics{SemanticsList: codes}
	}
	if r.ApplicableRange, err = rf.applicableRange(); err != nil {
		return err
	}
	client, corp, done, err := af.connect(ctx, c.env, "wecom-receiver-rules")
	if err != nil {
		return err
	}
	defer done()
	id, err := client.CreateRule(ctx, corp, r)
	if err != nil {
		return callError(err)
	}
	if af.out == JSON {
		return format.NewJSONLines(c.env.Stdout).Write(wecom.RuleSummary{RuleID: id, Name: r.Name})
	}
	_, err = fmt.Fprintf(c.env.Stdout, "created rule %s %q\n", id, r.Name)
	return err
}
