package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/deadletter"
)

// ErrInvalidRecord: a hit message that cannot become events. Such a record is
// dead-lettered with the reason, never dropped.
var ErrInvalidRecord = errors.New("invalid hit record")

// RuleNames looks up a rule's name. It must not block: a miss returns
// ("", false) and the implementation may fill itself in the background.
type RuleNames interface {
	RuleName(corpID, ruleID string) (name string, ok bool)
}

// RuleNameResolver is a RuleNames that can wait for names it lacks. The
// Publisher calls Resolve once per page, with the page's rule ids, before
// building its events; Resolve bounds its own wait (rulecache: 2 s per
// page), so a slow get_rule_detail delays a page briefly and never loses it.
type RuleNameResolver interface {
	Resolve(ctx context.Context, corpID string, ruleIDs []string)
}

// Origin says where a page of hit messages came from: a page without its
// messages. App and CorpID come from the configuration, not from WeCom.
type Origin struct {
	App    string
	CorpID string
	// Source is what started the fetch: wecomhit.SourceCallback,
	// SourcePoll or SourceBackfill.
	Source string
	// UsedHitToken: the page was fetched with a hit token or notify id.
	UsedHitToken bool
	FetchedAt    time.Time
}

// maxIDLen bounds ids that go into subjects and headers.
const maxIDLen = 256

// scanLimit is the list length up to which repeats are found by scanning.
const scanLimit = 16

// Normalize turns one hit message into one event per rule it hit, in
// WeCom's order, dropping repeats of a rule id, of a semantics code within a
// rule and of a receiver. names may be nil.
//
// It returns an error wrapping ErrInvalidRecord for a record that would
// break the contract of docs/events.md: a message without an id or without
// rules; a msgid, rule_id or corp id that is empty, over 256 bytes or holds
// control characters (they go into headers); a rule hit for neither a
// keyword nor a key behaviour; a semantics code below 1; a sender or
// receiver without an id; a negative send_time or public_key_ver.
func Normalize(o Origin, m *wecomhit.HitMessage, names RuleNames) ([]wecomhit.HitEvent, error) {
	if err := checkID("corp_id", o.CorpID); err != nil {
		return nil, err
	}
	if err := checkID("msgid", m.MsgID); err != nil {
		return nil, err
	}
	if len(m.HitRules) == 0 {
		return nil, invalid("no_hit_rules", "message has no hit rules")
	}
	rules := make([]wecomhit.RuleMatch, 0, len(m.HitRules))
	for i, r := range m.HitRules {
		if err := checkID("rule_id", r.RuleID); err != nil {
			return nil, err
		}
		if repeated(m.HitRules[:i], r.RuleID) {
			continue
		}
		sem, err := semantics(r.SemanticsList)
		if err != nil {
			return nil, invalid("bad_semantics", fmt.Sprintf("rule %q: %v", r.RuleID, err))
		}
		if !r.HasHitKeyword && len(sem) == 0 {
			return nil, invalid("empty_hit", fmt.Sprintf("rule %q hit neither a keyword nor a key behaviour", r.RuleID))
		}
		name := ""
		if names != nil {
			name, _ = names.RuleName(o.CorpID, r.RuleID)
		}
		rules = append(rules, wecomhit.RuleMatch{
			RuleID: r.RuleID, RuleName: name, HasHitKeyword: r.HasHitKeyword, Semantics: sem,
		})
	}
	msg, err := message(m.Detail)
	if err != nil {
		return nil, invalid("bad_msg_detail", err.Error())
	}
	fetched := o.FetchedAt.UTC().Truncate(time.Millisecond)
	events := make([]wecomhit.HitEvent, len(rules))
	for i, r := range rules {
		events[i] = wecomhit.HitEvent{
			Schema: wecomhit.HitSchema, App: o.App, CorpID: o.CorpID, MsgID: m.MsgID,
			RuleID: r.RuleID, RuleName: r.RuleName, HasHitKeyword: r.HasHitKeyword,
			Semantics: r.Semantics, Rules: rules, Message: msg,
			Source: o.Source, UsedHitToken: o.UsedHitToken, FetchedAt: fetched,
		}
	}
	return events, nil
}

// repeated reports whether a rule id occurs in rules. Messages hit a few
// rules, so a scan beats a map.
func repeated(rules []wecomhit.HitRule, id string) bool {
	for _, r := range rules {
		if r.RuleID == id {
			return true
		}
	}
	return false
}

