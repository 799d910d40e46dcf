package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits linear buckets, so a recorded value is reported at most 1/128
// (0.8%) above itself, like an HDR histogram with two significant digits.
const (
	subBits  = 7
	subCount = 1 << subBits
)

// Histogram is a log-linear histogram of durations: constant relative
// error, fixed memory (a few thousand counters up to hours), no
// allocation per value. It is not safe for concurrent use; each sender
// keeps its own and Merge joins them.
type Histogram struct {
	counts []uint64
	n      uint64
	max    time.Duration
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	// 64-bit values: (64-subBits+1) ranges of subCount buckets.
	return &Histogram{counts: make([]uint64, (64-subBits+1)*subCount)}
}

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subCount + int(v>>uint(shift)) - subCount
}

// upper is the largest value that falls into bucket i.
func upper(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	low := uint64(i%subCount+subCount) << uint(shift)
	return low + (1 << uint(shift)) - 1
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the value at or below which a fraction q of the values
// lie, rounded up to its bucket's upper edge (never above Max); 0 when
// empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(upper(i)), h.max)
		}
	}
	return h.max
}
