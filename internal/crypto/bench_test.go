package crypto

import (
	"strconv"
	"strings"
	"testing"

	"github.com/wecomhit/wecomhit/internal/testvectors"
)

func BenchmarkOpen(b *testing.B) {
	for _, size := range []int{300, 2000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			c := mustNew(b, testvectors.V1)
			enc, sig, err := c.Seal(strings.Repeat("x", size), "1700000000", "1372623149")
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Open(sig, "1700000000", "1372623149", enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
