package intake

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/wecomhit/wecomhit/internal/broker"
)

// Group commit: callbacks that wait to be stored at the same moment go to
// the stream together, as one JetStream fast batch (broker/fastbatch.go:
// the protocol, and why a batch's PubAck means its callbacks are stored),
// and share the batch's one commit answer instead of each waiting for a
// PubAck of its own.
//
// What intake adds to the protocol is its policy. All batches share one
// reply subscription (<inbox>.>), and find their batch by its id in the
// subject: an inbox, a SUB and an UNSUB per batch cost each callback
// about 2 µs more (BENCHMARKS.md, "Fast batches"). A batch is sent whole
// and then waits for its answer; flow answers are ignored (a batch of at
// most batchMaxCount messages gets none but the first). A callback of a
// batch is answered nil only when its place is within the count of the
// batch's clean PubAck (broker.ReadFastAnswer: FastStored, naming
// WECOM_CALLBACKS and the batch's id), no other answer ended the batch
// first, and the reply subscription dropped nothing while the batch was
// out.
//
// Anything else (an error, a gap, a short count past the callback, an
// answer that does not parse, no answer within batchAckTimeout, a publish
// the client could not send) sends each callback of the batch not yet
// settled back to the plain path: broker.PublishRetry with its own
// Nats-Msg-Id and its own ctx. The msg id makes that retry idempotent (a
// message of the batch that did land is acked as a duplicate), so each
// callback gets exactly today's answer: nil, ErrStoreFull, or its ctx's
// error. A Store that keeps its ids itself sends no Nats-Msg-Id, so there
// a message of the batch that did land is stored a second time (dedup.go
// says why that is rare and harmless).

// Batch limits and pacing.
const (
	// batchMaxCount and batchMaxBytes cap one batch. The server's own
	// flow control answers every 500 messages at most when a batch is
	// alone on the stream, so a batch this size gets no answer but the
	// first and the last.
	batchMaxCount = 256
	batchMaxBytes = 1 << 20
	// batchFlights is how many batches (or lone plain publishes) may be in
	// flight at once; callbacks arriving meanwhile wait and form the next
	// batch. Measured in BENCHMARKS.md ("Fast batches").
	batchFlights = 1
	// batchAckTimeout bounds the wait for a batch's answer. A batch of
	// records is answered within milliseconds; past this, each callback
	// falls back to a plain publish with whatever time its ctx has left.
	batchAckTimeout = time.Second
	// batchFlow is the flow value the reply subject asks for: the most, so
	// that the server sends as few flow messages as it is willing to.
	batchFlow = 65535
)

// Reasons a batch fell back to plain publishes, the reason label of
// wecom_receiver_callback_batch_fallbacks_total.
const (
	FallbackTimeout  = "timeout"  // no answer within batchAckTimeout
	FallbackPublish  = "publish"  // the client could not send a message (connection closed, ...)
	FallbackRejected = "rejected" // the server refused a message: store full, too large, a duplicate id in flight, ...
	FallbackGap      = "gap"      // the server lost messages of the batch (a leader change, a full queue)
	FallbackPartial  = "partial"  // the commit covered only the first callbacks, with no error seen (not expected; the rest go alone)
	FallbackDisabled = "disabled" // the stream does not allow fast batches
	FallbackInvalid  = "invalid"  // an answer that is not a fast-batch answer, or a dropped one
)

// fallbackOf is the fallback reason of each way a batch can end short
// (broker.FastStored: a PubAck counting fewer than were sent).
var fallbackOf = [...]string{
	broker.FastStored:   FallbackPartial,
	broker.FastRejected: FallbackRejected,
	broker.FastGap:      FallbackGap,
	broker.FastDisabled: FallbackDisabled,
	broker.FastInvalid:  FallbackInvalid,
}

var fallbackReasons = []string{
	FallbackTimeout, FallbackPublish, FallbackRejected, FallbackGap, FallbackPartial, FallbackDisabled, FallbackInvalid,
}

// A waiter's turn, sent on its item's done channel.
type turn uint8

const (
	turnStored   turn = iota // its batch stored it
	turnFallback             // publish it alone, holding no flight
	turnLead                 // publish it alone, holding a flight: release it after
)

// item is one callback waiting in the queue or riding a batch.
type item struct {
	msg  *nats.Msg
	size int
	done chan turn // buffered: the batch never waits for its caller
	// queued is true while the item waits in batcher.queue (under mu).
	queued bool
}

