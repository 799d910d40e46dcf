package deadletter

import (
	"time"

	"github.com/wecomhit/wecomhit/internal/broker"
)

// Option sets an optional setting of New. Each checks its argument; a bad
// one makes New fail with ErrInvalidOption, naming the option.
type Option func(*options) error

type options struct {
	replicas        int
	maxAge          time.Duration
	duplicateWindow time.Duration
	maxBytes        int64
}

// WithReplicas sets the stream's replicas: 1 on a single server, 3 on a
// cluster, at most 5. Zero keeps DefaultReplicas.
func WithReplicas(n int) Option {
	return func(o *options) error { return broker.SetReplicas(ErrInvalidOption, "WithReplicas", n, &o.replicas) }
}

// WithMaxAge sets how long a dead letter is kept. Zero keeps DefaultMaxAge.
func WithMaxAge(d time.Duration) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxAge", d, &o.maxAge) }
}

// WithDuplicateWindow sets the window in which a rewritten dead letter
// (same id) is stored once; at most the max age. Zero keeps
// DefaultDuplicateWindow.
func WithDuplicateWindow(d time.Duration) Option {
	return func(o *options) error {
		return broker.SetLimit(ErrInvalidOption, "WithDuplicateWindow", d, &o.duplicateWindow)
	}
}

// WithMaxBytes caps the stream; zero (the default) is no cap beyond the
// server's store limit. A full stream refuses new dead letters rather than
// dropping old ones: the writer's record then stays where it was (a
// callback is delivered again, a page with a bad entry fails and is
// fetched again), so nothing is lost while an operator makes room.
func WithMaxBytes(n int64) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxBytes", n, &o.maxBytes) }
}
