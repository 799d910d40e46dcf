package intake

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// De-duplication kept by the Store itself (WithLocalDedup).
//
// JetStream de-duplicates by Nats-Msg-Id: the server keeps every id
// stored within the duplicate window in a map of its own. With the
// receiver's embedded server that map lives in the receiver's heap, two
// small objects and four pointers per callback, and at thousands of
// callbacks a second the garbage collector spends most of its time
// tracing them (BENCHMARKS.md, "The callback ids kept by the receiver").
//
// When the Store is the only writer of callback ids to the stream (the
// embedded server, which one receiver process owns), it can keep the ids
// itself instead, in memory that holds no pointers: a set of 16-byte keys
// and a queue of them in the order stored, which the collector never has
// to trace. The records then carry their id in IDHeader rather than
// Nats-Msg-Id, so the server keeps nothing for them.
//
// It is exact where the server's map is exact. Two Stores of one id at
// once are one record: the second waits for the first and gets its
// answer, or tries itself if the first failed. On start (Setup) the set
// is loaded from the records stored within the window, as the server
// rebuilds its own map when it recovers a stream. Ids the window has
// passed go as callbacks arrive, and every 10 s (RunDedup), which also
// gives a burst's memory back.
//
// Where it differs. A copy that reaches the stream twice is stored
// twice: the server's map would have acked the second as a duplicate.
// Store keeps such copies rare. Its publish waits for an answer until its
// deadline instead of sending again when an answer is slow
// (broker.PublishAwait; an in-process server has no partition to route
// around). What remains: a fast batch that ends without a clean answer
// (no answer within a second, a store full, a message refused) sends its
// callbacks again one by one, and those of them that had landed become
// second records; and a Store that fails (its deadline passed) after its
// message reached the server, whose callback WeCom then sends again. The
// handler treats a repeated record like any repeat of a callback: a hit
// callback asks for the corp's next page from its cursor, and events are
// de-duplicated by their own id (docs/events.md). Restore is not this
// path: a replay carries a Nats-Msg-Id, so that replays of one dead letter
// by any process (the admin API here, `receiver dlq replay` elsewhere)
// meet in the server's map.
//
// Times are the wall clock's, as the server's are. A clock stepped forward
// forgets ids early (a retry may then be stored again); one stepped back
// keeps them longer.
//
// A receiver of an older version reading a store written this way sees no
// Nats-Msg-Id on these records: its server map would not hold them. Going
// back a version within the window may so store WeCom's retries twice.

// IDHeader carries a record's callback id when the Store keeps its ids
// itself (WithLocalDedup). Otherwise the id is the record's Nats-Msg-Id;
// RecordID reads either.
const IDHeader = "Wecom-Callback-Id"

// RecordID is the id of the callback record with header h: its IDHeader,
// or else its Nats-Msg-Id.
func RecordID(h nats.Header) string {
	if v := h[IDHeader]; len(v) > 0 {
		return v[0]
	}
	if v := h[jetstream.MsgIDHeader]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// idKey is the set's form of a callback id: the 128 bits a CallbackID
// spells in hex, or the first 128 bits of the SHA-256 of any other id.
type idKey [16]byte

// keyOf maps ids one to one, to 2^-128 (the odds of two ids sharing a
// key): lower-case hex of 32 digits is decoded (upper case would decode
// to the same bits as its lower-case twin, so it is hashed instead), and
// every other id is hashed.
func keyOf(id string) idKey {
	var k idKey
	if len(id) == 2*len(k) {
		ok := true
		for i := range k {
			hi, lo := lowerHex(id[2*i]), lowerHex(id[2*i+1])
			if hi < 0 || lo < 0 {
				ok = false
				break
			}
			k[i] = byte(hi<<4 | lo)
		}
		if ok {
			return k
		}
	}
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:])
	return k
}

func lowerHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// stamp is one stored id and when it was stored (Unix nanoseconds).
type stamp struct {
	key idKey
	at  int64
}

// stampChunk is how many stamps one block of the queue holds: 24 KiB.
const stampChunk = 1024