// batcher groups concurrent Store calls into fast batches. A Store call
// that finds a flight free publishes alone, as before batching, so a
// callback never waits for company; calls arriving while every flight is
// taken queue up, and the flight that ends next sends the queue as one
// batch from a goroutine of its own, which ends within batchAckTimeout.
// A lone publish holds its flight until it is answered or its caller's
// ctx ends: while the stream cannot answer (a leader election), the
// callbacks behind it wait in the queue instead of retrying each on its
// own, and go as one batch once it is answered, or fail at their own
// deadlines (having sent nothing) if it never is.
type batcher struct {
	nc *nats.Conn
	// publish is the plain path: Store.publish, broker.PublishRetry with
	// msg's id until ctx ends.
	publish func(context.Context, *nats.Msg) error

	log     zerolog.Logger
	metrics *Metrics
	// on is set once Setup found the stream allowing fast batches, and
	// cleared for good if the server says it does not.
	on   atomic.Bool
	said atomic.Bool // the plain-path log line was written

	mu      sync.Mutex
	flights int
	queue   []*item
	sub     *nats.Subscription // the reply subscription, made on first use
	inbox   string             // its prefix: <inbox>.<batch id>....
	batches map[string]*flight // batches awaiting their answer, by id
}

func newBatcher(nc *nats.Conn, publish func(context.Context, *nats.Msg) error, log zerolog.Logger, m *Metrics) *batcher {
	return &batcher{nc: nc, publish: publish, log: log, metrics: m, batches: make(map[string]*flight)}
}

// enable switches batching on or off after Setup looked at the stream,
// and says once why it is off.
func (b *batcher) enable(allowed bool) {
	if allowed {
		b.on.Store(true)
		return
	}
	b.disable("the stream does not allow fast batches (allow_batched; nats-server 2.14 or later)")
}

func (b *batcher) disable(why string) {
	b.on.Store(false)
	if !b.said.Swap(true) {
		b.log.Warn().Str("stream", StreamName).Str("reason", why).
			Msg("storing callbacks one at a time, without batching")
	}
}

