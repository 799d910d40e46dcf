package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/cli"
	"github.com/wecomhit/wecomhit/internal/config"
	"github.com/wecomhit/wecomhit/internal/corps"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// rulesCommand manages an app's keyword rules in WeCom: rules list, get,
// create, update and delete. Like backfill it connects to a running
// receiver's NATS, so its calls use the access tokens the receivers share
// (an archive app cannot get one without the suite_ticket they store).
type rulesCommand struct {
	env env
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
	fs := c.env.flagSet("rules "+sub, "rules "+synopsis, help)
	return fs, addAppFlags(fs, c.env)
}

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
	if af.out == outputJSON {
		out := newJSONLines(c.env.stdout)
		for r, err := range rules {
			if err != nil {
				return callError(err)
			}
			if err := out.write(r); err != nil {
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
	var tb table
	tb.add("RULE_ID", "NAME", "CREATED")
	for _, r := range all {
		tb.add(r.RuleID, r.Name, localTime(r.CreateTime))
	}
	return tb.write(c.env.stdout)
}

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
	if af.out == outputJSON {
		return newJSONLines(c.env.stdout).write(r)
	}
	var words []string
	var codes []int
	if r.Keyword != nil {
		words = r.Keyword.WordList
	}
	if r.Semantics != nil {
		codes = r.Semantics.SemanticsList
	}
	var tb table
	tb.add("RULE_ID", r.RuleID)
	tb.add("NAME", r.Name)
	tb.add("WORDS", orDash(strings.Join(words, ", ")))
	tb.add("SEMANTICS", orDash(semanticsText(codes)))
	tb.add("RANGE", rangeSummary(r.ApplicableRange))
	return tb.write(c.env.stdout)
}

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
	if af.out == outputJSON {
		return newJSONLines(c.env.stdout).write(wecom.RuleSummary{RuleID: id, Name: r.Name})
	}
	_, err = fmt.Fprintf(c.env.stdout, "created rule %s %q\n", id, r.Name)
	return err
}

// updateHelp is the contract of update's lists. An empty flag value is
// refused rather than taken as "clear": `-words "$WORDS"` with an unset
// variable must not wipe a rule's words, so clearing is always spelled
// -clear.
const updateHelp = `Changes what the flags name and leaves the rest of the rule as it is.

  - A list flag left out leaves that list unchanged.
  - A list flag given replaces the whole list: -words a,b sets exactly a and b.
  - -clear words,semantics,... empties the lists named. An empty value
    (-words "") is refused, so a blank variable never clears a list by
    accident; clearing is always written -clear.
  - -range FILE replaces each applicable_range member the file holds (a
    member holding [] clears it) and leaves the members it omits unchanged.

-clear takes: ` + clearableNames + `.
A list may not be both set and cleared. -o json prints {"rule_id"}.
`

func (c *rulesCommand) update(ctx context.Context, args []string) error {
	fs, af := c.flagSet("update", "update RULE_ID [-name NAME] [-words W,...] [-semantics S,...] [-range FILE] [-clear LIST,...] [flags]", updateHelp)
	name := fs.String("name", "", "new rule `name`, 1 to 20 characters; left out: unchanged")
	rf := addRuleFlags(fs)
	var clearLists listFlag
	fs.Var(&clearLists, "clear", "comma-separated `lists` to empty: "+clearableNames)
	id, err := parseRuleID(fs, args)
	if err != nil {
		return err
	}
	if setFlag(fs, "name") && *name == "" {
		return fmt.Errorf("%w: -name: empty; a rule's name cannot be cleared", errUsage)
	}
	u := wecom.RuleUpdate{RuleID: id, Name: *name}
	if rf.words.set {
		u.Words = wecom.Set(rf.words.items...)
	}
	codes, err := rf.semanticCodes()
	if err != nil {
		return err
	}
	if rf.semantics.set {
		u.Semantics = wecom.Set(codes...)
	}
	a, err := rf.applicableRange()
	if err != nil {
		return err
	}
	setRange(&u, a)
	for _, l := range clearLists.items {
		i := slices.IndexFunc(updateLists, func(x updateList) bool { return x.name == l })
		if i < 0 {
			return fmt.Errorf("%w: -clear: unknown list %q (want %s)", errUsage, l, clearableNames)
		}
		if !updateLists[i].isZero(&u) {
			return fmt.Errorf("%w: -clear %s: the list is also set by %s", errUsage, l, updateLists[i].setBy)
		}
		updateLists[i].clear(&u)
	}
	if u.Name == "" && !slices.ContainsFunc(updateLists, func(x updateList) bool { return !x.isZero(&u) }) {
		return fmt.Errorf("%w: nothing to update: give -name, a list flag, -range or -clear", errUsage)
	}
	client, corp, done, err := af.connect(ctx, c.env, "wecom-receiver-rules")
	if err != nil {
		return err
	}
	defer done()
	if err := client.UpdateRule(ctx, corp, u); err != nil {
		return callError(err)
	}
	return c.done(af, id, "updated")
}

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

