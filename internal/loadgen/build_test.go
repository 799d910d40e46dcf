package loadgen

import (
	"testing"
	"time"

	"github.com/wecomhit/wecomhit/internal/crypto"
	"github.com/wecomhit/wecomhit/internal/testvectors"
)

// BenchmarkBuild is the CPU loadgen spends on a callback before it is
// sent: the payload, its encryption and signature, the record id and the
// request.
func BenchmarkBuild(b *testing.B) {
	v := testvectors.V1
	cfg := Config{URL: "http://127.0.0.1:1/callback/archive", Token: v.Token, EncodingAESKey: v.EncodingAESKey,
		ReceiveID: v.ReceiveID, Kind: "conversation_new_message", N: 1}
	if err := cfg.setDefaults(); err != nil {
		b.Fatal(err)
	}
	cr, err := crypto.New(cfg.Token, cfg.EncodingAESKey, cfg.ReceiveID)
	if err != nil {
		b.Fatal(err)
	}
	r := newRunner(&cfg, cr, nil)
	w := &worker{}
	now := time.Now()
	b.ReportAllocs()
	seq := 0
	for b.Loop() {
		if _, err := w.build(r, seq, now); err != nil {
			b.Fatal(err)
		}
		seq++
	}
}
