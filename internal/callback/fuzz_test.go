package callback

import (
	"testing"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// FuzzParseEnvelope: any body yields an envelope with a non-empty Encrypt
// that lies within the body, or an error; never a panic.
func FuzzParseEnvelope(f *testing.F) {
	for _, v := range testvectors.All() {
		f.Add(callbacktest.XMLEnvelope(v.Encrypt))
		f.Add(`{"tousername":"ww","encrypt":"` + v.Encrypt + `","agentid":218}`)
	}
	f.Add(`<!DOCTYPE x [<!ENTITY e "x">]><xml><Encrypt>&e;</Encrypt></xml>`)
	f.Add(`{"encrypt":1}`)
	f.Fuzz(func(t *testing.T, body string) {
		env, err := ParseEnvelope(body)
		if err != nil {
			return
		}
		if env.Encrypt == "" {
			t.Fatal("accepted an envelope without Encrypt")
		}
		// Entities, line-end normalization and mixed text and CDATA can make
		// an XML value differ from any one substring, but never longer. (JSON
		// may grow: encoding/json turns invalid UTF-8 into U+FFFD, and such a
		// value then fails the signature.)
		if env.Format == FormatXML && len(env.Encrypt) > len(body) {
			t.Fatalf("Encrypt (%d bytes) longer than the body (%d)", len(env.Encrypt), len(body))
		}
	})
}

// FuzzParseEvent: any plaintext is classified into a known kind, or refused.
func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		callbacktest.HitKeywordXML,
		`<xml><ToUserName><![CDATA[c]]></ToUserName><CreateTime>1</CreateTime><Event><![CDATA[program_notify]]></Event><NotifyId><![CDATA[n]]></NotifyId><NotifyScene>1</NotifyScene></xml>`,
		`<xml><SuiteId>s</SuiteId><InfoType>suite_ticket</InfoType><SuiteTicket>t</SuiteTicket><TimeStamp>1</TimeStamp></xml>`,
		`{"SuiteId":"s","AuthCorpId":"c","InfoType":"hit_keyword","Token":"t","TimeStamp":1717000000}`,
		`{"event_type":"hit_keyword","timestamp":1,"hit_keyword":{"token":"t"}}`,
		`{"NotifyScene":"3","CreateTime":1}`,
		`<xml><SuiteId>s</SuiteId><AuthCode>a</AuthCode><InfoType>create_auth</InfoType><TimeStamp>1</TimeStamp></xml>`,
		`<xml><SuiteId>s</SuiteId><AuthCorpId>c</AuthCorpId><InfoType>cancel_auth</InfoType><TimeStamp>1</TimeStamp></xml>`,
		`{"SuiteId":"s","AuthCorpId":"c","AuthCode":"a","InfoType":"reset_permanent_code","TimeStamp":1}`,
		`{"SuiteId":"s","AuthCorpId":"c","InfoType":"change_auth"}`,
	} {
		f.Add(s)
	}
	for _, v := range testvectors.All() {
		f.Add(v.Plaintext)
	}
	known := map[wecomhit.Kind]bool{}
	for _, k := range wecomhit.Kinds {
		known[k] = true
	}
	f.Fuzz(func(t *testing.T, doc string) {
		ev, err := ParseEvent(doc)
		if err != nil {
			return
		}
		if !known[ev.Kind] {
			t.Fatalf("kind %q is not one we know", ev.Kind)
		}
		if ev.Kind == wecomhit.KindHitKeyword && ev.InfoType != string(wecomhit.KindHitKeyword) {
			t.Fatalf("hit_keyword from InfoType %q", ev.InfoType)
		}
		// Authorization kinds come from a suite's InfoType only: an app
		// event named like one must not make the receiver exchange a code.
		switch ev.Kind {
		case wecomhit.KindCreateAuth, wecomhit.KindChangeAuth, wecomhit.KindCancelAuth, wecomhit.KindResetPermanentCode:
			if ev.InfoType != string(ev.Kind) {
				t.Fatalf("%s from InfoType %q", ev.Kind, ev.InfoType)
			}
		}
	})
}

// FuzzDecode drives the whole inbound path with attacker-controlled
// ciphertext that is correctly signed (the worst case: someone with the
// token), checking that every input ends in a record or a classified error.
func FuzzDecode(f *testing.F) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{callbacktest.HitKeywordXML, `{"InfoType":"suite_ticket","SuiteTicket":"t"}`, "1616140317555161061", "<xml/>"} {
		enc, err := c.Encrypt(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, encrypt string) {
		sig := c.Sign("1", "2", encrypt)
		cb, err := Decode(c, "app", sig, "1", "2", callbacktest.XMLEnvelope(encrypt))
		if err != nil {
			if rj := classify(err); rj.status != 400 && rj.status != 403 {
				t.Fatalf("unclassified error %v -> %d", err, rj.status)
			}
			return
		}
		if cb.ID == "" || cb.App != "app" || cb.Kind == "" {
			t.Fatalf("incomplete record %+v", cb)
		}
	})
}
