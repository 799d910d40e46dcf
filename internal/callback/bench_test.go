package callback

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/wecomhit/wecomhit"
	"github.com/wecomhit/wecomhit/internal/callback/callbacktest"
	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// BenchmarkVerifyDecrypt measures the CPU cost of one callback: envelope
// parse, signature check, base64, AES-CBC, frame, receive id and event parse,
// and building the record, for a realistic ~300-byte hit_keyword event.
func BenchmarkVerifyDecrypt(b *testing.B) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, plain string }{
		{"xml", callbacktest.HitKeywordXML},
		{"json", `{"SuiteId":"wwArchiveSuite01","AuthCorpId":"wwCorpABC123","InfoType":"hit_keyword","Token":"tkn-7f3a9c1e5b2d4a6f8e0c1b3d5f7a9c2e4b6d8f0a","TimeStamp":1717000000}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			enc, sig, err := c.Seal(tc.plain, "1717000000", "1372623149")
			if err != nil {
				b.Fatal(err)
			}
			body := callbacktest.XMLEnvelope(enc)
			b.SetBytes(int64(len(tc.plain)))
			b.ReportAllocs()
			for b.Loop() {
				cb, err := Decode(c, "archive", sig, "1717000000", "1372623149", body)
				if err != nil || cb.Kind != wecomhit.KindHitKeyword {
					b.Fatal(err, cb.Kind)
				}
			}
		})
	}
}

// BenchmarkHandler adds routing, query parsing, body reading and the log
// line: the whole request in-process, with a sink that returns at once.
func BenchmarkHandler(b *testing.B) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	if err != nil {
		b.Fatal(err)
	}
	sink := SinkFunc(func(context.Context, *wecomhit.Callback) error { return nil })
	h, err := New([]App{{Name: "archive", Crypter: c}}, sink, WithTimestampWindow(0))
	if err != nil {
		b.Fatal(err)
	}
	r := chi.NewRouter()
	h.Mount(r)
	enc, sig, err := c.Seal(callbacktest.HitKeywordXML, "1717000000", "1372623149")
	if err != nil {
		b.Fatal(err)
	}
	body := callbacktest.XMLEnvelope(enc)
	target := "/callback/archive?msg_signature=" + sig + "&timestamp=1717000000&nonce=1372623149"
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
