package broker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Set-up pacing. One request gets at most ensureAttemptTimeout, so that a
// request lost in a cluster's leader election is asked again rather than
// waited on until the caller's whole budget is gone; between attempts the
// wait doubles from ensureFirstBackoff to ensureMaxBackoff, with jitter so
// that replicas started together do not ask in lockstep.
const (
	ensureAttemptTimeout = 3 * time.Second
	ensureFirstBackoff   = 100 * time.Millisecond
	ensureMaxBackoff     = 2 * time.Second
	// DefaultSetupTimeout bounds EnsureStream and EnsureKeyValue when ctx
	// has no deadline.
	DefaultSetupTimeout = time.Minute
)

// errRaced: a create found the stream made by someone else meanwhile (with
// another config, or the server would have answered success); bind it and
// compare again.
var errRaced = errors.New("created concurrently")

// EnsureStream makes the stream cfg.Name exist with cfg, safely when many
// replicas do it at once: it binds the stream if it exists and updates it
// only when a field the receiver sets differs (streamDiff); it creates an
// absent stream with a plain create, and when another replica's create
// wins, binds that and compares again. Transient errors (Transient, and a
// request that timed out while ctx has time left) are retried with
// back-off until ctx ends; without a deadline on ctx it allows
// DefaultSetupTimeout. Retries are logged on zerolog.Ctx(ctx).
//
// nats.go's CreateOrUpdateStream is not used: called by two clients on one
// stream a few milliseconds apart on a fresh cluster, both time out.
func EnsureStream(ctx context.Context, js jetstream.StreamManager, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return ensure(ctx, "stream "+cfg.Name, func(ctx context.Context) (jetstream.Stream, error) {
		s, err := js.Stream(ctx, cfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			s, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil, errRaced
			}
			return s, err
		case err != nil:
			return nil, err
		}
		diff := streamDiff(s.CachedInfo().Config, cfg)
		if len(diff) == 0 {
			return s, nil
		}
		zerolog.Ctx(ctx).Info().Str("stream", cfg.Name).Strs("changed", diff).Msg("updating stream config")
		return js.UpdateStream(ctx, cfg)
	})
}

// EnsureBatchedStream is EnsureStream for a stream that asks for fast
// batches (cfg.AllowBatchPublish), and reports whether the stream it
// leaves takes them. nats-server 2.12 and 2.13 check stream configs
// strictly and refuse allow_batched, which came in 2.14, as an unknown
// field ("invalid JSON", 10025); rather than fail to start there, the
// stream is ensured without the setting and batched is false, so the
// caller publishes one message at a time. A server before 2.12 drops the
// field instead: the stream comes back without it, and batched is false
// as well. (Checked against 2.15.3's unmarshalRequest, which refuses
// unknown fields in strict mode, the default since 2.12; the 2.12 and
// 2.13 binaries were not run here.)
func EnsureBatchedStream(ctx context.Context, js jetstream.StreamManager, cfg jetstream.StreamConfig) (s jetstream.Stream, batched bool, err error) {
	s, err = EnsureStream(ctx, js, cfg)
	if cfg.AllowBatchPublish && refusedBatchSetting(err) {
		zerolog.Ctx(ctx).Warn().Str("stream", cfg.Name).
			Msg("the NATS server refuses allow_batched (nats-server 2.12 or 2.13): stream set up without fast batches")
		cfg.AllowBatchPublish = false
		s, err = EnsureStream(ctx, js, cfg)
	}
	if err != nil {
		return nil, false, err
	}
	return s, s.CachedInfo().Config.AllowBatchPublish, nil
}

// refusedBatchSetting reports whether err is a server refusing a stream
// config for its allow_batched field: the strict JSON check of 2.12 and
// 2.13 answers 10025 with encoding/json's `unknown field "allow_batched"`.
func refusedBatchSetting(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeInvalidJSON &&
		strings.Contains(apiErr.Description, "allow_batched")
}

// errCodeInvalidJSON is nats-server's JSInvalidJSONErr.
const errCodeInvalidJSON jetstream.ErrorCode = 10025

// EnsureKeyValue is EnsureStream for a KV bucket: bind, update only when
// the bucket's config differs from cfg (kvDiff), create when absent, and
// retry transient errors within ctx.
func EnsureKeyValue(ctx context.Context, js jetstream.KeyValueManager, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return ensure(ctx, "kv bucket "+cfg.Bucket, func(ctx context.Context) (jetstream.KeyValue, error) {
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			kv, err = js.CreateKeyValue(ctx, cfg)
			if errors.Is(err, jetstream.ErrBucketExists) {
				return nil, errRaced
			}
			return kv, err
		case err != nil:
			return nil, err
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, err
		}
		diff := kvDiff(st.Config(), cfg)
		if len(diff) == 0 {
			return kv, nil
		}
		zerolog.Ctx(ctx).Info().Str("bucket", cfg.Bucket).Strs("changed", diff).Msg("updating kv bucket config")
		return js.UpdateKeyValue(ctx, cfg)
	})
}