// localDedup is the set of ids stored within the window, and the ids
// being stored right now. It is safe for concurrent use.
type localDedup struct {
	window time.Duration
	now    func() time.Time

	mu     sync.Mutex
	stored map[idKey]struct{}
	// peak is the most ids stored has held since it was made: a Go map
	// keeps the table of its largest size, so sweep makes a new one once
	// the ids have fallen well below it.
	peak int
	// queue holds stored's keys in the order stored, oldest first, in
	// blocks of stampChunk; head is the oldest's place in queue[0].
	queue [][]stamp
	head  int
	spare []stamp // an emptied block, kept for the next one needed
	// pending holds the ids being stored. Its value is nil until a second
	// Store of the id comes to wait.
	pending map[idKey]*idWait
}

// idWait is what Stores of an id wait on while another stores it.
type idWait struct {
	done   chan struct{}
	stored bool
}

func newLocalDedup(window time.Duration, now func() time.Time) *localDedup {
	return &localDedup{
		window: window, now: now,
		stored:  make(map[idKey]struct{}),
		pending: make(map[idKey]*idWait),
	}
}

// begin claims k for the caller to store. dup is true when k is stored
// already (within the window): the caller must not store it again, and
// its Store has succeeded. Otherwise the caller must call end(k, ...)
// once its publish has ended. While another caller holds k, begin waits
// for its end, and gives up when ctx ends.
func (d *localDedup) begin(ctx context.Context, k idKey) (dup bool, err error) {
	for {
		d.mu.Lock()
		d.expire(d.now(), expireMax)
		if _, ok := d.stored[k]; ok {
			d.mu.Unlock()
			return true, nil
		}
		f, held := d.pending[k]
		if !held {
			d.pending[k] = nil
			d.mu.Unlock()
			return false, nil
		}
		if f == nil {
			f = &idWait{done: make(chan struct{})}
			d.pending[k] = f
		}
		d.mu.Unlock()
		select {
		case <-f.done:
			if f.stored {
				return true, nil
			}
			// The other Store failed: try again, perhaps as the one
			// that stores it.
		case <-ctx.Done():
			return false, fmt.Errorf("store callback: waiting for the same callback being stored: %w", ctx.Err())
		}
	}
}

// end releases k, which begin gave the caller, as stored or not, and
// returns how many ids the set holds.
func (d *localDedup) end(k idKey, stored bool) int {
	d.mu.Lock()
	f := d.pending[k]
	delete(d.pending, k)
	if stored {
		d.add(k, d.now().UnixNano())
	}
	n := len(d.stored)
	d.mu.Unlock()
	if f != nil {
		f.stored = stored
		close(f.done)
	}
	return n
}

// load adds k as stored at the time at, unless the window has passed
// since. Setup loads the stream's records through it, in stream order.
func (d *localDedup) load(k idKey, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if at.Before(d.now().Add(-d.window)) {
		return
	}
	if _, ok := d.stored[k]; !ok {
		d.add(k, at.UnixNano())
	}
}

// size is how many ids the set holds.
func (d *localDedup) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.stored)
}

// add puts k at the queue's end. Callers hold mu.
func (d *localDedup) add(k idKey, at int64) {
	d.stored[k] = struct{}{}
	d.peak = max(d.peak, len(d.stored))
	n := len(d.queue)
	if n == 0 || len(d.queue[n-1]) == stampChunk {
		block := d.spare[:0]
		d.spare = nil
		if block == nil {
			block = make([]stamp, 0, stampChunk)
		}
		d.queue = append(d.queue, block)
		n++
	}
	d.queue[n-1] = append(d.queue[n-1], stamp{key: k, at: at})
}

// sweep drops every id the window has passed, expireMax at a time so that
// Stores are not held up behind it, and gives the set a new map once it
// holds under a quarter of its peak: a receiver that saw a burst gets its
// memory back as the burst's ids expire, with or without callbacks. It
// returns how many ids the set holds.
func (d *localDedup) sweep() int {
	for {
		d.mu.Lock()
		before := len(d.stored)
		d.expire(d.now(), expireMax)
		done := len(d.stored) == before || len(d.stored) == 0
		if done {
			if n := len(d.stored); d.peak > 4*stampChunk && n < d.peak/4 {
				fresh := make(map[idKey]struct{}, n)
				for k := range d.stored {
					fresh[k] = struct{}{}
				}
				d.stored, d.peak = fresh, n
			}
		}
		n := len(d.stored)
		d.mu.Unlock()
		if done {
			return n
		}
	}
}

// expireMax bounds the ids one begin drops: after a burst and a quiet
// spell, the burst's ids go a few thousand per callback, not all under
// one callback's lock. Each callback adds at most one, so the queue
// still shrinks to the window; meanwhile an id is kept a little past it,
// and a repeat of it is acked as the duplicate it is.
const expireMax = 2 * stampChunk

