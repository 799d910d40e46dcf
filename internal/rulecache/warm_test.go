package rulecache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// fakeRules is a Lister over corps' rules, which counts the listings under
// way at once and fails a corp's first tries when told.
type fakeRules struct {
	mu       sync.Mutex
	now, max int
	calls    map[string]int
	failures map[string]int // corp: tries that fail before one succeeds
	gate     chan struct{}  // when set, a listing waits for it
}

func (f *fakeRules) ListRuleNames(ctx context.Context, corp string, set func(ruleID, name string)) error {
	f.mu.Lock()
	f.now++
	f.max = max(f.max, f.now)
	f.calls[corp]++
	fail := f.calls[corp] <= f.failures[corp]
	gate := f.gate
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.now--
		f.mu.Unlock()
	}()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New("no suite_ticket yet")
	}
	set("r1", "rule one of "+corp)
	return nil
}

func (f *fakeRules) callsOf(corp string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[corp]
}

// noLookups is a Cache that looks nothing up: names come from warm-up.
func noLookups(t *testing.T) *Cache {
	t.Helper()
	c, err := NewFunc(func(string) Getter { return nil })
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func startWarmer(t *testing.T, c *Cache, l Lister, serves func(string) bool, first []string, opts ...WarmOption) *Warmer {
	t.Helper()
	w, err := NewWarmer(c, func(corp string) Lister {
		if serves != nil && !serves(corp) {
			return nil
		}
		return l
	}, first, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func waitStarted(t *testing.T, w *Warmer) {
	t.Helper()
	select {
	case <-w.Started():
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch never finished")
	}
}

// TestWarmer_Bounded: every corp of the first batch gets its names, at
// most WithWarmWorkers listings at a time, and Started closes once all
// are done.
func TestWarmer_Bounded(t *testing.T) {
	c := noLookups(t)
	l := &fakeRules{calls: map[string]int{}, gate: make(chan struct{})}
	var corps []string
	for i := range 40 {
		corps = append(corps, fmt.Sprintf("c%02d", i))
	}
	w := startWarmer(t, c, l, nil, corps, WithWarmWorkers(3))
	select {
	case <-w.Started():
		t.Fatal("started before any corp was listed")
	default:
	}
	close(l.gate)
	waitStarted(t, w)
	for _, corp := range corps {
		name, ok := c.RuleName(corp, "r1")
		assert.True(t, ok, corp)
		assert.Equal(t, "rule one of "+corp, name)
		assert.Equal(t, 1, l.callsOf(corp), "%s listed once", corp)
	}
	assert.LessOrEqual(t, l.max, 3, "never more listings at once than workers")
}

// TestWarmer_RetryDoesNotBlock: a corp that fails is retried later, while
// the corps behind it are listed meanwhile; one that never succeeds is
// given up after WithWarmAttempts; a corp no longer served is skipped, and
// Add lists a new corp once, however often one call names it.
func TestWarmer_RetryDoesNotBlock(t *testing.T) {
	c := noLookups(t)
	l := &fakeRules{calls: map[string]int{}, failures: map[string]int{"flaky": 1, "broken": 100}}
	gone := func(corp string) bool { return corp != "gone" }
	w := startWarmer(t, c, l, gone, []string{"broken", "flaky", "gone", "ok"}, WithWarmWorkers(1), WithWarmAttempts(2))
	waitStarted(t, w)
	_, ok := c.RuleName("ok", "r1")
	assert.True(t, ok)
	_, ok = c.RuleName("flaky", "r1")
	assert.True(t, ok, "listed on its second try")
	assert.Equal(t, 2, l.callsOf("broken"), "given up after its attempts")
	assert.Zero(t, l.callsOf("gone"), "a corp no longer served is not listed")

	w.Add("new", "new")
	natstest.Eventually(t, 10*time.Second, "the new corp's rules listed", func() bool { _, ok := c.RuleName("new", "r1"); return ok })
	assert.Equal(t, 1, l.callsOf("new"))
}

func TestNewWarmer_ErrInvalidOption(t *testing.T) {
	c := noLookups(t)
	lister := func(string) Lister { return nil }
	for name, opt := range map[string]WarmOption{"workers": WithWarmWorkers(0), "attempts": WithWarmAttempts(0)} {
		t.Run(name, func(t *testing.T) {
			_, err := NewWarmer(c, lister, nil, opt)
			assert.ErrorIs(t, err, ErrInvalidOption)
		})
	}
	_, err := NewWarmer(nil, lister, nil)
	assert.ErrorIs(t, err, ErrInvalidOption)
}
