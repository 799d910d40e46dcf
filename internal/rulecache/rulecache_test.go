package rulecache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

func TestCache_MissThenHit(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	g := GetterFunc(func(ctx context.Context, corp, rule string) (string, error) {
		calls.Add(1)
		<-release
		return "name-of-" + rule, nil
	})
	c := mustCache(New(map[string]Getter{"c1": g}))
	defer c.Close()

	name, ok := c.RuleName("c1", "r1")
	assert.False(t, ok, "a miss answers at once, while the lookup is still blocked")
	assert.Empty(t, name)
	c.RuleName("c1", "r1") // a second miss does not start a second lookup
	close(release)
	natstest.WaitFor(t, 5*time.Second, func() error {
		if _, ok := c.RuleName("c1", "r1"); !ok {
			return errors.New("not yet known")
		}
		return nil
	})
	name, _ = c.RuleName("c1", "r1")
	assert.Equal(t, "name-of-r1", name)
	assert.Equal(t, int32(1), calls.Load())

	_, ok = c.RuleName("other-corp", "r1")
	assert.False(t, ok, "no getter for the corp: stays unknown")
}

func TestCache_FailureRetriesLater(t *testing.T) {
	var calls atomic.Int32
	now := time.Unix(1700000000, 0)
	g := GetterFunc(func(context.Context, string, string) (string, error) {
		if calls.Add(1) == 1 {
			return "", fmt.Errorf("45009")
		}
		return "ok", nil
	})
	c := mustCache(New(map[string]Getter{"c1": g}))
	c.now = func() time.Time { return now }
	defer c.Close()
	c.RuleName("c1", "r1")
	natstest.WaitFor(t, 5*time.Second, func() error {
		if calls.Load() != 1 {
			return errors.New("no call yet")
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.entries[[2]string{"c1", "r1"}].pending {
			return errors.New("pending")
		}
		return nil
	})
	c.RuleName("c1", "r1")
	assert.Equal(t, int32(1), calls.Load(), "no retry within the retry interval")
	now = now.Add(DefaultRetry)
	c.RuleName("c1", "r1")
	natstest.WaitFor(t, 5*time.Second, func() error {
		if n, _ := c.RuleName("c1", "r1"); n != "ok" {
			return errors.New("not renamed")
		}
		return nil
	})
}

func TestCache_Set(t *testing.T) {
	c := mustCache(New(nil))
	defer c.Close()
	c.Set("c1", "r1", "n")
	name, ok := c.RuleName("c1", "r1")
	assert.True(t, ok)
	assert.Equal(t, "n", name)
}

func TestCache_Resolve(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		// Concurrent lookups: three rules, each answering only once all
		// three have been asked, so a serial Resolve would time out.
		var asked sync.WaitGroup
		asked.Add(3)
		g := GetterFunc(func(ctx context.Context, corp, rule string) (string, error) {
			asked.Done()
			asked.Wait()
			return "name-of-" + rule, nil
		})
		c := mustCache(New(map[string]Getter{"c1": g}))
		defer c.Close()
		c.Resolve(context.Background(), "c1", []string{"r1", "r2", "r3"})
		for _, r := range []string{"r1", "r2", "r3"} {
			name, ok := c.RuleName("c1", r)
			assert.True(t, ok, r)
			assert.Equal(t, "name-of-"+r, name)
		}
	})
	t.Run("Bounded", func(t *testing.T) {
		release := make(chan struct{})
		g := GetterFunc(func(ctx context.Context, corp, rule string) (string, error) {
			select {
			case <-release:
				return "late", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
		c := mustCache(New(map[string]Getter{"c1": g}))
		c.wait = 50 * time.Millisecond
		defer c.Close()
		defer close(release)
		c.Resolve(context.Background(), "c1", []string{"r1"}) // returns after the wait
		_, ok := c.RuleName("c1", "r1")
		assert.False(t, ok, "a WeCom that does not answer costs the name, not the event")
	})
	t.Run("FailedNotWaitedForAgain", func(t *testing.T) {
		var calls atomic.Int32
		g := GetterFunc(func(ctx context.Context, corp, rule string) (string, error) {
			calls.Add(1)
			return "", errors.New("rule deleted")
		})
		c := mustCache(New(map[string]Getter{"c1": g}))
		defer c.Close()
		c.Resolve(context.Background(), "c1", []string{"r1"})
		c.Resolve(context.Background(), "c1", []string{"r1"})
		assert.Equal(t, int32(1), calls.Load(), "within DefaultRetry a failed rule is not asked again")
	})
	t.Run("SetWhileLookupPending", func(t *testing.T) {
		release := make(chan struct{})
		g := GetterFunc(func(ctx context.Context, corp, rule string) (string, error) {
			<-release
			return "from-lookup", nil
		})
		c := mustCache(New(map[string]Getter{"c1": g}))
		defer c.Close()
		c.RuleName("c1", "r1")
		c.Set("c1", "r1", "from-set")
		close(release)
		c.Resolve(context.Background(), "c1", []string{"r1"}) // known: no wait
		name, ok := c.RuleName("c1", "r1")
		assert.True(t, ok)
		assert.NotEmpty(t, name)
	})
}

// TestCache_NewFuncAndForget: a corp's getter is asked for at lookup time,
// so a corp that appears later gets names; Forget drops a corp's names.
func TestCache_NewFuncAndForget(t *testing.T) {
	var served atomic.Bool
	g := GetterFunc(func(ctx context.Context, corp, rule string) (string, error) { return corp + "/" + rule, nil })
	c := mustCache(NewFunc(func(corp string) Getter {
		if corp == "late" && served.Load() {
			return g
		}
		return nil
	}))
	defer c.Close()

	_, ok := c.RuleName("late", "r1")
	assert.False(t, ok, "no getter yet: no name, no lookup")
	c.Forget("late") // drops the failed entry, so the next miss looks up
	served.Store(true)
	c.RuleName("late", "r1")
	natstest.WaitFor(t, 5*time.Second, func() error {
		if name, ok := c.RuleName("late", "r1"); !ok || name != "late/r1" {
			return fmt.Errorf("name %q %v", name, ok)
		}
		return nil
	})
	c.Set("other", "r9", "kept")
	c.Forget("late")
	served.Store(false)
	_, ok = c.RuleName("late", "r1")
	assert.False(t, ok, "forgotten")
	name, ok := c.RuleName("other", "r9")
	assert.True(t, ok)
	assert.Equal(t, "kept", name, "other corps' names stay")
}

// TestCache_ForgetDuringLookup: a lookup under way when its corp is
// forgotten does not put the name back (a cancelled corp's rule names are
// its data); its waiters are still released, and a later miss looks up
// anew.
func TestCache_ForgetDuringLookup(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	g := GetterFunc(func(ctx context.Context, corp, rule string) (string, error) {
		if calls.Add(1) == 1 {
			<-release
		}
		return "secret-name", nil
	})
	c := mustCache(New(map[string]Getter{"c1": g}))
	defer c.Close()

	c.RuleName("c1", "r1") // starts the lookup, which blocks
	c.mu.Lock()
	done := c.entries[[2]string{"c1", "r1"}].done
	c.mu.Unlock()
	c.Forget("c1")
	close(release)
	<-done // the waiters of the forgotten lookup are released
	c.mu.Lock()
	_, kept := c.entries[[2]string{"c1", "r1"}]
	c.mu.Unlock()
	assert.False(t, kept, "the forgotten corp's name is not cached by the lookup that was under way")

	c.RuleName("c1", "r1")
	natstest.WaitFor(t, 5*time.Second, func() error {
		if _, ok := c.RuleName("c1", "r1"); !ok {
			return errors.New("not looked up again")
		}
		return nil
	})
	assert.Equal(t, int32(2), calls.Load())
}

// mustCache returns c, or panics on err: New and NewFunc fail only for a
// bad option, and these tests give none.
func mustCache(c *Cache, err error) *Cache {
	if err != nil {
		panic(err)
	}
	return c
}
