package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/corps"
)

func corpChange(corp string, state corps.State) corps.Change {
	return corps.Change{Corp: corps.Corp{App: "archive", CorpID: corp, State: state}}
}

// TestCorpQueue_ForgetNotBehindAnnounce: a cancellation is forgotten at
// once while an earlier change's announcement is stuck (corpauth's
// Announce may take up to two minutes, and a cancellation's runs the full
// erase), and the Mirror's watch never waits: a first start seeding
// 10,000 corps, and a corp changing again and again, queue one entry per
// corp.
func TestCorpQueue_ForgetNotBehindAnnounce(t *testing.T) {
	q := newCorpQueue()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stuck := make(chan struct{})
	announced := make(chan corps.Change, 16)
	forgotten := make(chan corpKey, 16)
	done := make(chan struct{}, 2)
	go func() {
		q.announceLoop(ctx, func(ch corps.Change) {
			announced <- ch
			<-stuck
		})
		done <- struct{}{}
	}()
	go func() {
		q.forgetLoop(ctx, func(k corpKey) { forgotten <- k })
		done <- struct{}{}
	}()

	q.put(corpChange("first", corps.Active))
	require.Equal(t, "first", (<-announced).Corp.CorpID, "being announced, and stuck")

	// Put never waits, however many changes are queued.
	for i := range 10_000 {
		q.put(corpChange(fmt.Sprintf("seed%05d", i), corps.Active))
	}
	for range 100 {
		q.put(corpChange("busy", corps.Active))
	}
	q.put(corpChange("gone", corps.Cancelled))
	announce, _ := q.len()
	assert.Equal(t, 10_002, announce, "one entry per corp")

	select {
	case k := <-forgotten:
		assert.Equal(t, corpKey{"archive", "gone"}, k)
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled corp was not forgotten while an announcement was stuck")
	}

	// A corp cancelled and authorized again before its turn is announced
	// once, as it is now, and was still forgotten.
	q.put(corpChange("back", corps.Cancelled))
	q.put(corpChange("back", corps.Active))
	assert.Equal(t, corpKey{"archive", "back"}, <-forgotten)
	close(stuck)
	var last corps.Change
	for range 10_003 {
		last = <-announced
	}
	assert.Equal(t, "back", last.Corp.CorpID)
	assert.Equal(t, corps.Active, last.Corp.State)
	select {
	case ch := <-announced:
		t.Fatalf("announced %s twice", ch.Corp.CorpID)
	default:
	}
	cancel()
	<-done
	<-done
}

// len is how many corps wait for an announcement, and for Forget: only
// the tests ask.
func (q *corpQueue) len() (announce, forget int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order), len(q.forget)
}
