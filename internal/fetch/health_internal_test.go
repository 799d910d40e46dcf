package fetch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
