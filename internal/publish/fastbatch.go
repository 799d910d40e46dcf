package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A page's events go to WECOM_HITS as nats-server's fast-ingest batches
// (nats-server 2.14 and later, a stream with allow_batched): the server
// answers a batch with a flow ack every so many stored messages and one
// PubAck for its last, instead of a PubAck per event, which is what the
// per-event path spends most of its client and server time on.
//
// The protocol lives in each message's reply subject,
// <inbox>.<flow>.<gap>.<batch seq>.<op>.$FI, the inbox's last token being
// the batch id. Written here rather than taken from orbit.go's
// jetstreamext.FastPublisher (v0.3.2): that client reports a message the
// server refused in mid-batch through an error callback, on its own
// goroutine, while its commit can still return a successful BatchAck that
// counts fewer messages than were sent, so a caller must join the two to
// learn whether every event is stored. This client reads every answer in
// order on the publishing goroutine and decides in one place (answer).
//
// What the server does, from its code (server/stream.go,
// processJetStreamFastBatchMsg and processJetStreamMsgWithBatch;
// server/jetstream_batching.go), and what this client concludes:
//   - Gap mode "fail": a message missing in the sequence, or refused before
//     it is stored (its limits, a header check), ends the batch there; the
//     server reports it ("err" or "gap") and commits what it had, so the
//     final PubAck counts fewer messages than were sent. A message the
//     store refuses (DiscardNew at MaxBytes) is answered with an error
//     PubAck. Either way this client sees an error before any PubAck that
//     would count the whole batch, since the server answers a batch in
//     order on one queue, and reports the batch failed.
//   - A duplicate (a Nats-Msg-Id within the duplicate window), the first
//     message included, is skipped silently, as JetStream de-duplicates
//     every publish, and the batch goes on. The server does not say which
//     were skipped; its final PubAck names the stream sequence of the last
//     message the batch stored, 0 when it stored none.
//   - The final PubAck's count is the batch sequence of the last message:
//     equal to the number sent only when every message was stored or
//     skipped as a duplicate.
//
// So a nil error from publishFast means every event is in the stream; any
// error means some may be and some not, and the caller publishes the same
// events again the per-event way, which the Nats-Msg-Ids make idempotent.
//
// Not covered: a write the server's store fails with an I/O error (not a
// limit) is neither answered nor counted by the server, which marks the
// stream failed (its health check reports it); a batch around it can end
// in a PubAck counting every message.

// Fast batch operations, the next-to-last token of the reply subject.
const (
	fastOpStart  = "0"
	fastOpAppend = "1"
	fastOpCommit = "2"
)

const (
	// fastMaxFlow is the most messages the server lets pass between two
	// flow acks.
	fastMaxFlow = 500
	// fastAnswerTimeout is the longest a batch waits for the server's
	// next answer (a lost flow ack, a leader change) before giving up.
	fastAnswerTimeout = 5 * time.Second
)

// fastAnswer is any answer to a batch: a flow message (Type "ack", "gap"
// or "err") or, without Type, the PubAck that ends the batch.
type fastAnswer struct {
	Type string `json:"type"`
	// Seq: a flow ack's last stored batch sequence, an error's batch
	// sequence, a PubAck's stream sequence.
	Seq uint64 `json:"seq"`
	// Msgs: a flow ack's interval, the messages until the next one.
	Msgs uint16 `json:"msgs"`
	// LastSeq: a gap's expected batch sequence.
	LastSeq uint64              `json:"last_seq"`
	Error   *jetstream.APIError `json:"error"`
	Stream  string              `json:"stream"`
	// Count: a PubAck's batch sequence of the last message it covers.
	Count uint64 `json:"count"`
}

// fastBatch is one batch in flight, sent message by message as a page's
// events are built (add), so that the server stores the first while the
// rest are encoded, and ended by commit.
type fastBatch struct {
	nc        *nats.Conn
	prefix    string // reply subject up to the batch sequence
	sub       *nats.Subscription
	ch        chan *nats.Msg
	sent      uint64 // messages sent so far
	acked     uint64 // highest batch sequence the server reported stored
	flow      uint64 // the server's current flow ack interval
	committed bool   // the last message is sent
	// none: the final PubAck says the batch stored nothing, every
	// message a duplicate.
	none  bool
	reply []byte // the reply subject being built, reused
}

// newFastBatch starts a batch of at most maxMsgs messages on nc, at most
// window unacknowledged at once. Its caller closes it.
func newFastBatch(nc *nats.Conn, maxMsgs, window int) (*fastBatch, error) {
	// The server acks every flow messages at most, and a batch stops at two
	// flow intervals unacknowledged: both within the window.
	flow := max(1, min(fastMaxFlow, window/2))
	inbox := nc.NewInbox()
	b := &fastBatch{
		nc: nc, flow: uint64(flow),
		prefix: inbox + "." + strconv.Itoa(flow) + ".fail.",
		// Every message is answered at most once, but for the first (on
		// arrival and once stored) and one refused (an error, then the
		// PubAck of what came before): the channel holds every answer
		// there can be, so the client never drops one as a slow
		// consumer.
		ch: make(chan *nats.Msg, maxMsgs+4),
	}
	sub, err := nc.ChanSubscribe(inbox+".>", b.ch)
	if err != nil {
		return nil, fmt.Errorf("fast batch: subscribe: %w", err)
	}
	b.sub = sub
	return b, nil
}

