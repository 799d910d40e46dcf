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

// BenchmarkReceive is Receive alone, as the fasthttp edge calls it, with
// a sink that waits on the context as a store does: "shared" with the
// edge's context.Background (the store context shared per slot),
// "own" with a transport context of its own (a context per request).
func BenchmarkReceive(b *testing.B) {
	c, err := crypto.New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	if err != nil {
		b.Fatal(err)
	}
	sink := SinkFunc(func(ctx context.Context, _ *wecomhit.Callback) error {
		select {
		case <-ctx.Done(): // what a store waiting for its ack does
			return ctx.Err()
		default:
			return nil
		}
	})
	h, err := New([]App{{Name: "archive", Crypter: c}}, sink, WithTimestampWindow(0))
	if err != nil {
		b.Fatal(err)
	}
	enc, sig, err := c.Seal(callbacktest.HitKeywordXML, "1717000000", "1372623149")
	if err != nil {
		b.Fatal(err)
	}
	body := callbacktest.XMLEnvelope(enc)
	type key struct{}
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"shared", context.Background()},
		{"own", context.WithValue(context.Background(), key{}, 1)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := Request{App: "archive", Signature: sig, Timestamp: "1717000000", Nonce: "1372623149",
					ContentLength: int64(len(body)), ReadBody: func() (string, error) { return body, nil }}
				if a := h.Receive(tc.ctx, &req); a.Status != http.StatusOK {
					b.Fatal(a.Status, a.Body)
				}
			}
		})
	}
}
