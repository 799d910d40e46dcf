package fetch_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wecomhit/wecomhit/internal/fetch"
	"github.com/wecomhit/wecomhit/internal/natstest"
)

// dropCorps is a Corps from which a test takes a corp away, as the
// registry's Mirror does on cancel_auth before anything calls Forget.
type dropCorps struct {
	mu    sync.Mutex
	corps []string
}

func (d *dropCorps) Corps(string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.corps)
}

func (d *dropCorps) Resolve(app, corp string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if corp == "" || !slices.Contains(d.corps, corp) {
		return "", assert.AnError
	}
	return corp, nil
}

func (d *dropCorps) drop(corp string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.corps = slices.DeleteFunc(d.corps, func(c string) bool { return c == corp })
}

// TestScheduler_CancelledBetweenPages: a corp that leaves the Corps
// (cancel_auth seen by this replica's Mirror) while a fetch of many pages
// is under way is not fetched one page more, although nobody has called
// Forget yet: the scheduler asks the Corps before each page, as it does
// before each callback and poll (found in review R5; Forget may come
// later than the Directory's change).
func TestScheduler_CancelledBetweenPages(t *testing.T) {
	cs := &dropCorps{}
	m := newManyCorps(t, 1, fetch.WithWorkers(1), fetch.WithPageSize(10), fetch.WithCorps(cs))
	cs.mu.Lock()
	cs.corps = slices.Clone(m.corps)
	cs.mu.Unlock()
	hot := corpID
	for range 300 { // 30 pages
		m.message(hot)
	}
	done := m.callback(hot)
	natstest.Eventually(t, 10*time.Second, "the first pages", func() bool { return len(m.api.of(hot)) >= 3 })
	release := m.api.holdNext()
	defer release()
	natstest.Eventually(t, 10*time.Second, "a page held", m.api.held)
	before := len(m.api.of(hot))

	cs.drop(hot) // cancelled; Forget not called yet
	release()
	<-done

	assert.LessOrEqual(t, len(m.api.of(hot)), before,
		"no get_hit_msg_list for a corp after it left the Corps (got %d more)", len(m.api.of(hot))-before)
}
