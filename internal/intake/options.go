package intake

import (
	"time"

	"github.com/rs/zerolog"

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
	maxMsgSize      int32
	batching        bool
	localDedup      bool
	loadBudget      time.Duration // for loadIDs; defaultLoadBudget, shorter in tests
	metrics         *Metrics
	log             zerolog.Logger
	// floorEvery: how often Consume reads its consumer's ack floor;
	// defaultFloorEvery, shorter in tests (export_test.go).
	floorEvery time.Duration
}

// WithReplicas sets the stream's replicas: 1 on a single server, 3 on a
// cluster, at most 5. Zero keeps DefaultReplicas.
func WithReplicas(n int) Option {
	return func(o *options) error { return broker.SetReplicas(ErrInvalidOption, "WithReplicas", n, &o.replicas) }
}

// WithMaxAge sets how long a record is kept. Zero keeps DefaultMaxAge.
func WithMaxAge(d time.Duration) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxAge", d, &o.maxAge) }
}

// WithDuplicateWindow sets the window in which a repeated callback ID is
// acked without being stored again; at most the max age. Zero keeps
// DefaultDuplicateWindow.
func WithDuplicateWindow(d time.Duration) Option {
	return func(o *options) error {
		return broker.SetLimit(ErrInvalidOption, "WithDuplicateWindow", d, &o.duplicateWindow)
	}
}

// WithMaxBytes caps the stream; zero (the default) is no cap beyond the
// server's store limit. When it is full, Store fails with ErrStoreFull
// rather than drop a stored record (DiscardNew): stored callbacks were
// answered success, refused ones are retried by WeCom.
func WithMaxBytes(n int64) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxBytes", n, &o.maxBytes) }
}

// WithMaxMsgSize caps one record; RecordLimit gives the size a callback
// body allowed by the endpoint can grow to. Zero (the default) is no cap.
func WithMaxMsgSize(n int32) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxMsgSize", n, &o.maxMsgSize) }
}

// WithBatching turns Store's group commit on or off: callbacks arriving
// while another is being stored go to the stream as one fast batch
// (Store). Default true; it takes effect once Setup finds the stream
// allowing fast batches.
func WithBatching(on bool) Option {
	return func(o *options) error {
		o.batching = on
		return nil
	}
}

// WithLocalDedup makes the Store keep the ids it stored within the
// duplicate window itself, instead of the server (dedup.go): the records
// carry their id in IDHeader, not Nats-Msg-Id, and Setup loads the ids of
// those stored within the window. Only for a Store that is the only
// writer of callback ids to the stream, as with a receiver's embedded
// server: a Store of another process would not see these ids. Default
// false.
func WithLocalDedup(on bool) Option {
	return func(o *options) error {
		o.localDedup = on
		return nil
	}
}

// WithMetrics records PubAck latency and handled callbacks (NewMetrics).
// Default (or nil): nothing is recorded.
func WithMetrics(m *Metrics) Option {
	return func(o *options) error {
		o.metrics = m
		return nil
	}
}

// WithLogger sets the logger of Consume, RunCompactor and batching, which
// add their component (and consumer) fields. Default zerolog.Nop.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error {
		o.log = l
		return nil
	}
}
