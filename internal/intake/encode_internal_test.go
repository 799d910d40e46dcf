package intake

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit"
)

// jsonRecord is a record as encoding/json writes it, the way Store wrote
// records before appendRecord: an Encoder with HTML escaping off, without
// its trailing newline.
func jsonRecord(cb *wecomhit.Callback) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(cb); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// recordPieces are the fragments generated strings are made of: plain
// ids, JSON's escapes, HTML's characters (left as they are), control
// bytes, DEL, multi-byte UTF-8, U+2028/U+2029 and their neighbours, and
// invalid or truncated UTF-8.
var recordPieces = []string{
	"", "a", "wwCorpABC123", "hit_keyword", "<xml><Token><![CDATA[tkn-1]]></Token></xml>", "{\"k\":1}",
	`"`, `\`, "/", "<", ">", "&", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
	"规则", "€", "😀", "\u2028", "\u2029", "\u2027", "\u202a",
	"\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf0\x9f\x98",
}

type recordGen struct{ r *rand.Rand }

func (g recordGen) str() string {
	if g.r.IntN(4) == 0 {
		return "" // omitted where omitempty
	}
	var b strings.Builder
	for range 1 + g.r.IntN(6) {
		b.WriteString(recordPieces[g.r.IntN(len(recordPieces))])
	}
	return b.String()
}

func (g recordGen) int64() int64 {
	switch g.r.IntN(4) {
	case 0:
		return 0 // omitted
	case 1:
		return -g.r.Int64()
	case 2:
		return int64(g.r.Uint64()) // either sign, up to the extremes
	}
	return 1717000000 + g.r.Int64N(1e6)
}

var recordZones = []*time.Location{time.UTC, time.FixedZone("CST", 8*3600), time.FixedZone("odd", -(3*3600 + 30*60 + 15)), time.Local}

func (g recordGen) callback() wecomhit.Callback {
	return wecomhit.Callback{
		ID: g.str(), App: g.str(), Kind: wecomhit.Kind(g.str()), Format: g.str(),
		CorpID: g.str(), SuiteID: g.str(), Token: g.str(), SuiteTicket: g.str(), AuthCode: g.str(),
		NotifyID: g.str(), NotifyScene: int(g.int64()), EventTime: g.int64(),
		ReceivedAt: time.Unix(g.r.Int64N(253402300799), g.r.Int64N(1e9)*int64(g.r.IntN(2))).In(recordZones[g.r.IntN(len(recordZones))]),
		Raw:        g.str(),
	}
}

// TestAppendRecord: appendRecord gives encoding/json's bytes for every
// generated callback, and for a typical one, appending to what dst held.
func TestAppendRecord(t *testing.T) {
	g := recordGen{rand.New(rand.NewPCG(3, 4))}
	for i := range 20000 {
		cb := g.callback()
		want, err := jsonRecord(&cb)
		require.NoError(t, err)
		got, err := appendRecord(nil, &cb)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "callback %d: %#v", i, cb)
	}
	cb := wecomhit.Callback{ID: "acdb564e7a1806820b6aa4bf464932cf", App: "archive", Kind: wecomhit.KindHitKeyword, Format: "xml",
		CorpID: "wwCorp", SuiteID: "wwSuite", Token: "tkn-1", EventTime: 1717000000, ReceivedAt: time.Now().UTC(),
		Raw: "<xml>\n  <Token><![CDATA[tkn-1]]></Token>\n</xml>"}
	want, err := jsonRecord(&cb)
	require.NoError(t, err)
	got, err := appendRecord([]byte("kept"), &cb)
	require.NoError(t, err)
	require.Equal(t, "kept"+string(want), string(got))
}

// TestStore_Encode: the buffer Store publishes holds encoding/json's
// bytes, whether the buffer it gets is new, holds an older record, or is
// too small for this one.
func TestStore_Encode(t *testing.T) {
	s, err := New(nil, "wecom")
	require.NoError(t, err)
	g := recordGen{rand.New(rand.NewPCG(5, 6))}
	var buf bytes.Buffer
	for i := range 200 {
		cb := g.callback()
		if i%3 == 0 {
			cb.Raw = strings.Repeat("\x01<x>\n", 100*i) // escapes grow it past recordSize
		}
		want, err := jsonRecord(&cb)
		require.NoError(t, err)
		require.NoError(t, s.encode(&buf, &cb))
		require.Equal(t, string(want), buf.String(), "callback %d", i)
	}
}

// TestAppendRecord_BadTime: a time encoding/json refuses, appendRecord
// refuses too, and encode says which field.
func TestAppendRecord_BadTime(t *testing.T) {
	cb := wecomhit.Callback{ID: "x", ReceivedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	_, jerr := jsonRecord(&cb)
	require.Error(t, jerr)
	_, err := appendRecord(nil, &cb)
	require.Error(t, err)
	s, err := New(nil, "wecom")
	require.NoError(t, err)
	require.ErrorContains(t, s.encode(new(bytes.Buffer), &cb), "encode: received_at")
}

// FuzzAppendRecord compares appendRecord with encoding/json on fuzzed
// strings, numbers and times.
func FuzzAppendRecord(f *testing.F) {
	f.Add("acdb564e", "<xml>规则<&>\u2028</xml>", "\xff\x00\"\\", 1, int64(1717000000), int64(0))
	f.Add("", "", "", 0, int64(-5), int64(1e18))
	f.Fuzz(func(t *testing.T, a, b, c string, n int, sec, nsec int64) {
		cb := wecomhit.Callback{ID: a, App: b, Kind: wecomhit.Kind(c), Format: a + c, CorpID: b, SuiteID: c, Token: a,
			SuiteTicket: b, AuthCode: c, NotifyID: a, NotifyScene: n, EventTime: sec, ReceivedAt: time.Unix(sec, nsec), Raw: b + a}
		want, jerr := jsonRecord(&cb)
		got, err := appendRecord(nil, &cb)
		if jerr != nil {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	})
}

// BenchmarkEncodeRecord compares Store's encode with encoding/json's
// Encoder on a conversation_new_message callback.
func BenchmarkEncodeRecord(b *testing.B) {
	cb := wecomhit.Callback{ID: "acdb564e7a1806820b6aa4bf464932cf", App: "archive", Kind: wecomhit.KindConversationNewMessage, Format: "xml",
		CorpID: "wwCorpABC123", SuiteID: "wwArchiveSuite01", Token: "tkn-7f3a9c1e5b2d4a6f8e0c1b3d5f7a9c2e4b6d8f0a", EventTime: 1717000000,
		ReceivedAt: time.Now().UTC(),
		Raw: "<xml>\n  <SuiteId><![CDATA[wwArchiveSuite01]]></SuiteId>\n  <AuthCorpId><![CDATA[wwCorpABC123]]></AuthCorpId>\n" +
			"  <InfoType><![CDATA[conversation_new_message]]></InfoType>\n  <Token><![CDATA[tkn-7f3a9c1e5b2d4a6f8e0c1b3d5f7a9c2e4b6d8f0a]]></Token>\n" +
			"  <TimeStamp>1717000000</TimeStamp>\n</xml>"}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(&cb); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		s, err := New(nil, "wecom")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			if err := s.encode(&buf, &cb); err != nil {
				b.Fatal(err)
			}
		}
	})
}
