package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wecomhit/wecomhit/internal/broker"
	"github.com/wecomhit/wecomhit/internal/wecom"
)

// HealthBucket holds one Health per (app, corp), keyed like the cursors.
// Entries have no TTL: a corp that stopped failing an hour ago should still
// say when it last failed.
const HealthBucket = "wecom_corp_health"

// healthWriteEvery bounds the KV writes of a (app, corp) whose state does
// not change: a success after a success, or the same error again, updates
// the stored counters at most this often. A change (first failure, another
// error, recovery) is written at once.
const healthWriteEvery = 5 * time.Second

// Health is how the fetches of one (app, corp) have been going, across
// every replica: what status reports and alerts are built on.
type Health struct {
	// ConsecutiveFailures counts the fetches that failed since the last
	// one that succeeded.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// LastSuccess is when a fetch last succeeded; zero if none has.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the most recent failure, kept after a recovery so a
	// person can see what happened; ConsecutiveFailures says whether it
	// still applies.
	LastError *HealthError `json:"last_error,omitempty"`
}

// Failing reports whether the latest fetch failed.
func (h Health) Failing() bool { return h.ConsecutiveFailures > 0 }

// HealthError describes a failed fetch without secrets: the error texts of
// this module never carry tokens, tickets or secrets.
type HealthError struct {
	// API is the WeCom call that failed ("get_hit_msg_list",
	// "get_suite_token", "gettoken", …); empty when the failure was not a
	// WeCom answer (NATS, the network, a timeout).
	API string `json:"api,omitempty"`
	// Errcode is WeCom's errcode, 0 when there is none.
	Errcode int `json:"errcode,omitempty"`
	// HTTPStatus is the HTTP status WeCom answered, when not 200.
	HTTPStatus int `json:"http_status,omitempty"`
	// Message is the error text, for people.
	Message string `json:"message"`
	// Since is when the current run of this same error (same API, errcode
	// and status) began; At is when it last happened.
	Since time.Time `json:"since"`
	At    time.Time `json:"at"`
}

// same reports whether e and o are the same failure, for Since.
func (e *HealthError) same(o *HealthError) bool {
	return e != nil && o != nil && e.API == o.API && e.Errcode == o.Errcode && e.HTTPStatus == o.HTTPStatus
}

// healthError describes err, which happened at now.
func healthError(err error, now time.Time) *HealthError {
	he := &HealthError{Message: err.Error(), Since: now, At: now}
	if len(he.Message) > maxHealthMessage {
		he.Message = he.Message[:maxHealthMessage] + "…"
	}
	if ae, ok := errors.AsType[*wecom.APIError](err); ok {
		he.API, he.Errcode = ae.API, ae.Code
	} else if se, ok := errors.AsType[*wecom.StatusError](err); ok {
		he.API, he.HTTPStatus = se.API, se.StatusCode
	}
	return he
}

// maxHealthMessage bounds the stored error text.
const maxHealthMessage = 300

// healthRecorder keeps, per (app, corp), the outcomes not yet written to
// HealthBucket, and writes them as a merge into what is stored, so that
// replicas taking turns at a corp continue one count.
type healthRecorder struct {
	kv      jetstream.KeyValue
	now     func() time.Time
	metrics *Metrics

	mu      sync.Mutex
	pending map[string]*healthPending
	// flushing serialises flushes: two at once could write an older
	// snapshot over a newer one.
	flushing sync.Mutex
}

// healthPending is what happened to one (app, corp) since the last write.
type healthPending struct {
	app, corp string
	// success is the last success since the last write; failures count
	// the failures after it (or after the last write, when none).
	success  time.Time
	failures int
	err      *HealthError // the latest of those failures
	// written is when the last write happened and wroteFailing what state
	// it wrote: a change of state is written at once.
	written      time.Time
	wroteFailing bool
	wroteErr     *HealthError
	dirty        bool
}

func newHealthRecorder(now func() time.Time, m *Metrics) *healthRecorder {
	return &healthRecorder{now: now, metrics: m, pending: map[string]*healthPending{}}
}

