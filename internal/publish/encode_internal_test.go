package publish

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"

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
	p := New(nil, "wecom", nil, zerolog.Nop(), Options{})
	o := Origin{App: "archive", CorpID: "wwCorpABC123", Source: wecomhit.SourceCallback, FetchedAt: time.Now()}
	m := wecomhit.HitMessage{MsgID: "13375409848372591832_1717000000", HitRules: []wecomhit.HitRule{{RuleID: "rule-7", SemanticsList: []int{2}}},
		Detail: &wecomhit.MsgDetail{Sender: wecomhit.Party{Type: 1, ID: "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA"},
			ReceiverList: []wecomhit.Party{{Type: 2, ID: "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAA"}}, MsgType: 1, SendTime: 1717000000}}
	evs, err := Normalize(o, &m, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.eventMsg(&evs[0]); err != nil {
			b.Fatal(err)
		}
	}
}