// done reports a change to one rule: {"rule_id"} for scripts, a sentence
// for people.
func (c *rulesCommand) done(af *appFlags, id, verb string) error {
	if af.out == outputJSON {
		return newJSONLines(c.env.stdout).write(wecom.RuleSummary{RuleID: id})
	}
	_, err := fmt.Fprintf(c.env.stdout, "%s rule %s\n", verb, id)
	return err
}

// updateList is one list of a RuleUpdate, by its -clear name.
type updateList struct {
	name, setBy string
	isZero      func(*wecom.RuleUpdate) bool
	clear       func(*wecom.RuleUpdate)
}

const clearableNames = "words, semantics, target_types, chat_types, departments, users, external_contacts, chats, exclude_mobiles"

var updateLists = []updateList{
	{"words", "-words", func(u *wecom.RuleUpdate) bool { return u.Words.IsZero() }, func(u *wecom.RuleUpdate) { u.Words = wecom.Set[string]() }},
	{"semantics", "-semantics", func(u *wecom.RuleUpdate) bool { return u.Semantics.IsZero() }, func(u *wecom.RuleUpdate) { u.Semantics = wecom.Set[int]() }},
	{"target_types", "-range", func(u *wecom.RuleUpdate) bool { return u.TargetTypes.IsZero() }, func(u *wecom.RuleUpdate) { u.TargetTypes = wecom.Set[int]() }},
	{"chat_types", "-range", func(u *wecom.RuleUpdate) bool { return u.ChatTypes.IsZero() }, func(u *wecom.RuleUpdate) { u.ChatTypes = wecom.Set[int]() }},
	{"departments", "-range", func(u *wecom.RuleUpdate) bool { return u.Departments.IsZero() }, func(u *wecom.RuleUpdate) { u.Departments = wecom.Set[int64]() }},
	{"users", "-range", func(u *wecom.RuleUpdate) bool { return u.Users.IsZero() }, func(u *wecom.RuleUpdate) { u.Users = wecom.Set[string]() }},
	{"external_contacts", "-range", func(u *wecom.RuleUpdate) bool { return u.ExternalContacts.IsZero() }, func(u *wecom.RuleUpdate) { u.ExternalContacts = wecom.Set[string]() }},
	{"chats", "-range", func(u *wecom.RuleUpdate) bool { return u.Chats.IsZero() }, func(u *wecom.RuleUpdate) { u.Chats = wecom.Set[string]() }},
	{"exclude_mobiles", "-range", func(u *wecom.RuleUpdate) bool { return u.ExcludeMobiles.IsZero() }, func(u *wecom.RuleUpdate) { u.ExcludeMobiles = wecom.Set[string]() }},
}

// setRange sets the lists of u that a holds; a nil member stays unset.
func setRange(u *wecom.RuleUpdate, a *wecom.ApplicableRange) {
	if a == nil {
		return
	}
	if a.TargetType != nil {
		u.TargetTypes = wecom.Set(a.TargetType.TypeList...)
	}
	if a.ChatType != nil {
		u.ChatTypes = wecom.Set(a.ChatType.TypeList...)
	}
	if a.Department != nil {
		u.Departments = wecom.Set(a.Department.IDList...)
	}
	if a.User != nil {
		u.Users = wecom.Set(a.User.IDList...)
	}
	if a.ExternalContact != nil {
		u.ExternalContacts = wecom.Set(a.ExternalContact.IDList...)
	}
	if a.Chat != nil {
		u.Chats = wecom.Set(a.Chat.IDList...)
	}
	if a.ExcludeMobile != nil {
		u.ExcludeMobiles = wecom.Set(a.ExcludeMobile.MobileList...)
	}
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
				errUsage, s, semanticNames())
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
		return nil, fmt.Errorf("%w: -range: %w", errUsage, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var a wecom.ApplicableRange
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: -range %s: not an applicable_range: %w", errUsage, *rf.rangeFile, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: -range %s: more than one JSON document", errUsage, *rf.rangeFile)
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

// appFlags are the flags of every command that calls WeCom for an app.
type appFlags struct {
	config, app, corp, creds *string
	out                      outputFormat
}

func addAppFlags(fs *flag.FlagSet, e env) *appFlags {
	f := &appFlags{}
	f.config = configFlag(fs, e)
	f.creds = credsFlag(fs)
	f.app = fs.String("app", "", "app `name` (apps[].name); may be left out when the configuration has one app")
	f.corp = fs.String("corp", "", "corp `id`; may be left out when the app has one corp")
	cli.OutputVar(fs, &f.out)
	return f
}