// record notes a fetch's outcome and writes it if the state changed or the
// last write is old enough. Outcomes that say nothing about WeCom or the
// corp (another replica holds the lease, shutdown) are not recorded.
func (r *healthRecorder) record(ctx context.Context, app, corp string, err error) {
	if r == nil || errors.Is(err, errLeaseBusy) || errors.Is(err, errDraining) ||
		(err != nil && ctx.Err() != nil) {
		return
	}
	now := r.now()
	k := key(app, corp)
	r.mu.Lock()
	p := r.pending[k]
	if p == nil {
		p = &healthPending{app: app, corp: corp}
		r.pending[k] = p
	}
	p.dirty = true
	if err == nil {
		p.success, p.failures, p.err = now, 0, nil
	} else {
		he := healthError(err, now)
		if p.failures > 0 && he.same(p.err) {
			he.Since = p.err.Since
		}
		p.failures++
		p.err = he
	}
	failing := p.failures > 0
	due := p.written.IsZero() || p.wroteFailing != failing ||
		(failing && !p.err.same(p.wroteErr)) || now.Sub(p.written) >= healthWriteEvery
	r.mu.Unlock()
	if due {
		r.flush(ctx, k)
	}
}

// forget drops k's unwritten outcomes (Forget), so that a flush does not
// write back the entry of a corp whose data was deleted.
func (r *healthRecorder) forget(k string) {
	if r == nil {
		return
	}
	r.flushing.Lock()
	defer r.flushing.Unlock()
	r.mu.Lock()
	delete(r.pending, k)
	r.mu.Unlock()
}

// flushAll writes every (app, corp) with unwritten outcomes; Run calls it
// periodically so the last outcomes of a quiet corp reach the bucket. It
// then drops the entries written at least healthWriteEvery ago and
// unchanged since: such an entry tells record nothing a fresh one would
// not (the next outcome is due at once either way), and keeping it would
// make pending hold every corp ever polled, for good.
func (r *healthRecorder) flushAll(ctx context.Context) {
	if r == nil {
		return
	}
	r.mu.Lock()
	var keys []string
	for k, p := range r.pending {
		if p.dirty {
			keys = append(keys, k)
		}
	}
	r.mu.Unlock()
	for _, k := range keys {
		r.flush(ctx, k)
	}
	// Under flushing: a flush under way holds its entry and updates it.
	r.flushing.Lock()
	defer r.flushing.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for k, p := range r.pending {
		if !p.dirty && !p.written.IsZero() && now.Sub(p.written) >= healthWriteEvery {
			delete(r.pending, k)
		}
	}
}

// flush merges k's pending outcomes into the stored Health with a
// compare-and-set. A failed write keeps them pending for the next try.
func (r *healthRecorder) flush(ctx context.Context, k string) {
	if r.kv == nil {
		return
	}
	r.flushing.Lock()
	defer r.flushing.Unlock()
	r.mu.Lock()
	p := r.pending[k]
	if p == nil || !p.dirty {
		r.mu.Unlock()
		return
	}
	snap := *p
	p.dirty, p.success, p.failures, p.err = false, time.Time{}, 0, nil
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var h Health
	_, err := broker.UpdateKey(ctx, r.kv, k, casTriesHealth, func(e jetstream.KeyValueEntry) ([]byte, error) {
		h = Health{}
		if e != nil {
			if err := json.Unmarshal(e.Value(), &h); err != nil {
				return nil, fmt.Errorf("fetch: decode health: %w", err)
			}
		}
		h = merge(h, snap)
		return json.Marshal(h)
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// Put the outcomes back, before any that came meanwhile.
		cur := r.pending[k]
		if cur.success.IsZero() {
			cur.success = snap.success
			cur.failures += snap.failures
			if cur.err == nil {
				cur.err = snap.err
			}
		}
		cur.dirty = true
		return
	}
	failing := h.Failing()
	p.written, p.wroteFailing, p.wroteErr = r.now(), failing, h.LastError
	r.metrics.health(snap.app, snap.corp, h)
}

// casTriesHealth bounds flush's compare-and-set loop.
const casTriesHealth = 5

// merge applies pending outcomes to h. They normally happened after
// everything in h; but another replica may have written a failure since
// this one's success, which that success then must not erase.
func merge(h Health, p healthPending) Health {
	if !p.success.IsZero() && p.success.After(h.LastSuccess) {
		h.LastSuccess = p.success
		if h.LastError == nil || !h.LastError.At.After(p.success) {
			h.ConsecutiveFailures = 0
		}
	}
	if p.failures > 0 {
		e := *p.err
		if h.ConsecutiveFailures > 0 && e.same(h.LastError) {
			e.Since = h.LastError.Since
		}
		h.ConsecutiveFailures += p.failures
		h.LastError = &e
	}
	return h
}
