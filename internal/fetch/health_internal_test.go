package fetch

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wecomhit/wecomhit/internal/natstest"
)

// TestMerge: pending outcomes merge into the stored health; a success never
// erases a failure another replica recorded after it.
func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	e := func(api string, code, since, last int) *HealthError {
		return &HealthError{API: api, Errcode: code, Since: at(since), At: at(last)}
	}
	failing := Health{ConsecutiveFailures: 2, LastSuccess: at(1), LastError: e("get_hit_msg_list", -1, 5, 10)}
	for _, tt := range []struct {
		name   string
		stored Health
		p      healthPending
		want   Health
	}{
		{"FirstSuccess", Health{}, healthPending{success: at(3)}, Health{LastSuccess: at(3)}},
		{"SuccessAfterFailures", failing, healthPending{success: at(20)},
			Health{LastSuccess: at(20), LastError: failing.LastError}},
		{"SuccessBeforeAnotherReplicasFailure", failing, healthPending{success: at(7)},
			Health{ConsecutiveFailures: 2, LastSuccess: at(7), LastError: failing.LastError}},
		{"OlderSuccessIgnored", Health{LastSuccess: at(9)}, healthPending{success: at(7)}, Health{LastSuccess: at(9)}},
		{"SameErrorKeepsSince", failing, healthPending{failures: 3, err: e("get_hit_msg_list", -1, 12, 14)},
			Health{ConsecutiveFailures: 5, LastSuccess: at(1), LastError: e("get_hit_msg_list", -1, 5, 14)}},
		{"OtherErrorNewSince", failing, healthPending{failures: 1, err: e("get_suite_token", 40085, 12, 12)},
			Health{ConsecutiveFailures: 3, LastSuccess: at(1), LastError: e("get_suite_token", 40085, 12, 12)}},
		{"SuccessThenFailure", failing, healthPending{success: at(20), failures: 1, err: e("get_hit_msg_list", -1, 25, 25)},
			Health{ConsecutiveFailures: 1, LastSuccess: at(20), LastError: e("get_hit_msg_list", -1, 25, 25)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, merge(tt.stored, tt.p))
		})
	}
}

// TestHealthRecorder_PendingDropsWrittenEntries: the recorder keeps no
// entry per corp for good: once an outcome is written and nothing changed
// for healthWriteEvery, the entry goes; the next outcome is written at
// once, as it would have been with the entry kept.
func TestHealthRecorder_PendingDropsWrittenEntries(t *testing.T) {
	_, js := natstest.Connect(t, natstest.RunServer(t))
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
	}
	f, err := New(js, []App{{Name: "a", API: noLister{}, Corps: []string{"c1", "c2"}}}, noLister{}, WithClock(clock))
	require.NoError(t, err)
	ctx := natstest.Context(t)
	require.NoError(t, f.Setup(ctx))
	r := f.health
	size := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.pending)
	}

	r.record(ctx, "a", "c1", nil)
	r.record(ctx, "a", "c2", nil)
	r.record(ctx, "a", "c2", errors.New("boom")) // a change: written at once
	require.Equal(t, 2, size())
	r.flushAll(ctx)
	assert.Equal(t, 2, size(), "written just now: kept, to rate-limit the writes")

	advance(time.Second)
	r.record(ctx, "a", "c1", nil) // same state, not due: pending, dirty
	advance(healthWriteEvery)
	r.flushAll(ctx)
	assert.Equal(t, 1, size(), "c2 written long enough ago and unchanged: dropped; c1 written by this flush: kept")

	advance(healthWriteEvery)
	r.flushAll(ctx)
	assert.Equal(t, 0, size(), "nothing per corp stays")

	// The next outcome is written at once: the failure ends.
	r.record(ctx, "a", "c2", nil)
	e, err := f.health.kv.Get(ctx, key("a", "c2"))
	require.NoError(t, err)
	var h Health
	require.NoError(t, json.Unmarshal(e.Value(), &h))
	assert.False(t, h.Failing())
	assert.Equal(t, now, h.LastSuccess.UTC())
}
