package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli/format"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// rulesCommand manages an app's keyword rules in WeCom: rules list, get,
// create, update and delete. Like backfill it connects to a running
// receiver's NATS, so its calls use the access tokens the receivers share
// (an archive app cannot get one without the suite_ticket they store).
type rulesCommand struct {
	env Env
}

const rulesUsage = `Usage: receiver rules COMMAND [flags]

Manage an app's keyword rules in WeCom, through a running receiver's NATS
(nats.url, or nats.listen of the embedded server), whose tokens it shares.

Commands:
  list                 the corp's rules: RULE_ID, NAME, CREATED (local time)
  get RULE_ID          one rule: name, words, semantics, applicable range
  create -name NAME [-words W,...] [-semantics S,...] [-range FILE]
  update RULE_ID [-name NAME] [-words W,...] [-semantics S,...] [-range FILE] [-clear LIST,...]
  delete RULE_ID

Every command takes -config FILE, -app NAME (required when the
configuration has several apps), -corp ID (required when the app has several
corps) and -o table|json. Flags may come before or after RULE_ID.
Run "receiver rules COMMAND -h" for a command's flags.

Exit status: 0 done, 1 WeCom or connection error, 2 usage or validation
error (nothing was sent to WeCom).
`

func (c *rulesCommand) Run(ctx context.Context, args []string) error {
	return runVerb(ctx, c.env, "rules", rulesUsage, []verb{
		{"list", c.list}, {"get", c.get}, {"create", c.create}, {"update", c.update}, {"delete", c.delete},
	}, args)
}

// flagSet starts a subcommand's flags with the common ones; synopsis and
// help head its -h text.
func (c *rulesCommand) flagSet(sub, synopsis, help string) (*flag.FlagSet, *appFlags) {
	fs := c.env.FlagSet("rules "+sub, "rules "+synopsis, help)
	return fs, addAppFlags(fs, c.env)
}

// done reports a change to one rule: {"rule_id"} for scripts, a sentence
// for people.
func (c *rulesCommand) done(af *appFlags, id, verb string) error {
	if af.out == JSON {
		return format.NewJSONLines(c.env.Stdout).Write(wecom.RuleSummary{RuleID: id})
	}
	_, err := fmt.Fprintf(c.env.Stdout, "%s rule %s\n", verb, id)
	return err
}

// ruleFlags are the rule fields create and update share.
type ruleFlags struct {
	words, semantics listFlag
	rangeFile        *string
}

func addRuleFlags(fs *flag.FlagSet) *ruleFlags {
	rf := &ruleFlags{}
	fs.Var(&rf.words, "words", "comma-separated `words`, 1 to 20 of 1 to 32 characters")
	fs.Var(&rf.semantics, "semantics", "comma-separated key behaviours (`codes` 1-12, or names: "+semanticNames()+")")
	rf.rangeFile = fs.String("range", "", "JSON `file` holding the applicable_range: the applicable_range member of \"rules get -o json\"")
	return rf
}

// semanticCodes reads -semantics. Numbers pass as they are, so the client's
// validation names an out-of-range code by its place in the list.
func (rf *ruleFlags) semanticCodes() ([]int, error) {
	codes := make([]int, 0, len(rf.semantics.items))
	for _, s := range rf.semantics.items {
		if n, err := strconv.Atoi(s); err == nil {
			codes = append(codes, n)
			continue
		}
		n := semanticCode(s)
		if n == 0 {
			return nil, fmt.Errorf("%w: -semantics: unknown key behaviour %q (want a code 1-12 or one of %s)",
				ErrUsage, s, semanticNames())
		}
		codes = append(codes, n)
	}
	return codes, nil
}

// applicableRange reads -range: nil without the flag. Unknown members are
// refused, so a misspelt one is not silently left out of the request.
func (rf *ruleFlags) applicableRange() (*wecom.ApplicableRange, error) {
	if *rf.rangeFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(*rf.rangeFile)
	if err != nil {
		return nil, fmt.Errorf("%w: -range: %w", ErrUsage, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var a wecom.ApplicableRange
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: -range %s: not an applicable_range: %w", ErrUsage, *rf.rangeFile, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: -range %s: more than one JSON document", ErrUsage, *rf.rangeFile)
	}
	return &a, nil
}

// semanticCode is the code SemanticName gives name (case and - or _ alike),
// or 0.
func semanticCode(name string) int {
	name = strings.ReplaceAll(strings.ToLower(name), "-", "_")
	for code := 1; wecomhit.SemanticName(code) != wecomhit.Unknown; code++ {
		if wecomhit.SemanticName(code) == name {
			return code
		}
	}
	return 0
}

func semanticNames() string {
	var names []string
	for code := 1; wecomhit.SemanticName(code) != wecomhit.Unknown; code++ {
		names = append(names, wecomhit.SemanticName(code))
	}
	return strings.Join(names, ",")
}

// semanticsText shows codes with their names: "2 mobile, 3 email".
func semanticsText(codes []int) string {
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = strconv.Itoa(c) + " " + wecomhit.SemanticName(c)
	}
	return strings.Join(parts, ", ")
}
