package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

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
		if err := ParseOrHelp(fs, args); err != nil {
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
		err = fmt.Errorf("%w: unexpected arguments %q", ErrUsage, pos)
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
		return "", fmt.Errorf("%w: RULE_ID is required", ErrUsage)
	case 1:
		return pos[0], nil
	}
	return "", fmt.Errorf("%w: one RULE_ID, got %q", ErrUsage, pos)
}
