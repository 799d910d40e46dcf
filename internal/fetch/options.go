package fetch

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// options are New's settings; the With... functions set them.
type options struct {
	pageSize           int
	leaseTTL           time.Duration
	pollInterval       time.Duration
	tokenlessPerMinute int
	tokenlessBudget    int
	workers            int
	replicas           int
	kvMaxBytes         int64
	now                func() time.Time
	metrics            *Metrics
	corps              Corps
	log                zerolog.Logger
}

// Option changes a default of New.
type Option func(*options) error

func invalid(option, format string, args ...any) error {
	return fmt.Errorf("%w: %s: "+format, append([]any{ErrInvalidOption, option}, args...)...)
}

// WithPageSize sets get_hit_msg_list's limit, 1..1000. Default 1000.
func WithPageSize(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 1000 {
			return invalid("WithPageSize", "%d: must be 1..1000", n)
		}
		o.pageSize = n
		return nil
	}
}

// WithLeaseTTL sets how long a replica's claim on an (app, corp) lasts
// without renewal; a replica that dies frees it after this. A lease exists
// only while a fetch with something to publish runs, renewed every fifth
// of it. At least 1s. Default DefaultLeaseTTL (10s).
func WithLeaseTTL(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Second {
			return invalid("WithLeaseTTL", "%s: must be at least 1s", d)
		}
		o.leaseTTL = d
		return nil
	}
}

// WithPollInterval sets how often each (app, corp) is fetched without a
// token, to catch hits whose callbacks were lost: the polls of one
// interval are spread evenly over it. 0 turns polling off, as
// fetch.poll_interval: 0s does. Default DefaultPollInterval (5m).
func WithPollInterval(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return invalid("WithPollInterval", "%s: must not be negative (0 is off)", d)
		}
		o.pollInterval = d
		return nil
	}
}

// WithTokenlessPerMinute caps the token-less get_hit_msg_list calls of one
// (app, corp) per minute, keeping under WeCom's strict limit. At least 1.
// Default 6.
func WithTokenlessPerMinute(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalid("WithTokenlessPerMinute", "%d: must be at least 1", n)
		}
		o.tokenlessPerMinute = n
		return nil
	}
}

// WithTokenlessBudget caps the token-less get_hit_msg_list calls per
// minute across every (app, corp) of this replica: polls wait for it, and
// callbacks go first. At least 1. Default DefaultTokenlessBudget (2400).
func WithTokenlessBudget(perMinute int) Option {
	return func(o *options) error {
		if perMinute < 1 {
			return invalid("WithTokenlessBudget", "%d: must be at least 1", perMinute)
		}
		o.tokenlessBudget = perMinute
		return nil
	}
}

// WithWorkers sets how many pages are fetched at once, across all corps.
// At least 1. Default DefaultWorkers (16).
func WithWorkers(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalid("WithWorkers", "%d: must be at least 1", n)
		}
		o.workers = n
		return nil
	}
}

// WithReplicas sets the replicas of the KV buckets. At least 1. Default 1.
func WithReplicas(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalid("WithReplicas", "%d: must be at least 1", n)
		}
		o.replicas = n
		return nil
	}
}

// WithKVMaxBytes caps each KV bucket, so that a full store elsewhere cannot
// take their room (the server reserves it). 0, the default, is no cap.
func WithKVMaxBytes(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return invalid("WithKVMaxBytes", "%d: must not be negative (0 is no cap)", n)
		}
		o.kvMaxBytes = n
		return nil
	}
}

// WithClock sets the clock of cursors, tokens, health and the per-corp
// limit. The scheduler's waits stay on the real clock. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return invalid("WithClock", "nil clock")
		}
		o.now = now
		return nil
	}
}

// WithMetrics records pages, errors, cursor lag, health, token-less calls,
// KV operations and queue lengths (NewMetrics). Default: none.
func WithMetrics(m *Metrics) Option {
	return func(o *options) error {
		if m == nil {
			return invalid("WithMetrics", "nil metrics")
		}
		o.metrics = m
		return nil
	}
}

// WithCorps tells which corps each app serves, asked on every callback
// and poll (*corps.Directory). Default: the Corps listed in each App, fixed.
func WithCorps(c Corps) Option {
	return func(o *options) error {
		if c == nil {
			return invalid("WithCorps", "nil corps")
		}
		o.corps = c
		return nil
	}
}

// WithLogger sets the logger. Default zerolog.Nop().
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error {
		o.log = l
		return nil
	}
}
