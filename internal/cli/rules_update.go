package cli

import (
	"context"
	"fmt"
	"slices"

	"github.com/wecomhit/wecomhit/internal/wecom"
)

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
		return fmt.Errorf("%w: -name: empty; a rule's name cannot be cleared", ErrUsage)
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
			return fmt.Errorf("%w: -clear: unknown list %q (want %s)", ErrUsage, l, clearableNames)
		}
		if !updateLists[i].isZero(&u) {
			return fmt.Errorf("%w: -clear %s: the list is also set by %s", ErrUsage, l, updateLists[i].setBy)
		}
		updateLists[i].clear(&u)
	}
	if u.Name == "" && !slices.ContainsFunc(updateLists, func(x updateList) bool { return !x.isZero(&u) }) {
		return fmt.Errorf("%w: nothing to update: give -name, a list flag, -range or -clear", ErrUsage)
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