// checkID rejects ids that are empty, huge, or would break a NATS header.
func checkID(field, id string) error {
	switch {
	case id == "":
		return invalid("empty_"+field, "empty "+field)
	case len(id) > maxIDLen:
		return invalid(field+"_too_long", fmt.Sprintf("%s longer than %d bytes", field, maxIDLen))
	case strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		// They would corrupt a NATS header (CR, LF) or confuse whoever reads it.
		return invalid(field+"_control_chars", field+" contains control characters")
	}
	return nil
}

// recordError is an ErrInvalidRecord with a stable reason, which becomes
// the dead letter's reason after wecomhit.ReasonNormalizePrefix.
type recordError struct{ reason, msg string }

func invalid(reason, msg string) error { return &recordError{reason: reason, msg: msg} }

func (e *recordError) Error() string        { return ErrInvalidRecord.Error() + ": " + e.msg }
func (e *recordError) Is(target error) bool { return target == ErrInvalidRecord }

// normalizeReason is err's dead-letter reason: "normalize:<reason>".
func normalizeReason(err error) string {
	var re *recordError
	if errors.As(err, &re) {
		return wecomhit.ReasonNormalizePrefix + re.reason
	}
	return wecomhit.ReasonNormalizePrefix + "invalid"
}

// semantics names the codes of a rule, dropping repeats (a code's name is
// fixed, so nothing is lost). WeCom's codes start at 1.
func semantics(codes []int) ([]wecomhit.Semantic, error) {
	out := make([]wecomhit.Semantic, 0, len(codes))
next:
	for _, c := range codes {
		if c < 1 {
			return nil, fmt.Errorf("semantics code %d below 1", c)
		}
		for _, s := range out {
			if s.Code == c {
				continue next
			}
		}
		out = append(out, wecomhit.Semantic{Code: c, Name: wecomhit.SemanticName(c)})
	}
	return out, nil
}

func message(d *wecomhit.MsgDetail) (*wecomhit.Message, error) {
	if d == nil {
		return nil, nil
	}
	switch {
	case d.SendTime < 0:
		return nil, fmt.Errorf("negative send_time %d", d.SendTime)
	case d.Sender.ID == "":
		return nil, errors.New("sender without id")
	case d.ServiceEncryptInfo != nil && d.ServiceEncryptInfo.PublicKeyVer < 0:
		return nil, fmt.Errorf("negative public_key_ver %d", d.ServiceEncryptInfo.PublicKeyVer)
	}
	m := &wecomhit.Message{
		MsgType: d.MsgType, MsgTypeName: wecomhit.MsgTypeName(d.MsgType), SendTime: d.SendTime,
		Sender: party(d.Sender), Receivers: make([]wecomhit.NamedParty, 0, len(d.ReceiverList)),
		ChatID: d.ChatID,
	}
	// Most messages have one receiver or a few; a group chat can list
	// hundreds, where a set finds repeats faster than a scan.
	var seen map[wecomhit.Party]bool
	if len(d.ReceiverList) > scanLimit {
		seen = make(map[wecomhit.Party]bool, len(d.ReceiverList))
	}
	for i, r := range d.ReceiverList {
		if r.ID == "" {
			return nil, errors.New("receiver without id")
		}
		if seen != nil {
			if seen[r] {
				continue
			}
			seen[r] = true
		} else if slices.Contains(d.ReceiverList[:i], r) {
			continue
		}
		m.Receivers = append(m.Receivers, party(r))
	}
	if e := d.ServiceEncryptInfo; e != nil {
		m.ServiceEncryptInfo = &wecomhit.EncryptInfo{EncryptedSecretKey: e.EncryptedSecretKey, PublicKeyVer: e.PublicKeyVer}
	}
	return m, nil
}

func party(p wecomhit.Party) wecomhit.NamedParty {
	return wecomhit.NamedParty{Type: p.Type, TypeName: wecomhit.PartyTypeName(p.Type), ID: p.ID}
}

// Token makes s safe as one subject token: '.', '*', '>' and white space
// or control characters become '_', and an empty s becomes "_". Distinct
// ids can map to one token; the payload and headers keep the exact ids.
// Dead-letter subjects use the same rule (deadletter.Token).
func Token(s string) string { return deadletter.Token(s) }

// MsgID is the Nats-Msg-Id of an event: "<corp_id>:<msgid>:<rule_id>", so
// any re-fetch of the same hit is recognised as a duplicate.
func MsgID(corpID, msgID, ruleID string) string {
	return corpID + ":" + msgID + ":" + ruleID
}
