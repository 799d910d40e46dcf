package publish

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/deadletter"
)

// Option sets an optional setting of New. Each checks its argument; a bad
// one makes New fail with ErrInvalidOption, naming the option.
type Option func(*options) error

type options struct {
	noFastBatches   bool
	names           RuleNames
	replicas        int
	maxAge          time.Duration
	duplicateWindow time.Duration
	window          int
	pageTimeout     time.Duration
	maxBytes        int64
	maxMsgSize      int32
	discardOld      bool
	corpMaxAge      time.Duration
	corpMaxBytes    int64
	deadLetters     *deadletter.Stream
	metrics         *Metrics
	log             zerolog.Logger
}

// WithRuleNames gives events their rules' names; without it (or with nil)
// they carry empty rule names.
func WithRuleNames(names RuleNames) Option {
	return func(o *options) error {
		o.names = names
		return nil
	}
}

// WithReplicas sets the replicas of WECOM_HITS and WECOM_CORP_EVENTS: 1 on
// a single server, 3 on a cluster, at most 5. Zero keeps DefaultReplicas.
func WithReplicas(n int) Option {
	return func(o *options) error { return broker.SetReplicas(ErrInvalidOption, "WithReplicas", n, &o.replicas) }
}

// WithMaxAge sets how long WECOM_HITS keeps an event. Zero keeps
// DefaultMaxAge.
func WithMaxAge(d time.Duration) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxAge", d, &o.maxAge) }
}

// WithDuplicateWindow sets the window in which a republished event (same
// id) is stored once; at most the max age. Zero keeps
// DefaultDuplicateWindow.
func WithDuplicateWindow(d time.Duration) Option {
	return func(o *options) error {
		return broker.SetLimit(ErrInvalidOption, "WithDuplicateWindow", d, &o.duplicateWindow)
	}
}

// WithPageTimeout bounds Publish when ctx has no deadline. Zero keeps
// DefaultPageTimeout.
func WithPageTimeout(d time.Duration) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithPageTimeout", d, &o.pageTimeout) }
}

// WithCorpMaxAge sets how long WECOM_CORP_EVENTS (SetupCorp) keeps a
// lifecycle event; at least DefaultCorpDuplicateWindow. Zero keeps
// DefaultCorpMaxAge.
func WithCorpMaxAge(d time.Duration) Option {
	return func(o *options) error {
		if d != 0 && d < DefaultCorpDuplicateWindow {
			return fmt.Errorf("%w: WithCorpMaxAge(%s): shorter than the corp events' duplicate window %s", ErrInvalidOption, d, DefaultCorpDuplicateWindow)
		}
		if d > 0 {
			o.corpMaxAge = d
		}
		return nil
	}
}

// WithWindow bounds the publishes awaiting an ack at once. Zero keeps
// DefaultWindow.
func WithWindow(n int) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithWindow", n, &o.window) }
}

// WithFastBatches publishes each page's events to WECOM_HITS as fast-ingest
// batches, one ack per flow window instead of one per event (on, the
// default), when the stream takes them; Setup turns the stream's
// allow_batched on. Off, events are published one by one, each acked, and
// Setup leaves allow_batched off.
func WithFastBatches(on bool) Option {
	return func(o *options) error {
		o.noFastBatches = !on
		return nil
	}
}

// WithMaxBytes caps WECOM_HITS; zero (the default) is no cap beyond the
// server's store limit. When it is full, a publish fails (and with it the
// page, so the fetch stops with its cursor unmoved) unless WithDiscardOld
// is on.
func WithMaxBytes(n int64) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxBytes", n, &o.maxBytes) }
}

// WithMaxMsgSize caps one event; zero (the default) is no cap beyond the
// server's max payload.
func WithMaxMsgSize(n int32) Option {
	return func(o *options) error { return broker.SetLimit(ErrInvalidOption, "WithMaxMsgSize", n, &o.maxMsgSize) }
}

// WithDiscardOld(true) makes a full WECOM_HITS drop its oldest events to
// take new ones, instead of refusing them: fetching never stops, but a
// consumer lagging by more than the max bytes misses events. Default off.
func WithDiscardOld(on bool) Option {
	return func(o *options) error {
		o.discardOld = on
		return nil
	}
}

// WithCorpMaxBytes caps WECOM_CORP_EVENTS, which refuses new events when
// full. Zero keeps DefaultCorpMaxBytes.
func WithCorpMaxBytes(n int64) Option {
	return func(o *options) error {
		return broker.SetLimit(ErrInvalidOption, "WithCorpMaxBytes", n, &o.corpMaxBytes)
	}
}

// WithDeadLetters sets where the records that cannot become events go;
// Setup sets its stream up too. Default (or nil): a deadletter.Stream on
// the same js and prefix, with its defaults.
func WithDeadLetters(d *deadletter.Stream) Option {
	return func(o *options) error {
		o.deadLetters = d
		return nil
	}
}

// WithMetrics records events and PubAck latency (NewMetrics). Default (or
// nil): nothing is recorded.
func WithMetrics(m *Metrics) Option {
	return func(o *options) error {
		o.metrics = m
		return nil
	}
}

// WithLogger sets the logger; New adds the component field. Default
// zerolog.Nop.
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) error {
		o.log = l
		return nil
	}
}