// connect resolves the app and corp, then reaches the running receiver's
// NATS and builds the app's client on the shared token stores. done closes
// the connection.
func (f *appFlags) connect(ctx context.Context, e env, name string) (client *wecom.Client, corp string, done func(), err error) {
	if *f.config == "" {
		return nil, "", nil, fmt.Errorf("%w: -config FILE or RECEIVER_CONFIG is required", errUsage)
	}
	cfg, err := e.loadConfig(*f.config)
	if err != nil {
		return nil, "", nil, err
	}
	a, err := pickApp(cfg, *f.app)
	if err != nil {
		return nil, "", nil, err
	}
	log := e.cmdLog()
	b, err := dialNATS(ctx, cfg, name, log, withCreds(*f.creds))
	if err != nil {
		return nil, "", nil, err
	}
	view, err := openCorpView(ctx, cfg, b.JetStream(), false, log, nil)
	if err != nil {
		closeBroker(b)
		return nil, "", nil, fmt.Errorf("is the receiver running? %w", err)
	}
	done = func() { view.close(); closeBroker(b) }
	if corp, err = pickCorp(view.dir, a.Name, *f.corp); err != nil {
		done()
		return nil, "", nil, err
	}
	client, err = newClient(ctx, a, b.JetStream(), log, view.clientOptions(*a)...)
	if err != nil {
		done()
		return nil, "", nil, err
	}
	return client, corp, done, nil
}

func pickApp(cfg *config.Config, name string) (*config.App, error) {
	if name == "" {
		if len(cfg.Apps) == 1 {
			return &cfg.Apps[0], nil
		}
		return nil, fmt.Errorf("%w: -app NAME is required (have %v)", errUsage, cfg.AppNames())
	}
	a, ok := cfg.App(name)
	if !ok {
		return nil, fmt.Errorf("%w: -app %q is not configured (have %v)", errUsage, name, cfg.AppNames())
	}
	return a, nil
}

// pickCorp resolves -corp with the Directory; a corp it does not know is a
// usage error.
func pickCorp(dir *corps.Directory, app, corp string) (string, error) {
	id, err := dir.Resolve(app, corp)
	switch {
	case errors.Is(err, corps.ErrAmbiguous):
		return "", fmt.Errorf("%w: -corp ID is required: app %q has corps %v", errUsage, app, listed(dir.Corps(app)))
	case err != nil:
		return "", fmt.Errorf("%w: -corp %q is not a corp of app %q (have %v)", errUsage, corp, app, listed(dir.Corps(app)))
	}
	return id, nil
}

// listed shortens a list of corps for a message: with thousands, `receiver
// corps list` is the place to look.
func listed(ids []string) []string {
	const most = 10
	if len(ids) > most {
		return append(ids[:most:most], fmt.Sprintf("... %d more (receiver corps list)", len(ids)-most))
	}
	return ids
}

// requestError is a request the client refused before sending it: a usage
// error (exit 2) that names the field, and the flag it came from.
type requestError struct{ v *wecom.ValidationError }

func (e *requestError) Error() string {
	field := e.v.Field
	if f := flagOf(field); f != "" {
		field += " (" + f + ")"
	}
	return "invalid " + field + ": " + e.v.Rule + "; nothing was sent"
}

func (e *requestError) Is(target error) bool { return target == errUsage }
func (e *requestError) Unwrap() error        { return e.v }

// callError makes a validation error a usage error. Anything else is
// WeCom's answer or the way to it (exit 1); an *APIError prints as
// "wecom API: errcode N: errmsg".
func callError(err error) error {
	if v, ok := errors.AsType[*wecom.ValidationError](err); ok {
		return &requestError{v: v}
	}
	return err
}

// fieldFlags maps request fields (JSON paths, by prefix) to the flags that
// fill them.
var fieldFlags = []struct{ field, flag string }{
	{"name", "-name"},
	{"keyword.word_list", "-words"},
	{"keyword", "-words or -semantics"},
	{"semantics", "-semantics"},
	{"applicable_range", "-range or -clear"},
	{"rule_id", "RULE_ID"},
	{"query_word", "QUERY"},
	{"chat_info.id_list", "-between"},
	{"chat_info.msg_type_list", "-types"},
	{"chat_info.sender_list", "-sender"},
	{"chat_info.sender", "-sender"},
	{"start_time", "-from"},
	{"end_time", "-to"},
	{"limit", "-limit"},
}

func flagOf(field string) string {
	for _, f := range fieldFlags {
		rest, ok := strings.CutPrefix(field, f.field)
		if ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
			return f.flag
		}
	}
	return ""
}

// listFlag is a comma-separated list that remembers whether it was given;
// repeating the flag adds to the list. Empty values and items are refused:
// to empty a list, update has -clear.
type listFlag struct {
	set   bool
	items []string
}

func (l *listFlag) String() string { return strings.Join(l.items, ",") }

func (l *listFlag) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty (to empty a rule's list, update has -clear)")
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return fmt.Errorf("empty item in %q", s)
		}
		l.items = append(l.items, item)
	}
	l.set = true
	return nil
}

// setFlag reports whether the flag name was given.
func setFlag(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// parseArgs parses flags placed before, between and after the positional
// arguments, which it returns: Go's flag package stops at the first
// positional one, and "rules get ID -app A" should work as well as
// "rules get -app A ID". After "--" every argument is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseNoArgs parses flags and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseArgs(fs, args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	return err
}

// parseRuleID parses flags around exactly one positional RULE_ID.
func parseRuleID(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", err
	}
	switch len(pos) {
	case 0:
		return "", fmt.Errorf("%w: RULE_ID is required", errUsage)
	case 1:
		return pos[0], nil
	}
	return "", fmt.Errorf("%w: one RULE_ID, got %q", errUsage, pos)
}
