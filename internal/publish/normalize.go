package publish

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wecomhit/wecomhit"
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
// messages.
type Origin struct {
	App       string
	CorpID    string
	Source    string // wecomhit.SourceCallback, SourcePoll or SourceBackfill
	FetchedAt time.Time
}

// maxIDLen bounds ids that go into subjects and headers.
const maxIDLen = 256

// Normalize turns one hit message into one event per rule it hit, in
// WeCom's order, dropping repeats of a rule id. names may be nil.
// It returns an error wrapping ErrInvalidRecord for a message without an id,
// without rules, or with ids that could not be used as header values.
func Normalize(o Origin, m *wecomhit.HitMessage, names RuleNames) ([]wecomhit.HitEvent, error) {
	if err := checkID("msgid", m.MsgID); err != nil {
		return nil, err
	}
	if len(m.HitRules) == 0 {
		return nil, fmt.Errorf("%w: message has no hit rules", ErrInvalidRecord)
	}
	rules := make([]wecomhit.RuleMatch, 0, len(m.HitRules))
	seen := make(map[string]bool, len(m.HitRules))
	for _, r := range m.HitRules {
		if err := checkID("rule_id", r.RuleID); err != nil {
			return nil, err
		}
		if seen[r.RuleID] {
			continue
		}
		seen[r.RuleID] = true
		name := ""
		if names != nil {
			name, _ = names.RuleName(o.CorpID, r.RuleID)
		}
		rules = append(rules, wecomhit.RuleMatch{
			RuleID: r.RuleID, RuleName: name, HasHitKeyword: r.HasHitKeyword,
			Semantics: semantics(r.SemanticsList),
		})
	}
	msg := message(m.Detail)
	fetched := o.FetchedAt.UTC().Truncate(time.Millisecond)
	events := make([]wecomhit.HitEvent, len(rules))
	for i, r := range rules {
		events[i] = wecomhit.HitEvent{
			Schema: wecomhit.HitSchema, App: o.App, CorpID: o.CorpID, MsgID: m.MsgID,
			RuleID: r.RuleID, RuleName: r.RuleName, HasHitKeyword: r.HasHitKeyword,
			Semantics: r.Semantics, Rules: rules, Message: msg,
			Source: o.Source, FetchedAt: fetched,
		}
	}
	return events, nil
}

// checkID rejects ids that are empty, huge, or would break a NATS header.
func checkID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidRecord, field)
	case len(id) > maxIDLen:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidRecord, field, maxIDLen)
	case strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		// They would corrupt a NATS header (CR, LF) or confuse whoever reads it.
		return fmt.Errorf("%w: %s contains control characters", ErrInvalidRecord, field)
	}
	return nil
}

func semantics(codes []int) []wecomhit.Semantic {
	out := make([]wecomhit.Semantic, len(codes))
	for i, c := range codes {
		out[i] = wecomhit.Semantic{Code: c, Name: wecomhit.SemanticName(c)}
	}
	return out
}

func message(d *wecomhit.MsgDetail) *wecomhit.Message {
	if d == nil {
		return nil
	}
	m := &wecomhit.Message{
		MsgType: d.MsgType, MsgTypeName: wecomhit.MsgTypeName(d.MsgType), SendTime: d.SendTime,
		Sender: party(d.Sender), Receivers: make([]wecomhit.NamedParty, len(d.ReceiverList)),
		ChatID: d.ChatID,
	}
	for i, r := range d.ReceiverList {
		m.Receivers[i] = party(r)
	}
	if e := d.ServiceEncryptInfo; e != nil {
		m.ServiceEncryptInfo = &wecomhit.EncryptInfo{EncryptedSecretKey: e.EncryptedSecretKey, PublicKeyVer: e.PublicKeyVer}
	}
	return m
}

func party(p wecomhit.Party) wecomhit.NamedParty {
	return wecomhit.NamedParty{Type: p.Type, TypeName: wecomhit.PartyTypeName(p.Type), ID: p.ID}
}

// Token makes s safe as one subject token: '.', '*', '>' and white space
// or control characters become '_', and an empty s becomes "_". Distinct
// ids can map to one token; the payload and headers keep the exact ids.
func Token(s string) string {
	if s == "" {
		return "_"
	}
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if unsafeRune(r) {
			r = '_'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f ||
		r == 0x85 || r == 0xa0 || r == 0x1680 || (r >= 0x2000 && r <= 0x200a) ||
		r == 0x2028 || r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000 || r == 0xfeff
}

// MsgID is the Nats-Msg-Id of an event: "<corp_id>:<msgid>:<rule_id>", so
// any re-fetch of the same hit is recognised as a duplicate.
func MsgID(corpID, msgID, ruleID string) string {
	return corpID + ":" + msgID + ":" + ruleID
}
