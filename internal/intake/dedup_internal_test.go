package intake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyOf(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	var want idKey
	_, err := hex.Decode(want[:], []byte(id))
	require.NoError(t, err)
	assert.Equal(t, want, keyOf(id), "a CallbackID's hex is decoded")

	hashed := func(s string) idKey {
		sum := sha256.Sum256([]byte(s))
		var k idKey
		copy(k[:], sum[:])
		return k
	}
	for _, other := range []string{
		"0123456789ABCDEF0123456789ABCDEF", // upper case: its own key, not its lower-case twin's
		"0123456789abcdef0123456789abcdeg", // 32 characters, not all hex
		"0123456789abcdef",                 // short
		"cb-1/replay/7",                    // a replay's id
		"",
	} {
		assert.Equal(t, hashed(other), keyOf(other), "%q", other)
		assert.NotEqual(t, keyOf(id), keyOf(other), "%q", other)
	}
}

// clock is a settable time source for a localDedup.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestDedup(window time.Duration) (*localDedup, *clock) {
	c := &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	return newLocalDedup(window, c.now), c
}

// stored runs begin and, when it claims k, end(k, ok), and returns what
// begin said.
func stored(t *testing.T, d *localDedup, k idKey, ok bool) (dup bool) {
	t.Helper()
	dup, err := d.begin(t.Context(), k)
	require.NoError(t, err)
	if !dup {
		d.end(k, ok)
	}
	return dup
}

func TestLocalDedup_Window(t *testing.T) {
	d, c := newTestDedup(time.Hour)
	a, b := keyOf("a"), keyOf("b")

	assert.False(t, stored(t, d, a, true), "first store")
	assert.True(t, stored(t, d, a, true), "again within the window")
	assert.False(t, stored(t, d, b, false), "a failed store")
	assert.False(t, stored(t, d, b, true), "is not remembered")

	c.add(time.Hour - time.Second)
	assert.True(t, stored(t, d, a, true), "a second before the window passes")
	c.add(time.Second + time.Nanosecond)
	assert.False(t, stored(t, d, a, true), "once the window has passed, stored again")
	assert.Equal(t, 1, d.size(), "b, stored a second after a, has expired too")
}

func TestLocalDedup_Expire(t *testing.T) {
	d, c := newTestDedup(time.Minute)
	// More than three blocks of the queue, a millisecond apart.
	n := 3*stampChunk + 100
	for i := range n {
		require.False(t, stored(t, d, keyOf(fmt.Sprint(i)), true))
		c.add(time.Millisecond)
	}
	require.Equal(t, n, d.size())

	// Past the window of the first 2,000, which end within the second block.
	c.add(time.Minute - time.Duration(n)*time.Millisecond + 2000*time.Millisecond)
	assert.False(t, stored(t, d, keyOf("new"), true))
	assert.Equal(t, n-2000+1, d.size())
	assert.Len(t, d.queue, 3, "the first block is dropped")
	assert.NotNil(t, d.spare, "and kept for reuse")
	assert.False(t, stored(t, d, keyOf("1999"), true), "expired")
	assert.True(t, stored(t, d, keyOf("2000"), true), "within the window")

	c.add(time.Hour)
	assert.False(t, stored(t, d, keyOf("last"), true))
	assert.Equal(t, 1, d.size(), "all but the newest expired")
	assert.Len(t, d.queue, 1)
}

func TestLocalDedup_Load(t *testing.T) {
	d, c := newTestDedup(time.Hour)
	now := c.now()
	d.load(keyOf("old"), now.Add(-time.Hour-time.Second))
	d.load(keyOf("recent"), now.Add(-time.Minute))
	d.load(keyOf("recent"), now.Add(-time.Second)) // a second record of it
	assert.Equal(t, 1, d.size())
	assert.False(t, stored(t, d, keyOf("old"), true), "loaded past the window: stored again")
	assert.True(t, stored(t, d, keyOf("recent"), true))

	c.add(time.Hour - time.Minute + time.Second)
	assert.False(t, stored(t, d, keyOf("recent"), true), "a loaded id expires by its record's time")
}

func TestLocalDedup_SameIDAtOnce(t *testing.T) {
	d, _ := newTestDedup(time.Hour)
	k := keyOf("k")
	dup, err := d.begin(t.Context(), k)
	require.NoError(t, err)
	require.False(t, dup)

	// A second Store waits for the first, which fails: the second then
	// stores it itself.
	second := make(chan error, 1)
	go func() {
		dup, err := d.begin(context.Background(), k)
		if err == nil && dup {
			err = fmt.Errorf("duplicate while the first failed")
		}
		second <- err
	}()
	waitPending(t, d, k)
	select {
	case err := <-second:
		t.Fatalf("the second did not wait: %v", err)
	default:
	}
	d.end(k, false)
	require.NoError(t, <-second)

	// Now the second holds it; a third waits, and gets its success.
	third := make(chan bool, 1)
	go func() {
		dup, err := d.begin(context.Background(), k)
		third <- err == nil && dup
	}()
	waitPending(t, d, k)
	d.end(k, true)
	assert.True(t, <-third, "the third is a duplicate of the second's record")

	// One waiting gives up when its ctx ends, and leaves no trace.
	k2 := keyOf("k2")
	_, err = d.begin(t.Context(), k2)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = d.begin(ctx, k2)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	d.end(k2, true)
	assert.Empty(t, d.pending)
}