// ensure runs once until it succeeds, fails for good, or ctx ends; it
// returns the last real error, wrapped with what, and ctx's error.
func ensure[T any](ctx context.Context, what string, once func(context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSetupTimeout)
		defer cancel()
	}
	log := zerolog.Ctx(ctx)
	backoff := ensureFirstBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, ensureAttemptTimeout)
		v, err := once(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info().Str("what", what).Int("attempts", attempt).Msg("jetstream set up")
			}
			return v, nil
		}
		raced := errors.Is(err, errRaced)
		if raced && attempt <= 3 {
			continue // bind what the other creator made, at once
		}
		if ctx.Err() != nil {
			return v, fmt.Errorf("set up %s: %w (last error: %w)", what, ctx.Err(), err)
		}
		if !raced && !Transient(err) && !errors.Is(err, context.DeadlineExceeded) {
			return v, fmt.Errorf("set up %s: %w", what, err)
		}
		// Once, then every fifth: a cluster forming takes seconds, and a
		// line per attempt says nothing new.
		if attempt == 1 || attempt%5 == 0 {
			log.Warn().Err(err).Str("what", what).Int("attempt", attempt).Msg("jetstream not ready; retrying")
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, fmt.Errorf("set up %s: %w (last error: %w)", what, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, ensureMaxBackoff)
	}
}

// Transient reports whether err is a JetStream condition that passes by
// itself: no one answering (a stream without a leader during an election,
// a cluster still forming, which nats.go reports for API requests as
// JetStream not enabled), a connection being re-established, or the
// server saying it is temporarily unavailable. Not context errors: whether the
// caller has time left to retry is the caller's business.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeClusterNoPeers, errCodeClusterNotAvail, errCodeClusterNotLeader,
			errCodeStreamOffline:
			return true
		}
	}
	return false
}

// JetStream API error codes for conditions that pass (nats-server's
// jetstream_errors_generated.go); nats.go has no names for them.
const (
	// No peers for placement: at start-up, R3 on a cluster whose nodes
	// have not all joined yet.
	errCodeClusterNoPeers   jetstream.ErrorCode = 10005
	errCodeClusterNotAvail  jetstream.ErrorCode = 10008
	errCodeClusterNotLeader jetstream.ErrorCode = 10009
	errCodeStreamOffline    jetstream.ErrorCode = 10118
)

// streamDiff names the fields the receiver sets in want that cur does not
// have. Zero limits in want are the server's "unlimited" (-1) and zero
// replicas one, as the server stores them; fields the receiver never sets
// are not compared, so an operator's change to them stays.
func streamDiff(cur, want jetstream.StreamConfig) []string {
	var d []string
	add := func(ok bool, name string) {
		if !ok {
			d = append(d, name)
		}
	}
	add(cur.Description == want.Description, "description")
	add(slices.Equal(cur.Subjects, want.Subjects), "subjects")
	add(cur.Retention == want.Retention, "retention")
	add(cur.Discard == want.Discard, "discard")
	add(cur.Storage == want.Storage, "storage")
	add(cur.MaxAge == want.MaxAge, "max_age")
	add(cur.MaxBytes == unlimited(want.MaxBytes), "max_bytes")
	add(cur.MaxMsgs == unlimited(want.MaxMsgs), "max_msgs")
	add(int64(cur.MaxMsgSize) == unlimited(int64(want.MaxMsgSize)), "max_msg_size")
	add(want.MaxMsgsPerSubject == 0 || cur.MaxMsgsPerSubject == want.MaxMsgsPerSubject, "max_msgs_per_subject")
	add(want.Duplicates == 0 || cur.Duplicates == want.Duplicates, "duplicate_window")
	add(cur.Replicas == max(want.Replicas, 1), "replicas")
	add(cur.AllowRollup == want.AllowRollup, "allow_rollup_hdrs")
	add(cur.DenyDelete == want.DenyDelete, "deny_delete")
	add(cur.DenyPurge == want.DenyPurge, "deny_purge")
	add(cur.Compression == want.Compression, "compression")
	// A server before 2.12 drops allow_batched (2.11 with a warning about
	// the unknown field): such a stream is updated at every start, and its
	// owner publishes one message at a time. 2.12 and 2.13 refuse the
	// field, and EnsureBatchedStream sets the stream up without it.
	add(cur.AllowBatchPublish == want.AllowBatchPublish, "allow_batched")
	return d
}

// kvDiff is streamDiff for a bucket's config, with nats.go's defaults for
// zero values (history 1, no limits, one replica).
func kvDiff(cur, want jetstream.KeyValueConfig) []string {
	var d []string
	add := func(ok bool, name string) {
		if !ok {
			d = append(d, name)
		}
	}
	add(cur.Description == want.Description, "description")
	add(cur.History == max(want.History, 1), "history")
	add(cur.TTL == want.TTL, "ttl")
	add(cur.MaxBytes == unlimited(want.MaxBytes), "max_bytes")
	add(int64(cur.MaxValueSize) == unlimited(int64(want.MaxValueSize)), "max_value_size")
	add(cur.Storage == want.Storage, "storage")
	add(cur.Replicas == max(want.Replicas, 1), "replicas")
	add(cur.Compression == want.Compression, "compression")
	add(cur.LimitMarkerTTL == want.LimitMarkerTTL, "limit_marker_ttl")
	return d
}

// unlimited maps a zero limit to -1, as the server stores it.
func unlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