// expire drops up to most of the ids stored before the window. Callers
// hold mu.
func (d *localDedup) expire(now time.Time, most int) {
	limit := now.Add(-d.window).UnixNano()
	for ; most > 0 && len(d.queue) > 0; most-- {
		block := d.queue[0]
		if d.head == len(block) {
			if len(block) < stampChunk {
				return // the last block, not full yet: nothing older
			}
			d.spare = block
			d.queue[0] = nil
			d.queue = d.queue[1:]
			d.head = 0
			continue
		}
		s := block[d.head]
		if s.at >= limit {
			return
		}
		delete(d.stored, s.key)
		d.head++
	}
}

// Loading the window's ids on start.
const (
	// loadBatch is how many records' headers loadIDs asks for at a time.
	loadBatch = 4096
	// defaultLoadBudget bounds loadIDs, within half of what Setup's
	// deadline leaves: about 8 million ids, an hour of 2,000 callbacks a
	// second.
	defaultLoadBudget = 20 * time.Second
	// sweepEvery is how often RunDedup drops the ids the window has
	// passed, when no callback does.
	sweepEvery = 10 * time.Second
)

// loadIDs fills s.dedup with the ids of the records stored within the
// duplicate window, so that a receiver that stopped within the window
// still knows the ids it stored (the server's own map is rebuilt the same
// way when it recovers a stream). It reads their headers, oldest first,
// through an ephemeral consumer it deletes at the end. It returns how
// many it read; an error leaves the ids read so far in the set.
func (s *Store) loadIDs(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTime(ctx, s.opts.loadBudget))
	defer cancel()
	from := s.dedup.now().Add(-s.dedup.window)
	st, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, err
	}
	if state := st.CachedInfo().State; state.Msgs == 0 || state.LastTime.Before(from) {
		return 0, nil
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:   "the receiver's start: callback ids of the duplicate window",
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &from,
		AckPolicy:     jetstream.AckNonePolicy,
		HeadersOnly:   true,
		MemoryStorage: true,
		// Should the receiver die while loading, the server removes it.
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := st.DeleteConsumer(dctx, cons.CachedInfo().Name); err != nil {
			s.opts.log.Debug().Err(err).Str("component", "intake").Msg("delete the consumer that loaded the callback ids")
		}
	}()
	read := 0
	for pending := cons.CachedInfo().NumPending; pending > 0; {
		if err := ctx.Err(); err != nil {
			return read, err
		}
		// No more than are pending: a fetch returns once it has as many
		// as it asked for, or at its wait.
		batch, err := cons.Fetch(int(min(pending, loadBatch)), jetstream.FetchMaxWait(loadWait(ctx)))
		if err != nil {
			return read, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return read, err
			}
			// A replay's id is the server's to keep (Restore).
			if h := m.Headers(); len(h[HeaderReplayOf]) == 0 {
				if id := RecordID(h); id != "" {
					s.dedup.load(keyOf(id), md.Timestamp)
				}
			}
			pending = md.NumPending
		}
		read += n
		if err := batch.Error(); err != nil {
			return read, err
		}
		if n == 0 {
			if err := ctx.Err(); err != nil {
				return read, err
			}
			break // the rest went meanwhile (the compactor, the max age)
		}
	}
	return read, nil
}

// loadTime is how long loadIDs may take: budget, and no more than half of
// what ctx has left, so that what the caller does next within ctx (the
// receiver's other streams and buckets, within nats.setup_timeout) still
// has time.
func loadTime(ctx context.Context, budget time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)/2)
	}
	return budget
}

// loadWait bounds one fetch of loadIDs: what ctx has left, at most 5 s.
func loadWait(ctx context.Context) time.Duration {
	d := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, max(time.Until(dl), time.Millisecond))
	}
	return d
}

// RunDedup keeps a Store that keeps its ids itself (WithLocalDedup)
// tidy until ctx ends: every 10 s it drops the ids the window has passed
// and gives their memory back (callbacks drop them too, but a quiet
// receiver gets none), and updates wecom_receiver_callback_ids. Without
// WithLocalDedup it returns at once.
func (s *Store) RunDedup(ctx context.Context) {
	if s.dedup == nil {
		return
	}
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.opts.metrics.setCallbackIDs(s.dedup.sweep())
		}
	}
}
