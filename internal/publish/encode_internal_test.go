package publish

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit"
)

// BenchmarkEventMsg measures building one event's NATS message (JSON and
// headers), the part of Page that runs per event besides the network.
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