// waitPending waits until a second caller waits on k.
func waitPending(t *testing.T, d *localDedup, k idKey) {
	t.Helper()
	require.Eventually(t, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.pending[k] != nil
	}, 5*time.Second, time.Millisecond)
}

func TestLocalDedup_Concurrent(t *testing.T) {
	d, _ := newTestDedup(time.Hour)
	const ids, tries = 50, 8
	var (
		mu     sync.Mutex
		claims = map[string]int{}
		wg     sync.WaitGroup
	)
	for i := range ids * tries {
		id := fmt.Sprint(i % ids)
		wg.Go(func() {
			k := keyOf(id)
			dup, err := d.begin(context.Background(), k)
			if err != nil || dup {
				return
			}
			mu.Lock()
			claims[id]++
			mu.Unlock()
			d.end(k, true)
		})
	}
	wg.Wait()
	assert.Len(t, claims, ids)
	for id, n := range claims {
		assert.Equal(t, 1, n, "id %s claimed more than once", id)
	}
	assert.Equal(t, ids, d.size())
	assert.Empty(t, d.pending)
}

func BenchmarkLocalDedup(b *testing.B) {
	d := newLocalDedup(time.Hour, time.Now)
	keys := make([]idKey, 1<<16)
	for i := range keys {
		keys[i] = keyOf(fmt.Sprintf("%032x", i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := keys[i%len(keys)]
		k[0] ^= byte(i >> 16) // a new id for every op past the table's size
		if dup, _ := d.begin(context.Background(), k); !dup {
			d.end(k, true)
		}
	}
}

// TestLocalDedup_ExpireIsBounded: after a burst and the window, one
// callback drops at most expireMax of the burst's ids, and the callbacks
// after it drop the rest.
func TestLocalDedup_ExpireIsBounded(t *testing.T) {
	d, c := newTestDedup(time.Minute)
	n := 3 * expireMax
	for i := range n {
		require.False(t, stored(t, d, keyOf(fmt.Sprint(i)), true))
	}
	c.add(time.Hour)
	require.False(t, stored(t, d, keyOf("a"), true))
	assert.GreaterOrEqual(t, d.size(), n-expireMax+1, "one callback dropped at most expireMax")
	for i := 0; d.size() > 1 && i < 10; i++ {
		require.False(t, stored(t, d, keyOf("a"+fmt.Sprint(i)), true))
		c.add(2 * time.Minute) // each new id expires before the next
	}
	assert.Equal(t, 1, d.size(), "drained within a few callbacks")
}

// TestStore_OncePanics: a store that panics (the edge recovers handler
// panics) leaves its id free for WeCom's retry.
func TestStore_OncePanics(t *testing.T) {
	s := &Store{dedup: newLocalDedup(time.Hour, time.Now)}
	func() {
		defer func() { require.NotNil(t, recover()) }()
		_ = s.once(t.Context(), "cb", func() error { panic("boom") })
	}()
	require.Empty(t, s.dedup.pending)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ran := false
	require.NoError(t, s.once(ctx, "cb", func() error { ran = true; return nil }))
	assert.True(t, ran, "the retry stores it")
	require.NoError(t, s.once(t.Context(), "cb", func() error { t.Fatal("stored twice"); return nil }))
}

// TestLocalDedup_Sweep: a sweep drops every id the window has passed, with
// no callback arriving, and gives the set a new, smaller map once it holds
// under a quarter of its peak.
func TestLocalDedup_Sweep(t *testing.T) {
	d, c := newTestDedup(time.Minute)
	n := 10 * stampChunk
	for i := range n {
		require.False(t, stored(t, d, keyOf(fmt.Sprint(i)), true))
	}
	c.add(30 * time.Second)
	for i := range 100 {
		require.False(t, stored(t, d, keyOf(fmt.Sprint("late", i)), true))
	}
	assert.Equal(t, n+100, d.sweep(), "nothing past the window yet")
	old := d.stored

	c.add(40 * time.Second)
	assert.Equal(t, 100, d.sweep(), "the burst's ids, more than expireMax, all gone")
	assert.Equal(t, 100, d.peak)
	d.mu.Lock()
	fresh := d.stored
	d.mu.Unlock()
	old[keyOf("probe")] = struct{}{}
	_, shared := fresh[keyOf("probe")]
	assert.False(t, shared, "a new map")
	assert.True(t, stored(t, d, keyOf("late7"), true), "the window's ids are kept")
}