// close ends the batch's subscription; what the server still holds of an
// unfinished batch, it drops after its batch timeout.
func (b *fastBatch) close() { _ = b.sub.Unsubscribe() }

// add sends m as the batch's next message and reads the answers that have
// come; it waits only when two flow intervals are unacknowledged. An error
// ends the batch. m may be reused once add returns: the connection has
// copied it.
func (b *fastBatch) add(ctx context.Context, m *nats.Msg) error {
	op := fastOpAppend
	if b.sent == 0 {
		op = fastOpStart
	}
	if err := b.send(m, op); err != nil {
		return err
	}
	for drained := false; !drained; {
		select {
		case a := <-b.ch:
			if _, err := b.answer(a); err != nil {
				return err
			}
		default:
			drained = true
		}
	}
	for b.sent-b.acked >= 2*b.flow {
		if _, err := b.await(ctx); err != nil {
			return err
		}
	}
	return nil
}

// commit sends m as the batch's last message and waits for the PubAck
// that ends it: nil once the server has stored every message (see above);
// allDup then reports that every one was a duplicate.
//
// The batch ends with a message rather than with the protocol's
// end-of-batch commit, which is a message of its own on a subject of the
// stream: plain NATS subscribers to the events would receive it, empty.
// That is also why this client does not ping.
func (b *fastBatch) commit(ctx context.Context, m *nats.Msg) (allDup bool, err error) {
	b.committed = true
	if err := b.send(m, fastOpCommit); err != nil {
		return false, err
	}
	for {
		done, err := b.await(ctx)
		if err != nil {
			return false, err
		}
		if done {
			return b.none, nil
		}
	}
}

// publishFast publishes msgs, at least one, as one fast batch (add,
// commit).
func publishFast(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg, window int) (allDup bool, err error) {
	b, err := newFastBatch(nc, len(msgs), window)
	if err != nil {
		return false, err
	}
	defer b.close()
	for _, m := range msgs[:len(msgs)-1] {
		if err := b.add(ctx, m); err != nil {
			return false, err
		}
	}
	return b.commit(ctx, msgs[len(msgs)-1])
}

// send publishes m as the batch's next message, op its operation.
func (b *fastBatch) send(m *nats.Msg, op string) error {
	b.sent++
	m.Reply = b.replySubject(b.sent, op)
	if err := b.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("fast batch: message %d: %w", b.sent, err)
	}
	return nil
}

// replySubject is the reply subject of the batch's message seq, op its
// operation.
func (b *fastBatch) replySubject(seq uint64, op string) string {
	r := append(b.reply[:0], b.prefix...)
	r = strconv.AppendUint(r, seq, 10)
	r = append(r, '.')
	r = append(r, op...)
	r = append(r, ".$FI"...)
	b.reply = r
	return string(r)
}

// await waits for the next answer, for at most fastAnswerTimeout: a
// batch without news that long is given up (the caller publishes its
// events one by one), rather than pinged: a ping is a message on the
// stream's subject, which plain subscribers would receive.
func (b *fastBatch) await(ctx context.Context) (done bool, err error) {
	t := time.NewTimer(fastAnswerTimeout)
	defer t.Stop()
	select {
	case m := <-b.ch:
		return b.answer(m)
	case <-t.C:
		return false, fmt.Errorf("fast batch: no answer in %s", fastAnswerTimeout)
	case <-ctx.Done():
		return false, fmt.Errorf("fast batch: %w", ctx.Err())
	}
}

// answer handles one answer from the server; done reports the batch's
// PubAck covering every message, an error anything else that ends it.
func (b *fastBatch) answer(m *nats.Msg) (done bool, err error) {
	var a fastAnswer
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return false, fmt.Errorf("fast batch: answer: %w", err)
	}
	switch a.Type {
	case "ack":
		b.acked = max(b.acked, a.Seq)
		if a.Msgs > 0 {
			b.flow = uint64(a.Msgs)
		}
		return false, nil
	case "gap":
		return false, fmt.Errorf("fast batch: gap: message %d lost, at %d", a.LastSeq, a.Seq)
	case "err":
		return false, fmt.Errorf("fast batch: message %d: %w", a.Seq, a.Error)
	case "":
	default:
		return false, fmt.Errorf("fast batch: answer of type %q", a.Type)
	}
	switch {
	case a.Error != nil:
		return false, fmt.Errorf("fast batch: %w", a.Error)
	case !b.committed || a.Count != b.sent:
		// Ended early: a message refused, the rest never stored.
		return false, fmt.Errorf("fast batch: ended at message %d of %d sent", a.Count, b.sent)
	}
	b.none = a.Seq == 0
	return true, nil
}