// store stores it.msg through a batch, or alone (b.publish) when no other
// callback waits or its batch failed. it.done must be empty. abandoned
// reports that ctx ended while a batch may still be sending it.msg or may
// yet send on it.done, so neither may be reused; otherwise store returns
// with it.done empty and no batch holding it.
func (b *batcher) store(ctx context.Context, it *item) (abandoned bool, err error) {
	msg := it.msg
	b.mu.Lock()
	if b.flights < batchFlights {
		b.flights++
		b.mu.Unlock()
		err = b.publish(ctx, msg)
		b.release()
		return false, err
	}
	it.size = len(msg.Data) + len(msg.Subject)
	it.queued = true
	b.queue = append(b.queue, it)
	b.mu.Unlock()

	select {
	case t := <-it.done:
		return false, b.take(ctx, msg, t)
	case <-ctx.Done():
	}
	b.mu.Lock()
	queued := it.queued
	if queued {
		it.queued = false
		for i, q := range b.queue {
			if q == it {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
	}
	b.mu.Unlock()
	if queued {
		return false, ctxErr(ctx)
	}
	// Taken from the queue. A lead or fallback turn is sent under mu as
	// the item leaves it, so it is here now if it is one of those; a
	// batch's verdict may be too.
	select {
	case t := <-it.done:
		switch t {
		case turnStored:
			return false, nil // stored after all: the truth, though late
		case turnLead:
			b.release() // its flight must still end
		}
		return false, ctxErr(ctx)
	default:
		return true, ctxErr(ctx)
	}
}

// take acts on a waiter's turn.
func (b *batcher) take(ctx context.Context, msg *nats.Msg, t turn) error {
	switch t {
	case turnStored:
		return nil
	case turnLead:
		err := b.publish(ctx, msg)
		b.release()
		return err
	}
	msg.Reply = "" // it may have ridden a batch
	return b.publish(ctx, msg)
}

// ctxErr is Store's error for a callback whose ctx ended while it waited
// for a batch: its record may or may not be stored, as when a plain
// publish's ctx ends before the ack.
func ctxErr(ctx context.Context) error {
	return fmt.Errorf("intake: store callback: %w", ctx.Err())
}

// release ends a flight and starts the next from the queue.
func (b *batcher) release() {
	b.mu.Lock()
	b.flights--
	b.launchLocked()
	b.mu.Unlock()
}

// launchLocked starts flights for the queue while flights are free: a
// lone callback publishes itself, two or more go as a batch.
func (b *batcher) launchLocked() {
	for b.flights < batchFlights && len(b.queue) > 0 {
		n, size := 0, 0
		for n < len(b.queue) && n < batchMaxCount && (n == 0 || size+b.queue[n].size <= batchMaxBytes) {
			size += b.queue[n].size
			n++
		}
		batch := make([]*item, n)
		copy(batch, b.queue)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		for _, it := range batch {
			it.queued = false
		}
		b.flights++
		if n == 1 || !b.on.Load() {
			for _, it := range batch[1:] {
				it.done <- turnFallback
			}
			batch[0].done <- turnLead
			continue
		}
		go b.fly(batch)
	}
}

// fly sends one batch, settles each of its callbacks and ends the flight.
func (b *batcher) fly(items []*item) {
	stored, reason := b.send(items)
	for i, it := range items {
		if i < stored {
			it.done <- turnStored
		} else {
			it.done <- turnFallback
		}
	}
	b.metrics.observeBatch(len(items), reason)
	b.release()
}

// flight is one batch awaiting its answer. The reply subscription's
// handler fills it in; send reads it once done is closed.
type flight struct {
	id     string
	n      int
	done   chan struct{}
	ended  bool   // handler side: done is closed
	count  int    // callbacks the commit covers, from a clean PubAck
	reason string // why the batch falls back, "" if it does not
}

// send publishes items as one fast batch and waits for its answer. It
// returns how many of them, from the first, are stored, and why the rest
// are not known to be ("" when all are).
func (b *batcher) send(items []*item) (stored int, reason string) {
	f := &flight{id: nuid.Next(), n: len(items), done: make(chan struct{})}
	sub, inbox, dropped, err := b.register(f)
	if err != nil {
		return 0, FallbackPublish
	}
	defer b.unregister(f)

	prefix := broker.FastReplyPrefix(inbox, f.id, batchFlow)
	n := uint64(len(items))
	// Every reply subject of the batch in one string, each message's a
	// slice of it: one allocation per batch instead of one per callback.
	var ends [batchMaxCount]int
	var all strings.Builder
	all.Grow(len(items) * (len(prefix) + 10)) // seq, op and suffix take at most 10 bytes
	var buf [128]byte                         // room for most reply subjects, on the stack
	for i := range items {
		seq := uint64(i + 1)
		all.Write(broker.AppendFastReply(buf[:0], prefix, seq, broker.FastOpAt(seq, n)))
		ends[i] = all.Len()
	}
	replies := all.String()
	for i, it := range items {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		it.msg.Reply = replies[start:ends[i]]
		if err := b.nc.PublishMsg(it.msg); err != nil {
			// What was sent is an unfinished batch, which the server drops
			// after its batch timeout; nothing of it is answered nil.
			return 0, FallbackPublish
		}
	}
	t := time.NewTimer(batchAckTimeout)
	defer t.Stop()
	select {
	case <-f.done:
	case <-t.C:
		return 0, FallbackTimeout
	}
	// A message the subscription dropped may have been this batch's error.
	if d, err := sub.Dropped(); err != nil || d != dropped {
		return 0, FallbackInvalid
	}
	if f.reason == FallbackDisabled {
		b.disable("the server refused a fast batch: batch publish is disabled on the stream")
	}
	return f.count, f.reason
}

// register subscribes on first use (and again after the connection
// closed it) and files f for the handler. It returns the subscription,
// its inbox and its drop count before the batch.
func (b *batcher) register(f *flight) (*nats.Subscription, string, int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sub == nil || !b.sub.IsValid() {
		inbox := b.nc.NewInbox()
		sub, err := b.nc.Subscribe(inbox+".>", b.answer)
		if err != nil {
			return nil, "", 0, err
		}
		// Answers are small and few; a limit by count alone would drop
		// them only under a flood that the drop check turns into
		// fallbacks anyway.
		if err := sub.SetPendingLimits(-1, 64<<20); err != nil {
			_ = sub.Unsubscribe()
			return nil, "", 0, err
		}
		b.sub, b.inbox = sub, inbox
	}
	d, err := b.sub.Dropped()
	if err != nil {
		return nil, "", 0, err
	}
	b.batches[f.id] = f
	return b.sub, b.inbox, d, nil
}

func (b *batcher) unregister(f *flight) {
	b.mu.Lock()
	delete(b.batches, f.id)
	b.mu.Unlock()
}

// answer handles one message on the reply subscription: it finds the
// batch by the id in the subject and ends it at the first answer that
// decides it. Answers for a batch already ended or given up on are
// dropped: the batch's callbacks have gone their way.
func (b *batcher) answer(m *nats.Msg) {
	id := broker.FastBatchID(m.Subject)
	b.mu.Lock()
	f := b.batches[id]
	b.mu.Unlock()
	if f == nil || f.ended {
		return
	}
	// f.n, not how many were sent by now: an answer may come while the
	// batch is still being sent, and the count of an early PubAck is a
	// prefix of what was sent either way.
	v := broker.ReadFastAnswer(m.Data, f.id, StreamName, uint64(f.n))
	switch {
	case v.End == broker.FastOpen:
		// Flow control: the server takes more. Not a promise of storage.
	case v.Err == nil:
		f.end(f.n, "") // a PubAck counting every callback
	default:
		f.end(int(v.Stored), fallbackOf[v.End]) // Stored: a short count's, else 0
	}
}

// end records the batch's outcome; called by the subscription's handler
// only, whose calls never overlap.
func (f *flight) end(count int, reason string) {
	f.count, f.reason, f.ended = count, reason, true
	close(f.done)
}
