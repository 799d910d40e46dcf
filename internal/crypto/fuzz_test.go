package crypto

import (
	"testing"

	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// FuzzDecrypt feeds arbitrary ciphertexts to Decrypt: it must return an error
// or a frame, never panic, and a returned message must lie within the input's
// decoded size.
func FuzzDecrypt(f *testing.F) {
	for _, v := range testvectors.All() {
		if v.App == testvectors.V1 {
			f.Add(v.Encrypt)
		}
	}
	f.Add("")
	f.Add("AAAA")
	f.Add("////////////////////////////////////////////////////////////////////////////////////////////////////////////")
	c, err := New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, testvectors.V1.ReceiveID)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, encrypt string) {
		msg, rid, err := c.Decrypt(encrypt)
		if err != nil {
			if msg != "" || rid != "" {
				t.Fatalf("error %v with non-empty results", err)
			}
			return
		}
		if len(msg)+len(rid)+20 > len(encrypt) {
			t.Fatalf("frame larger than input: %d+%d from %d", len(msg), len(rid), len(encrypt))
		}
		// Whatever decrypts must survive a round trip with its own receive id.
		rt, err := New(testvectors.V1.Token, testvectors.V1.EncodingAESKey, rid)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := rt.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		m2, r2, err := rt.Decrypt(enc)
		if err != nil || m2 != msg || r2 != rid {
			t.Fatalf("round trip: %v", err)
		}
	})
}
