package publish

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
)

func TestCEValue(t *testing.T) {
	for in, want := range map[string]string{
		"wwCorp:m1:r1":  "wwCorp:m1:r1",
		"":              "",
		"a b":           "a%20b",
		`say "hi"`:      "say%20%22hi%22",
		"100%":          "100%25",
		"tab\there\x7f": "tab%09here%7F",
		"Euro € 😀":      "Euro%20%E2%82%AC%20%F0%9F%98%80", // the binding's own example
		"规则":            "%E8%A7%84%E5%88%99",
		"<>*.:/?#":      "<>*.:/?#", // printable ASCII stays
	} {
		assert.Equal(t, want, ceValue(in), "%q", in)
	}
	assert.Equal(t, "urn:wecomhit:corp:wwCorp", CESource("wwCorp"))
	assert.Equal(t, "urn:wecomhit:corp:a%2Fb%20c", CESource("a/b c"))
	// An escaped source is escaped again for the header, as the binding
	// asks of every '%'; one round of decoding gives the source back.
	assert.Equal(t, "urn:wecomhit:corp:a%252Fb%2520c", ceValue(CESource("a/b c")))
}

// BenchmarkEventMsg measures building one event's NATS message (JSON and
// headers), the part of Publish that runs per event besides the network.
func BenchmarkEventMsg(b *testing.B) {
	p, err := New(nil, "wecom")
	if err != nil {
		b.Fatal(err)
	}
	o := Origin{App: "archive", CorpID: "wwCorpABC123", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	m := wecomhit.HitMessage{MsgID: "13375409848372591832_1717000000", HitRules: []wecomhit.HitRule{{RuleID: "rule-7", SemanticsList: []int{2}}},
		Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"},
			ReceiverList: []wecomhit.Party{{Type: 2, ID: "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAA"}}, MsgType: 1, SendTime: 1717000000}}
	evs, err := Normalize(o, &m, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var scratch []byte
	for b.Loop() {
		if _, scratch, err = p.eventMsg(&evs[0], scratch); err != nil {
			b.Fatal(err)
		}
	}
}

// eventGen builds events for comparing appendEvent with json.Marshal: nil
// and empty lists, absent and present message and key, and strings with
// every kind of byte encoding/json escapes or replaces.
type eventGen struct{ r *rand.Rand }

// pieces are the string fragments strings are built from: plain ids,
// JSON's escapes, HTML-unsafe characters, control bytes, DEL, multi-byte
// UTF-8, U+2028/U+2029, and invalid or truncated UTF-8.
var pieces = []string{
	"", "a", "wwCorpABC123", "rule-7", "13375409848372591832_1717000000",
	`"`, `\`, "/", "<", ">", "&", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
	"规则", "€", "😀", "\u2028", "\u2029", "\u2027", "\u202a",
	"\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf0\x9f\x98",
}

func (g eventGen) str() string {
	var b strings.Builder
	for range g.r.IntN(5) {
		b.WriteString(pieces[g.r.IntN(len(pieces))])
	}
	return b.String()
}

func (g eventGen) int() int {
	switch g.r.IntN(4) {
	case 0:
		return 0
	case 1:
		return -g.r.IntN(1 << 20)
	case 2:
		return math.MaxInt - g.r.IntN(3)
	}
	return g.r.IntN(100)
}

func (g eventGen) semantics() []wecomhit.Semantic {
	switch g.r.IntN(3) {
	case 0:
		return nil
	case 1:
		return []wecomhit.Semantic{}
	}
	s := make([]wecomhit.Semantic, 1+g.r.IntN(3))
	for i := range s {
		s[i] = wecomhit.Semantic{Code: g.int(), Name: g.str()}
	}
	return s
}

func (g eventGen) party() wecomhit.NamedParty {
	return wecomhit.NamedParty{Type: g.int(), TypeName: g.str(), ID: g.str()}
}

func (g eventGen) event() wecomhit.HitEvent {
	e := wecomhit.HitEvent{
		Schema: g.str(), App: g.str(), CorpID: g.str(), MsgID: g.str(), RuleID: g.str(), RuleName: g.str(),
		HasHitKeyword: g.r.IntN(2) == 0, Semantics: g.semantics(),
		Source: g.str(), UsedHitToken: g.r.IntN(2) == 0,
	}
	if n := g.r.IntN(4); n > 0 {
		e.Rules = make([]wecomhit.RuleMatch, n-1) // n == 1: empty, not nil
		for i := range e.Rules {
			e.Rules[i] = wecomhit.RuleMatch{RuleID: g.str(), RuleName: g.str(), HasHitKeyword: g.r.IntN(2) == 0, Semantics: g.semantics()}
		}
	}
	if g.r.IntN(4) > 0 {
		m := &wecomhit.Message{MsgType: g.int(), MsgTypeName: g.str(), SendTime: int64(g.int()), Sender: g.party(), ChatID: g.str()}
		if n := g.r.IntN(4); n > 0 {
			m.Receivers = make([]wecomhit.NamedParty, n-1)
			for i := range m.Receivers {
				m.Receivers[i] = g.party()
			}
		}
		if g.r.IntN(2) == 0 {
			m.ServiceEncryptInfo = &wecomhit.EncryptInfo{EncryptedSecretKey: g.str(), PublicKeyVer: g.int()}
		}
		e.Message = m
	}
	// UTC to the millisecond, as Normalize makes it, and also other zones,
	// nanoseconds, the zero time and the ends of RFC 3339's years.
	zones := []*time.Location{time.UTC, time.FixedZone("", 8*3600), time.FixedZone("", -(3*3600 + 30*60))}
	switch g.r.IntN(4) {
	case 0:
		e.FetchedAt = time.UnixMilli(g.r.Int64N(1 << 42)).UTC()
	case 1:
		e.FetchedAt = time.Unix(g.r.Int64N(1<<34), g.r.Int64N(1e9)).In(zones[g.r.IntN(len(zones))])
	case 2:
		e.FetchedAt = time.Time{}
	default:
		e.FetchedAt = time.Date(9999, 12, 31, 23, 59, 59, 999999999, zones[g.r.IntN(len(zones))])
	}
	return e
}

// TestAppendEvent: appendEvent gives json.Marshal's bytes for every
// generated event, and for the events Normalize makes.
func TestAppendEvent(t *testing.T) {
	g := eventGen{rand.New(rand.NewPCG(1, 2))}
	for i := range 20000 {
		e := g.event()
		want, err := json.Marshal(&e)
		require.NoError(t, err)
		got, err := appendEvent(nil, &e)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "event %d: %#v", i, e)
	}
	o := Origin{App: "archive", CorpID: "wwCorp", Source: wecomhit.SourcePoll, FetchedAt: time.Now()}
	m := wecomhit.HitMessage{MsgID: "m1", HitRules: []wecomhit.HitRule{{RuleID: "r1", HasHitKeyword: true}, {RuleID: "r2", SemanticsList: []int{2, 99}}},
		Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "wo"}, MsgType: 77, SendTime: 1717000000,
			ServiceEncryptInfo: &wecomhit.ServiceEncryptInfo{EncryptedSecretKey: "k==", PublicKeyVer: 2}}}
	evs, err := Normalize(o, &m, nil)
	require.NoError(t, err)
	for i := range evs {
		want, err := json.Marshal(&evs[i])
		require.NoError(t, err)
		got, err := appendEvent([]byte("kept"), &evs[i])
		require.NoError(t, err)
		require.Equal(t, "kept"+string(want), string(got), "appends to dst")
	}
}

// TestAppendEvent_BadTime: a time json.Marshal refuses, appendEvent
// refuses too.
func TestAppendEvent_BadTime(t *testing.T) {
	e := wecomhit.HitEvent{FetchedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	_, jerr := json.Marshal(&e)
	require.Error(t, jerr)
	_, err := appendEvent(nil, &e)
	require.Error(t, err)
}

// FuzzAppendEvent compares appendEvent with json.Marshal on fuzzed strings
// and numbers in every kind of field.
func FuzzAppendEvent(f *testing.F) {
	f.Add("wwCorp", "规则<&>\u2028", "\xff\x00\"\\", 1, int64(1717000000), int64(0))
	f.Add("", "", "", -1, int64(-5), int64(1e18))
	f.Fuzz(func(t *testing.T, a, b, c string, n int, sec, nsec int64) {
		sem := []wecomhit.Semantic{{Code: n, Name: c}}
		e := wecomhit.HitEvent{Schema: a, App: b, CorpID: c, MsgID: a + b, RuleID: b, RuleName: c, Semantics: sem,
			Rules: []wecomhit.RuleMatch{{RuleID: a, RuleName: b, Semantics: sem}, {RuleID: c}},
			Message: &wecomhit.Message{MsgType: n, MsgTypeName: a, SendTime: sec, Sender: wecomhit.NamedParty{Type: n, TypeName: b, ID: c},
				Receivers: []wecomhit.NamedParty{{ID: a}}, ChatID: b, ServiceEncryptInfo: &wecomhit.EncryptInfo{EncryptedSecretKey: c, PublicKeyVer: n}},
			Source: c, FetchedAt: time.Unix(sec, nsec),
		}
		want, jerr := json.Marshal(&e)
		got, err := appendEvent(nil, &e)
		if jerr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	})
}

// BenchmarkEncodeEvent compares appendEvent with json.Marshal on a
// simulator-like event (a receiver, an encrypted key).
func BenchmarkEncodeEvent(b *testing.B) {
	o := Origin{App: "archive", CorpID: "wwCorpABC123", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	m := wecomhit.HitMessage{MsgID: "13375409848372591832_1717000000", HitRules: []wecomhit.HitRule{{RuleID: "rule-7", SemanticsList: []int{2}}},
		Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"},
			ReceiverList: []wecomhit.Party{{Type: 2, ID: "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAA"}}, MsgType: 1, SendTime: 1717000000,
			ServiceEncryptInfo: &wecomhit.ServiceEncryptInfo{EncryptedSecretKey: strings.Repeat("Kx9+", 43), PublicKeyVer: 1}}}
	evs, err := Normalize(o, &m, nil)
	require.NoError(b, err)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&evs[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			if buf, err = appendEvent(buf[:0], &evs[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
